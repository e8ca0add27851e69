import EtcdClient
import Foundation
import Yams

#if canImport(Glibc)
import Glibc
#endif

/// One local change of a write-back mapping, found by comparing the disk with the record.
struct LocalChange: Sendable, Hashable {
  /// The record's path: relative to a tree's root, `.` for a `file` mapping, the key relative
  /// to the prefix for a `format` mapping.
  var path: String
  /// The etcd key.
  var key: [UInt8]
  /// The new value, or nil when the file (or the document's entry) was deleted.
  var value: [UInt8]?
  /// The mod revision the local copy was based on; 0 when the key did not exist.
  var base: Int64
}

/// A local file that could not be pushed, and why (unreadable, not a flat document).
struct LocalProblem: Sendable, Hashable {
  var path: String
  var message: String
}

/// Finds the local edits of one write-back mapping: a file whose bytes differ from what the
/// agent last wrote or pushed (its ``LocalRecord``) is an edit, whatever its timestamps say.
/// That is also what keeps the agent's own writes from echoing back: they match the record.
struct LocalScanner: Sendable {
  let mapping: Mapping

  init(mapping: Mapping) {
    self.mapping = mapping
  }

  /// The directory inotify watches: the tree's root, or the file's directory.
  var watchedDirectory: String {
    if self.mapping.kind == .tree { return self.mapping.dest }
    return AtomicWriter.forFile(self.mapping.dest).writer.root
  }

  /// The destination's name in ``watchedDirectory`` (files and formats).
  var fileName: String { AtomicWriter.forFile(self.mapping.dest).name }

  /// The record paths a change reported by the watcher concerns (nil: not this mapping's).
  func recordPath(forChanged path: String) -> String? {
    switch self.mapping.kind {
    case .tree: return path
    default: return path == self.fileName ? "." : nil
    }
  }

  /// The etcd key of a record path.
  func key(for path: String) -> [UInt8] {
    switch self.mapping.kind {
    case .file: return Array((self.mapping.key ?? "").utf8)
    default:
      return KeyPrefix(self.mapping.prefix ?? "").key(forRelativePath: path)
    }
  }

  /// Names a new local file may not have to become a key: hidden files, editor backups and
  /// swap files, our own conflict copies and temp files. A path already in the record is
  /// never ignored.
  static func isIgnored(_ path: String) -> Bool {
    let segments = path.split(separator: "/")
    if segments.contains(where: { $0.hasPrefix(".") }) { return true }
    let name = segments.last.map(String.init) ?? path
    if name.hasPrefix("#") || name.hasSuffix("~") || name == "4913" { return true }
    if name.hasSuffix(".swp") || name.hasSuffix(".swx") || name.hasSuffix(".tmp") { return true }
    if isConflictCopy(name) { return true }
    return pathProblem(path) != nil
  }

  /// `NAME.conflict.REV` (or `NAME.conflict.REV.N` when that exists), as the agent names a
  /// kept local edit.
  static func isConflictCopy(_ name: String) -> Bool {
    guard let range = name.range(of: ".conflict.", options: .backwards) else { return false }
    let digits = name[range.upperBound...]
    return !digits.isEmpty && digits.first != "." && digits.allSatisfy { $0.isASCII && ($0.isNumber || $0 == ".") }
  }

  /// The local changes among `candidates` (every path when nil): files that differ from the
  /// record, new files (trees), and files the record has that are gone.
  /// What a scan found.
  struct ScanResult: Sendable {
    var changes: [LocalChange] = []
    var problems: [LocalProblem] = []
    /// Files holding what the agent meant to write before a crash cut its record short:
    /// theirs, not edits; the record is brought up to them.
    var promoted: [String: LocalRecord] = [:]
  }

