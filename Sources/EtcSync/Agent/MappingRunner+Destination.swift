import Synchronization
import Templates

#if canImport(Glibc)
import Glibc
#endif

/// The watched directory the agent recorded for a write-back mapping (see
/// ``Agent/checkDestination(_:)``), shared by every copy of its runner. The runner's writers
/// verify the root they open against it, on the descriptor, so that a directory put in its
/// place between the agent's check (by path) and the open is never written.
final class RecordedDestination: Sendable {
  private let value = Mutex<DirectoryIdentity?>(nil)

  init() {}

  /// The recorded identity; nil until the destination exists (the first render creates it).
  var identity: DirectoryIdentity? {
    get { self.value.withLock { $0 } }
    set { self.value.withLock { $0 = newValue } }
  }
}

extension MappingRunner {
  /// The identity every write (and write-back read) of this mapping verifies its root
  /// against: the recorded destination of a write-back mapping, nil for the others (and
  /// before a write-back destination exists). The root is a tree's destination, or a file's
  /// directory: the write-back watched directory either way.
  var recordedRoot: DirectoryIdentity? {
    self.mapping.writeBack ? self.recordedDestination.identity : nil
  }

  /// The local scanner of this write-back mapping, verifying what it reads against
  /// ``recordedRoot``.
  func localScanner(owner: uid_t? = nil) -> LocalScanner {
    LocalScanner(mapping: self.mapping, owner: owner, expected: self.recordedRoot)
  }

  /// A writing error as the mapping's failure: a root that is not the recorded one is
  /// ``MappingFailure/destinationReplaced`` (the agent then stops the mapping), the rest as
  /// ``MappingError/init(writing:)`` says.
  static func failure(writing error: any Error) -> MappingError {
    if let file = error as? FileError, file.code == .destinationReplaced {
      return MappingError(.destinationReplaced, "\(file)", subject: .file(ExactString(file.path)))
    }
    return MappingError(writing: error)
  }

  /// The writer of a file mapping's one file (the mapping's `createDirs` and `dirMode`, the
  /// test hook, a write-back mapping's recorded directory), and the file's name in its
  /// directory.
  func fileWriter() -> (AtomicWriter, String) {
    var options = AtomicWriter.Options()
    options.createDirectories = self.mapping.createDirs
    options.directoryMode = mode_t(self.mapping.dirMode ?? 0o755)
    options.rootIdentity = self.recordedRoot
    var (writer, name) = AtomicWriter.forFile(self.mapping.dest, options: options)
    writer.hook = self.hook
    return (writer, name)
  }

  /// The writer of a tree mapping: its swap strategy, `dirMode`, the test hook and a
  /// write-back mapping's recorded directory (the tree's root; a swapped tree's revision
  /// directories live in it).
  func treeWriter() -> TreeWriter {
    let strategy: TreeWriter.Strategy = self.mapping.swap == .symlink ? .atomicSwap : .perFile
    return TreeWriter(root: self.mapping.dest, strategy: strategy,
                      directoryMode: mode_t(self.mapping.dirMode ?? 0o755), hook: self.hook, rootIdentity: self.recordedRoot,
                      reuseUnchanged: !self.mapping.writeBack)
  }

  /// How the file system of a tree's root matches names (``NameFolding/exact`` for the other
  /// kinds, which write one file): the root is opened (created if missing, as the writer
  /// would) and probed the first time, and again when it is another directory.
  func destinationFolding() throws(FileError) -> NameFolding {
    guard self.mapping.kind == .tree else { return .exact }
    let root = try RootedDirectory(root: self.mapping.dest, create: true, mode: mode_t(self.mapping.dirMode ?? 0o755),
                                   expected: self.recordedRoot)
    return try self.folding.folding(of: root.directory, root: self.mapping.dest)
  }

  /// A reader of the tree as readers see it: the directory `..data` points at for a swapped
  /// tree (its top-level entries are symlinks, which the writer never follows), or nil when
  /// no tree has been swapped in yet, or when the destination does not exist yet (a first
  /// `diff` before any `sync`: every file is new).
  func treeReader() throws -> AtomicWriter? {
    var root = self.mapping.dest
    var status = stat()
    if lstat(root, &status) != 0 && errno == ENOENT { return nil }
    if self.mapping.swap == .symlink {
      guard let current = try TreeSwap(root: root).currentDirectory() else { return nil }
      root = current.hasPrefix("/") ? current : root + "/" + current
    }
    return AtomicWriter(root: root)
  }
}
