import EtcdClient
import Foundation
import Templates

#if canImport(Glibc)
import Glibc
#endif

/// One local change of a write-back mapping, found by comparing the disk with the record.
struct LocalChange: Sendable, Hashable {
  /// The record's path: relative to a tree's root, `.` for a `file` mapping, the key relative
  /// to the prefix for a `format` mapping.
  var path: ExactString
  /// The etcd key.
  var key: [UInt8]
  /// The new value, or nil when the file (or the document's entry) was deleted.
  var value: [UInt8]?
  /// The mod revision the local copy was based on; 0 when the key did not exist.
  var base: Int64
  /// What `lstat` said of the file read (the document, for a `format` entry): a refusal is
  /// remembered by it, so the file is not read again until it changes.
  var stamp: AtomicWriter.FileStamp? = nil
}

/// A local file that could not be pushed, and why (unreadable, not a flat document).
struct LocalProblem: Sendable, Hashable {
  /// The record path; empty for the watched directory itself.
  var path: ExactString
  var message: String
  /// What stood at the path when it was refused (nil: nothing could be stat'ed).
  var stamp: AtomicWriter.FileStamp? = nil
}

/// Finds the local edits of one write-back mapping: a file whose bytes differ from what the
/// agent last wrote or pushed (its ``LocalRecord``) is an edit, whatever its timestamps say.
/// That is also what keeps the agent's own writes from echoing back: they match the record.
///
/// With `expected` (the identity the agent recorded for the watched directory), every read
/// verifies the directory it opened: files of a directory put in its place after the agent's
/// check are never read, and never taken for deleted ones.
struct LocalScanner: Sendable {
  let mapping: Mapping
  /// Who may own a file that is pushed (root always may); nil: the agent's own user.
  let owner: uid_t?
  /// The watched directory the agent recorded (``Agent/checkDestination(_:)``); nil before it
  /// exists, and for the identity check itself.
  let expected: DirectoryIdentity?

  init(mapping: Mapping, owner: uid_t? = nil, expected: DirectoryIdentity? = nil) {
    self.mapping = mapping
    self.owner = owner
    self.expected = expected
  }

  /// A point of a scan where ``scanHook`` is called.
  enum ScanStep: Sendable, Hashable {
    /// The watched directory is about to be opened (by path) to read or stat a record path;
    /// the empty path for the check of the directory itself.
    case open(ExactString)
    /// A file's bytes were read (how many): a file judged from its `lstat` alone is not.
    case read(ExactString, Int)
    /// The scan is done, its last check of the directory included.
    case scanned
  }

  /// Test seam: called at each ``ScanStep`` of the scanners of the task it is bound in, so
  /// that a test can replace the watched directory (and put it back) inside a scan, as an
  /// unmount or a transient error in the path walk would. Production code binds nothing.
  @TaskLocal static var scanHook: (@Sendable (ScanStep) -> Void)?

  /// The most bytes read of a tree's file or a `file` mapping's file: etcd's request limit
  /// (``Agent/writeBackLimit``). A larger file is refused from its size alone.
  static let fileLimit = 1_572_864 - 512
  /// The most bytes read of a `format` document (its entries are each bounded by etcd).
  static let documentLimit = 64 << 20