  /// The local changes among `candidates` (every path when nil); `intended` are the records
  /// of a render that may have been cut short (see ``MappingState/intended``).
  func scan(_ candidates: Set<String>?, record: [String: LocalRecord], intended: [String: LocalRecord]) -> ScanResult {
    var result = self.scanPaths(candidates, record: record)
    result.changes.removeAll { change in
      guard let planned = intended[change.path], change.value.map({ ContentHash(of: $0) }) == planned.hash else { return false }
      result.promoted[change.path] = planned
      return true
    }
    return result
  }

  private func scanPaths(_ candidates: Set<String>?, record: [String: LocalRecord]) -> ScanResult {
    // A missing (or unmounted, or replaced) directory is no reason to delete every key.
    var info = stat()
    guard lstat(self.watchedDirectory, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
      return ScanResult(problems: [LocalProblem(path: "", message: "\(self.watchedDirectory) is missing or not a directory; nothing is pushed from it")])
    }
    switch self.mapping.kind {
    case .template: return ScanResult()
    case .format: return self.scanDocument(record: record)
    case .file:
      if let candidates, !candidates.contains(".") { return ScanResult() }
      return self.scanFiles(["."], record: record)
    case .tree:
      var paths = candidates ?? Set(record.keys).union(self.listTree())
      // A removed directory is reported as one path: every recorded file under it is a candidate.
      if let candidates {
        for path in candidates {
          let directory = path + "/"
          for recorded in record.keys where recorded.hasPrefix(directory) { paths.insert(recorded) }
        }
      }
      return self.scanFiles(paths.sorted(), record: record)
    }
  }

  private func scanFiles(_ paths: [String], record: [String: LocalRecord]) -> ScanResult {
    var changes: [LocalChange] = []
    var problems: [LocalProblem] = []
    for path in paths {
      let known = record[path]
      if known == nil, self.mapping.kind == .tree, Self.isIgnored(path) { continue }
      let bytes: [UInt8]?
      switch self.readLocal(path) {
      case .absent: bytes = nil
      case .bytes(let read): bytes = read
      case .unreadable(let why):
        // Never taken for a delete: only a file that is really gone deletes its key.
        problems.append(LocalProblem(path: path, message: why))
        continue
      }
      guard let bytes else {
        // Gone: a delete of a key the agent wrote (a new file that vanished is nothing).
        if let known { changes.append(LocalChange(path: path, key: self.key(for: path), value: nil, base: known.revision)) }
        continue
      }
      if let known, known.hash == ContentHash(of: bytes) { continue }
      changes.append(LocalChange(path: path, key: self.key(for: path), value: bytes, base: known?.revision ?? 0))
    }
    return ScanResult(changes: changes, problems: problems)
  }

  /// A flat JSON or YAML document, compared entry by entry with the record.
  private func scanDocument(record: [String: LocalRecord]) -> ScanResult {
    let bytes: [UInt8]
    switch self.readLocal(".") {
    case .absent: return ScanResult()  // a deleted document is restored, not pushed
    case .unreadable(let why): return ScanResult(problems: [LocalProblem(path: ".", message: why)])
    case .bytes(let read): bytes = read
    }
    if record["."]?.hash == ContentHash(of: bytes) { return ScanResult() }
    let entries: [String: [UInt8]]
    do {
      entries = try Self.parseFlatDocument(bytes, format: self.mapping.format ?? .json)
    } catch {
      return ScanResult(problems: [LocalProblem(path: ".", message: error.message)])
    }
    var changes: [LocalChange] = []
    for path in Set(entries.keys).union(record.keys.filter { $0 != "." }).sorted() {
      let known = record[path]
      let value = entries[path]
      if let value, let known, known.hash == ContentHash(of: value) { continue }
      if value == nil, known == nil { continue }
      if let problem = pathProblem(path) {
        return ScanResult(problems: [LocalProblem(path: ".", message: "the entry \"\(path)\" cannot be a key: \(KeyPathError(problem, key: Array(path.utf8)).reason)")])
      }
      changes.append(LocalChange(path: path, key: self.key(for: path), value: value, base: known?.revision ?? 0))
    }
    return ScanResult(changes: changes)
  }

