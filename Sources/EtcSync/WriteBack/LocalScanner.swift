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
      let prefix = self.mapping.prefix ?? ""
      return Array((prefix.isEmpty || prefix.hasSuffix("/") ? prefix + path : prefix + "/" + path).utf8)
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

  /// `NAME.conflict.REV`, as the agent names a kept local edit.
  static func isConflictCopy(_ name: String) -> Bool {
    guard let range = name.range(of: ".conflict.", options: .backwards) else { return false }
    let digits = name[range.upperBound...]
    return !digits.isEmpty && digits.allSatisfy(\.isASCII) && digits.allSatisfy(\.isNumber)
  }

  /// The local changes among `candidates` (every path when nil): files that differ from the
  /// record, new files (trees), and files the record has that are gone.
  func scan(_ candidates: Set<String>?, record: [String: LocalRecord]) -> (changes: [LocalChange], problems: [LocalProblem]) {
    switch self.mapping.kind {
    case .template: return ([], [])
    case .format: return self.scanDocument(record: record)
    case .file:
      if let candidates, !candidates.contains(".") { return ([], []) }
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

  private func scanFiles(_ paths: [String], record: [String: LocalRecord]) -> (changes: [LocalChange], problems: [LocalProblem]) {
    var changes: [LocalChange] = []
    var problems: [LocalProblem] = []
    for path in paths {
      let known = record[path]
      if known == nil, self.mapping.kind == .tree, Self.isIgnored(path) { continue }
      let bytes: [UInt8]?
      do {
        bytes = try self.read(path)
      } catch {
        problems.append(LocalProblem(path: path, message: "\(error)"))
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
    return (changes, problems)
  }

  /// A flat JSON or YAML document, compared entry by entry with the record.
  private func scanDocument(record: [String: LocalRecord]) -> (changes: [LocalChange], problems: [LocalProblem]) {
    let bytes: [UInt8]?
    do { bytes = try self.read(".") } catch { return ([], [LocalProblem(path: ".", message: "\(error)")]) }
    guard let bytes else { return ([], []) }  // a deleted document is restored, not pushed
    if record["."]?.hash == ContentHash(of: bytes) { return ([], []) }
    let entries: [String: [UInt8]]
    do {
      entries = try Self.parseFlatDocument(bytes, format: self.mapping.format ?? .json)
    } catch {
      return ([], [LocalProblem(path: ".", message: error.message)])
    }
    var changes: [LocalChange] = []
    for path in Set(entries.keys).union(record.keys.filter { $0 != "." }).sorted() {
      let known = record[path]
      let value = entries[path]
      if let value, let known, known.hash == ContentHash(of: value) { continue }
      if value == nil, known == nil { continue }
      if let problem = pathProblem(path) {
        return ([], [LocalProblem(path: ".", message: "the entry \"\(path)\" cannot be a key: \(KeyPathError(problem, key: Array(path.utf8)).reason)")])
      }
      changes.append(LocalChange(path: path, key: self.key(for: path), value: value, base: known?.revision ?? 0))
    }
    return (changes, [])
  }

  /// The entries of a flat JSON object or YAML mapping whose values are all strings (numbers
  /// and booleans are taken as the text written). A nested document does not map back onto
  /// keys one to one, so it is refused.
  static func parseFlatDocument(_ bytes: [UInt8], format: Mapping.Format) throws(AgentError) -> [String: [UInt8]] {
    switch format {
    case .json:
      let object: Any
      do { object = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]) } catch {
        throw AgentError(.plan, "not valid JSON: \(error.localizedDescription)")
      }
      guard let dictionary = object as? [String: Any] else { throw AgentError(.plan, "the JSON document is not an object") }
      var entries: [String: [UInt8]] = [:]
      for (key, value) in dictionary {
        switch value {
        case let text as String: entries[key] = Array(text.utf8)
        case let number as NSNumber: entries[key] = Array("\(number)".utf8)
        default: throw AgentError(.plan, "\"\(key)\" is not a string: only a flat document of strings is written back")
        }
      }
      return entries
    case .yaml:
      guard let text = String(validating: bytes, as: UTF8.self) else { throw AgentError(.plan, "the YAML document is not UTF-8") }
      let node: Node?
      do { node = try Yams.compose(yaml: text) } catch { throw AgentError(.plan, "not valid YAML: \(error)") }
      guard let node else { return [:] }
      guard let mapping = node.mapping else { throw AgentError(.plan, "the YAML document is not a mapping") }
      var entries: [String: [UInt8]] = [:]
      for (key, value) in mapping {
        guard let name = key.string else { throw AgentError(.plan, "a YAML key is not a string") }
        guard let scalar = value.scalar else {
          throw AgentError(.plan, "\"\(name)\" is not a string: only a flat document of strings is written back")
        }
        entries[name] = Array(scalar.string.utf8)
      }
      return entries
    default:
      throw AgentError(.configuration, "write-back of \(format.rawValue) documents is not supported")
    }
  }

  /// The bytes at a record path, nil when there is no regular file there. Never follows a
  /// symlink (AtomicWriter's reader refuses them).
  func read(_ path: String) throws(FileError) -> [UInt8]? {
    switch self.mapping.kind {
    case .tree: return try AtomicWriter(root: self.mapping.dest).contents(of: path)
    default:
      let (writer, name) = AtomicWriter.forFile(self.mapping.dest)
      return try writer.contents(of: name)
    }
  }

  /// Every regular file under the tree's root, relative to it; symlinks are not followed.
  func listTree() -> [String] {
    var paths: [String] = []
    func walk(_ directory: String, _ relative: String) {
      guard let handle = opendir(directory) else { return }
      defer { closedir(handle) }
      while let entry = readdir(handle) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
          String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name == "." || name == ".." { continue }
        let full = directory + "/" + name
        let path = relative.isEmpty ? name : relative + "/" + name
        var info = stat()
        guard lstat(full, &info) == 0 else { continue }
        switch info.st_mode & S_IFMT {
        case S_IFDIR: walk(full, path)
        case S_IFREG: paths.append(path)
        default: continue
        }
      }
    }
    walk(self.mapping.dest, "")
    return paths
  }
}