  /// The watched directory's device and inode; nil when it is missing or not a directory.
  func destinationIdentity() -> DirectoryIdentity? {
    var info = stat()
    guard lstat(self.watchedDirectory, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { return nil }
    return DirectoryIdentity(info)
  }

  /// Why the watched directory cannot be scanned (missing, not a directory, not the recorded
  /// one: verified on the descriptor opened), or nil.
  func rootProblem() -> LocalProblem? {
    Self.scanHook?(.open(""))
    guard let expected = self.expected else {
      var info = stat()
      guard lstat(self.watchedDirectory, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
        return LocalProblem(path: "", message: "\(self.watchedDirectory) is missing or not a directory; nothing is pushed from it")
      }
      return nil
    }
    do throws(FileError) {
      _ = try RootedDirectory(root: self.watchedDirectory, create: false, mode: 0o755, expected: expected)
      return nil
    } catch {
      return LocalProblem(path: "", message: "\(error); nothing is pushed from it")
    }
  }

  /// A reader of the watched directory (verifying it against ``expected``) and the name of
  /// the file in it (nil for a tree: record paths are relative to its root).
  func reader() -> (AtomicWriter, file: String?) {
    let options = AtomicWriter.Options(createDirectories: false, rootIdentity: self.expected)
    if self.mapping.kind == .tree { return (AtomicWriter(root: self.mapping.dest, options: options), nil) }
    let (writer, name) = AtomicWriter.forFile(self.mapping.dest, options: options)
    return (writer, name)
  }

  /// The directory inotify watches: the tree's root, or the file's directory.
  var watchedDirectory: String {
    if self.mapping.kind == .tree { return self.mapping.dest }
    return AtomicWriter.forFile(self.mapping.dest).writer.root
  }

  /// The destination's name in ``watchedDirectory`` (files and formats).
  var fileName: String { AtomicWriter.forFile(self.mapping.dest).name }

  /// The record paths a change reported by the watcher concerns (nil: not this mapping's).
  func recordPath(forChanged path: String) -> ExactString? {
    switch self.mapping.kind {
    case .tree: return ExactString(path)
    default: return path.bytesEqual(self.fileName) ? MappingRunner.wholeFile : nil
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

  /// What a scan found: files that differ from the record, new files (trees), and files the
  /// record has that are gone.
  struct ScanResult: Sendable {
    var changes: [LocalChange] = []
    var problems: [LocalProblem] = []
    /// Files larger than etcd takes (their size in the message), refused from their size.
    var tooLarge: [LocalProblem] = []
    /// Files holding what the agent meant to write before a crash cut its record short:
    /// theirs, not edits; the record is brought up to them.
    var promoted: [ExactString: LocalRecord] = [:]
    /// Changed or new files left unread because the scan had already gone past the
    /// mapping's `keysPerScan` or `bytesPerScan` (their stamps): the scan is refused whole,
    /// these with it, without their bytes ever being held.
    var unread: [LocalProblem] = []
    /// What the scan found at each path it compared (bytes hashed, or nothing there), whether
    /// it took it for an edit or not; not the files it refused or left unread. A render
    /// right after the scan replaces a file only while it still holds this
    /// (``Agent/expectations(_:)``).
    var observed: [ExactString: ExpectedFile] = [:]
  }

  /// The local changes among `candidates` (every path when nil); `intended` are the records
  /// of a render that may have been cut short (see ``MappingState/intended``).
  /// `refused` are files kept because they could not be pushed, by what `lstat` said of them
  /// then: such a file is not read again until it changes.
  func scan(_ candidates: Set<ExactString>?, record: [ExactString: LocalRecord], intended: [ExactString: LocalRecord],
            refused: [ExactString: AtomicWriter.FileStamp?] = [:]) -> ScanResult {
    defer { Self.scanHook?(.scanned) }
    var result = self.scanPaths(candidates, record: record, intended: intended, refused: refused)
    // Replaced while it was read: every read since failed its own check (none is taken for a
    // delete), and what was read before is not pushed either; the agent stops the mapping.
    if self.expected != nil, let problem = self.rootProblem() { return ScanResult(problems: [problem]) }
    result.changes.removeAll { change in
      guard let planned = intended[change.path], change.value.map({ ContentHash(of: $0) }) == planned.hash else { return false }
      result.promoted[change.path] = planned
      return true
    }
    return result
  }

  private func scanPaths(_ candidates: Set<ExactString>?, record: [ExactString: LocalRecord], intended: [ExactString: LocalRecord],
                         refused: [ExactString: AtomicWriter.FileStamp?]) -> ScanResult {
    // A missing (or unmounted, or replaced) directory is no reason to delete every key.
    if let problem = self.rootProblem() { return ScanResult(problems: [problem]) }
    switch self.mapping.kind {
    case .template: return ScanResult()
    case .format: return self.scanDocument(record: record, refused: refused)
    case .file:
      if let candidates, !candidates.contains(MappingRunner.wholeFile) { return ScanResult() }
      return self.scanFiles([MappingRunner.wholeFile], record: record, intended: intended, refused: refused)
    case .tree:
      var paths = candidates ?? Set(record.keys).union(self.listTree().map { ExactString($0) })
      // A removed directory is reported as one path: every recorded file under it is a candidate.
      if let candidates {
        for path in candidates {
          let directory = Array(path.utf8) + [UInt8(ascii: "/")]
          for recorded in record.keys where recorded.utf8.starts(with: directory) { paths.insert(recorded) }
        }
      }
      return self.scanFiles(paths.sorted(), record: record, intended: intended, refused: refused)
    }
  }

  /// How much a scan of files has read so far, against the mapping's `keysPerScan` and
  /// `bytesPerScan`: once past either, the scan is refused whole (see
  /// ``Agent/applyQuotas(_:_:_:_:unread:)``), so the files left are not read at all.
  private struct Budget {
    let keys: Int
    let bytes: Int
    var changes = 0
    var read = 0
    var exceeded: Bool { self.changes > self.keys || self.read > self.bytes }

    /// Counts a change the push would send (a put etcd can take, or a delete it pushes).
    mutating func count(_ change: LocalChange, deletes: Bool) {
      if let value = change.value {
        // Refused alone from its size by the push: no part of the scan's quota.
        guard value.count + change.key.count <= Agent.writeBackLimit else { return }
        self.read += value.count
      } else if !deletes {
        return  // restored, not pushed
      }
      self.changes += 1
    }
  }

  private func scanFiles(_ paths: [ExactString], record: [ExactString: LocalRecord], intended: [ExactString: LocalRecord],
                         refused: [ExactString: AtomicWriter.FileStamp?]) -> ScanResult {
    var result = ScanResult()
    let limits = self.mapping.writeBackLimits
    var budget = Budget(keys: limits.keysPerScan, bytes: limits.bytesPerScan)
    for path in paths {
      let known = record[path]
      if known == nil, self.mapping.kind == .tree, Self.isIgnored(path.string) { continue }
      // Owner, hard links and size are judged from `lstat` before anything is read: a file
      // that cannot be pushed costs no read and no memory (its bytes are compared, without
      // being held, only to tell an unchanged file of the record from an edit).
      let before: AtomicWriter.FileStamp?
      do throws(FileError) {
        before = try self.checkedStamp(path.string)
      } catch {
        // Refused when nothing could be looked at either: unchanged, not reported again.
        if let stamp = refused[path], stamp == nil { continue }
        result.problems.append(LocalProblem(path: path, message: "\(error)", stamp: nil))
        continue
      }
      // Refused and unchanged since: not read again.
      if let stamp = refused[path], stamp == before { continue }
      if let before, before.isRegular {
        if before.size > Int64(Self.fileLimit) {
          result.tooLarge.append(LocalProblem(path: path, message: "\(before.size) bytes", stamp: before))
          continue
        }
        if let problem = self.ownershipProblem(before) {
          if self.holds(path, known, noting: &result.observed) { continue }
          result.problems.append(LocalProblem(path: path, message: problem, stamp: before))
          continue
        }
        if budget.exceeded {
          // Past the scan's quota: refused whole, so the rest is only told apart, not read.
          if self.holds(path, known, noting: &result.observed) || self.holds(path, intended[path], noting: &result.observed) {
            continue
          }
          result.unread.append(LocalProblem(path: path, message: "not read: the scan is past writeBackLimits", stamp: before))
          continue
        }
      }
      let bytes: [UInt8]?
      let stamp: AtomicWriter.FileStamp?
      switch self.readLocal(path.string, limit: Self.fileLimit) {
      case .absent: (bytes, stamp) = (nil, nil)
      case .bytes(let read, let info):
        (bytes, stamp) = (read, info)
        Self.scanHook?(.read(path, read.count))
      case .tooLarge(let info):
        result.tooLarge.append(LocalProblem(path: path, message: "\(info.size) bytes", stamp: info))
        continue
      case .unreadable(let why, let info):
        // Never taken for a delete: only a file that is really gone deletes its key.
        result.problems.append(LocalProblem(path: path, message: why, stamp: info))
        continue
      }
      guard let bytes, let stamp else {
        result.observed[path] = .absent
        // Gone: a delete of a key the agent wrote (a new file that vanished is nothing).
        if let known {
          let change = LocalChange(path: path, key: self.key(for: path.string), value: nil, base: known.revision)
          result.changes.append(change)
          budget.count(change, deletes: self.mapping.deletes)
        }
        continue
      }
      let hash = ContentHash(of: bytes)
      result.observed[path] = .content(hash)
      if let known, known.hash == hash { continue }
      // Checked again on the descriptor read: replaced since the `lstat` above.
      if let problem = self.ownershipProblem(stamp) {
        result.problems.append(LocalProblem(path: path, message: problem, stamp: stamp))
        continue
      }
      let change = LocalChange(path: path, key: self.key(for: path.string), value: bytes, base: known?.revision ?? 0, stamp: stamp)
      result.changes.append(change)
      // The agent's own write cut short by a crash is no edit (``scan(_:record:intended:refused:)``).
      if intended[path]?.hash != hash { budget.count(change, deletes: self.mapping.deletes) }
    }
    return result
  }

  /// Whether the file at `path` holds what `record` (if any) describes, as ``holds(_:_:)``
  /// compares; if it does, the scan has observed those bytes there.
  private func holds(_ path: ExactString, _ record: LocalRecord?, noting observed: inout [ExactString: ExpectedFile]) -> Bool {
    guard let record, self.holds(path, record) else { return false }
    observed[path] = .content(record.hash)
    return true
  }

  /// Whether the file at `path` holds what `record` describes, compared without holding its
  /// bytes (hashed 64 KiB at a time; a file over ``fileLimit`` is not read).
  private func holds(_ path: ExactString, _ record: LocalRecord) -> Bool {
    Self.scanHook?(.open(path))
    let (writer, file) = self.reader()
    return writer.hash(file ?? path.string, sizeLimit: Int64(Self.fileLimit)) == .hash(record.hash)
  }

  /// A flat JSON or YAML document, compared entry by entry with the record.
  private func scanDocument(record: [ExactString: LocalRecord], refused: [ExactString: AtomicWriter.FileStamp?]) -> ScanResult {
    let whole = MappingRunner.wholeFile
    if let stamp = refused[whole], stamp == self.stamp(whole.string) { return ScanResult() }
    let bytes: [UInt8]
    let stamp: AtomicWriter.FileStamp
    switch self.readLocal(whole.string, limit: Self.documentLimit) {
    case .absent: return ScanResult(observed: [whole: .absent])  // a deleted document is restored, not pushed
    case .unreadable(let why, let info): return ScanResult(problems: [LocalProblem(path: whole, message: why, stamp: info)])
    case .tooLarge(let info): return ScanResult(tooLarge: [LocalProblem(path: whole, message: "\(info.size) bytes", stamp: info)])
    case .bytes(let read, let info): (bytes, stamp) = (read, info)
    }
    let hash = ContentHash(of: bytes)
    // Edits that change no entry (spacing, order, comments) push nothing: the render writes
    // the canonical form over them.
    let observed: [ExactString: ExpectedFile] = [whole: .content(hash)]
    if record[whole]?.hash == hash { return ScanResult(observed: observed) }
    if let problem = self.ownershipProblem(stamp) { return ScanResult(problems: [LocalProblem(path: whole, message: problem, stamp: stamp)]) }
    let entries: [ExactString: [UInt8]]
    do {
      entries = try FlatDocument.parse(bytes, format: self.mapping.format ?? .json)
    } catch {
      return ScanResult(problems: [LocalProblem(path: whole, message: error.message, stamp: stamp)])
    }
    var changes: [LocalChange] = []
    for path in Set(entries.keys).union(record.keys.filter { $0 != MappingRunner.wholeFile }).sorted() {
      let known = record[path]
      let value = entries[path]
      if let value, let known, known.hash == ContentHash(of: value) { continue }
      if value == nil, known == nil { continue }
      if let problem = pathProblem(path.string) {
        return ScanResult(problems: [LocalProblem(path: whole, message: "the entry \"\(escapeBytes(path.utf8))\" cannot be a key: \(KeyPathError(problem, key: Array(path.utf8)).reason)", stamp: stamp)])
      }
      changes.append(LocalChange(path: path, key: self.key(for: path.string), value: value, base: known?.revision ?? 0, stamp: stamp))
    }
    return ScanResult(changes: changes, observed: observed)
  }
}