  /// The entries of a JSON object or YAML mapping of strings, nested objects giving `a/b`
  /// keys as the renderer nests them. Numbers, booleans, nulls and lists are refused (the
  /// renderer writes every value as a string; guessing their text would change values).
  static func parseFlatDocument(_ bytes: [UInt8], format: Mapping.Format) throws(AgentError) -> [String: [UInt8]] {
    var entries: [String: [UInt8]] = [:]
    switch format {
    case .json:
      let object: Any
      do { object = try JSONSerialization.jsonObject(with: Data(bytes)) } catch {
        throw AgentError(.plan, "not valid JSON: \(error.localizedDescription)")
      }
      guard let dictionary = object as? [String: Any] else { throw AgentError(.plan, "the JSON document is not an object") }
      func walk(_ dictionary: [String: Any], _ prefix: String) throws(AgentError) {
        for (key, value) in dictionary {
          let name = prefix + key
          if let text = value as? String {
            entries[name] = Array(text.utf8)
          } else if let nested = value as? [String: Any] {
            try walk(nested, name + "/")
          } else {
            throw AgentError(.plan, "\"\(name)\" is not a string (write it in quotes): only strings are written back")
          }
        }
      }
      try walk(dictionary, "")
    case .yaml:
      guard let text = String(validating: bytes, as: UTF8.self) else { throw AgentError(.plan, "the YAML document is not UTF-8") }
      let node: Node?
      do { node = try Yams.compose(yaml: text) } catch { throw AgentError(.plan, "not valid YAML: \(error)") }
      guard let node else { return [:] }
      guard let mapping = node.mapping else { throw AgentError(.plan, "the YAML document is not a mapping") }
      func walk(_ mapping: Node.Mapping, _ prefix: String) throws(AgentError) {
        for (key, value) in mapping {
          guard let name = key.string.map({ prefix + $0 }) else { throw AgentError(.plan, "a YAML key is not a string") }
          if let scalar = value.scalar {
            entries[name] = Array(scalar.string.utf8)
          } else if let nested = value.mapping {
            try walk(nested, name + "/")
          } else {
            throw AgentError(.plan, "\"\(name)\" is a list: only strings are written back")
          }
        }
      }
      try walk(mapping, "")
    default:
      throw AgentError(.configuration, "write-back of \(format.rawValue) documents is not supported")
    }
    return entries
  }

  /// Reads a record path without following any symlink (see ``AtomicWriter/read(_:)``):
  /// only `.absent` is ever taken for a delete.
  func readLocal(_ path: String) -> AtomicWriter.FileRead {
    if self.mapping.kind == .tree { return AtomicWriter(root: self.mapping.dest).read(path) }
    let (writer, name) = AtomicWriter.forFile(self.mapping.dest)
    return writer.read(name)
  }

  /// Every regular file under the tree's root, relative to it; symlinks are not followed.
  func listTree() -> [String] {
    var paths: [String] = []
    func walk(_ directory: FileDescriptor, _ relative: String, _ path: String) {
      guard let entries = try? listDirectory(directory, path: path) else { return }
      for entry in entries {
        guard let name = entry.name else { continue }
        let childRelative = joinPath(relative, name)
        switch entry.kind {
        case .directory:
          let childPath = joinPath(path, name)
          if let child = try? RootedDirectory.openChild(of: directory, name: name, path: childPath, create: false, mode: 0o755) {
            walk(child, childRelative, childPath)
          }
        case .regular: paths.append(childRelative)
        case .symlink, .other: continue
        }
      }
    }
    if let root = try? RootedDirectory(root: self.mapping.dest, create: false, mode: 0o755) {
      walk(root.directory, "", self.mapping.dest)
    }
    return paths
  }
}
