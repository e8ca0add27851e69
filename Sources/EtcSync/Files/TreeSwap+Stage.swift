#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Templates

extension TreeSwap {
  /// Writes `files` into the new hidden directory `name`, fsyncs it and runs `check` on it.
  /// A file the current revision already holds as wanted is hard-linked from it instead
  /// (``Options/reuseUnchanged``). On failure the half-written directory is removed (unless a
  /// test hook abandoned the publish, which simulates a crash).
  func stage(
    _ files: [ExactString: DesiredFile], as name: String, in rootDir: FileDescriptor,
    inheriting current: CurrentTree?, check: StagedFileCheck?
  ) async throws(FileError) {
    let stagedPath = joinPath(root, name)
    do {
      let top = try RootedDirectory.openChild(
        of: rootDir, name: name, path: stagedPath, create: true, mode: options.directoryMode)
      var writer = StagingWriter(top: top, path: stagedPath, options: options)
      // The current revision, opened as the walk that compared it did (no symlink followed).
      let source = options.reuseUnchanged ? current.flatMap { current in
        try? RootedDirectory.openChild(
          of: rootDir, name: current.directoryName, path: joinPath(root, current.directoryName), create: false,
          mode: options.directoryMode)
      } : nil
      for path in files.keys.sorted() {
        guard let file = files[path] else { continue }
        let existing = current?.files[path]
        if let source, let existing, existing.matches, try writer.link(at: path.string, from: source, expected: existing.info) {
          continue
        }
        try writer.write(file, at: path.string, inheriting: existing?.info)
      }
      try await hook(.afterTempWrite, stagedPath)
      try writer.finish()
      try await hook(.afterFsync, stagedPath)
      if let check { try await runCheck(check, on: stagedPath, target: root) }
    } catch {
      if error.code != .interrupted {
        try? removeTree(name.cName, in: rootDir, path: stagedPath)
      }
      throw error
    }
  }
}

/// Writes the files of a new tree in byte order of their paths, keeping open only the
/// directories on the current path and fsyncing each one when it is left.
///
/// A small tree is made durable file by file and directory by directory. Once it grows past
/// ``FileSystemSync/threshold`` files, nothing more is fsynced one by one and ``finish()``
/// syncs the staged tree's file system once (``FileSystemSync``): the staged directory is new
/// and holds no mount point, so that one call covers every file and directory in it.
/// Everything is durable before ``finish()`` returns.
private struct StagingWriter {
  let top: FileDescriptor
  let path: String
  let options: TreeSwap.Options
  /// Open directories below `top` on the current path.
  var stack: [(name: String, fd: FileDescriptor)] = []
  /// Written files not yet fsynced.
  var unsynced: [(fd: FileDescriptor, path: String)] = []
  /// Set once the tree has more than the threshold's files: then ``finish()`` syncs its file
  /// system instead.
  var syncsFileSystem = false
  /// `top`'s file system, noted before anything was written in it.
  var fileSystem = FileSystemSync()
  /// The source directory of the last linked file (see ``sourceDirectory(_:below:)``).
  private var linkSource: (directories: [String], fd: FileDescriptor)?
  /// Whether a default ACL (on `top`, inherited by every directory made in it) sets the
  /// permissions of the files created in the staged tree instead of the umask.
  let defaultACL: Bool

  init(top: FileDescriptor, path: String, options: TreeSwap.Options) {
    self.top = top
    self.path = path
    self.options = options
    self.fileSystem.note(top, path: path)
    self.defaultACL = PosixACL.hasDefaultACL(directory: top.raw)
  }

  var currentPath: String { joinPath([path] + stack.map(\.name)) }

  mutating func write(_ file: DesiredFile, at relativePath: String, inheriting info: stat?)
    throws(FileError)
  {
    var directories = pathSegments(relativePath)
    let name = directories.removeLast()
    try enter(directories)
    let directory = stack.last?.fd ?? top
    let filePath = joinPath(currentPath, name)
    let flags = O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC
    let attributes = EffectiveAttributes(file.attributes, existing: info)
    let finalMode = attributes.finalCreationMode(defaultACL: self.defaultACL)
    let fd = retryingEINTR { openat(directory.raw, name, flags, finalMode ?? 0o600) }
    guard fd >= 0 else { throw .system(.createTemporary, filePath, "cannot create a staged file") }
    let handle = FileDescriptor(fd)
    if let error = writeAll(handle, file.bytes) {
      throw FileError(.write, path: filePath, errno: error, message: "cannot write a staged file")
    }
    try attributes.apply(to: handle, path: filePath, createdFinal: finalMode != nil)
    guard options.fsync, !syncsFileSystem else { return }
    unsynced.append((handle, filePath))
    if unsynced.count >= FileSystemSync.threshold && fileSystem.isUsable {
      syncsFileSystem = true
      unsynced.removeAll()
    }
  }

  /// Hard-links the current revision's file at `relativePath` (below `source`) into the new
  /// tree. False, with nothing left behind, when it cannot be linked (another file system, a
  /// link limit, a file system without hard links) or the entry linked is not the regular
  /// file `expected` describes, as the walk that compared it saw it: the same inode, size,
  /// modification time, mode and owner (a file replaced, edited in place or chmod-ed since);
  /// the caller then writes the file. Its bytes are on disk already; the directory's fsync
  /// makes the new entry durable.
  mutating func link(at relativePath: String, from source: FileDescriptor, expected: stat) throws(FileError) -> Bool {
    var directories = pathSegments(relativePath)
    let name = directories.removeLast()
    guard let sourceDirectory = self.sourceDirectory(directories, below: source) else { return false }
    try enter(directories)
    let directory = stack.last?.fd ?? top
    // Flags 0: a symlink in the name's place is linked as a symlink, never followed.
    guard linkat(sourceDirectory.raw, name, directory.raw, name, 0) == 0 else { return false }
    guard let linked = lstatAt(directory, name), FileKind(mode: linked.st_mode) == .regular,
      linked.st_dev == expected.st_dev, linked.st_ino == expected.st_ino, linked.st_size == expected.st_size,
      linked.st_mtim.tv_sec == expected.st_mtim.tv_sec, linked.st_mtim.tv_nsec == expected.st_mtim.tv_nsec,
      linked.st_mode == expected.st_mode, linked.st_uid == expected.st_uid, linked.st_gid == expected.st_gid
    else {
      _ = unlinkat(directory.raw, name, 0)
      return false
    }
    return true
  }

  /// The current revision's directory at `directories` below `source`, opened one by one
  /// without following a symlink; kept for the next file, which in path order is most often
  /// in the same directory.
  private mutating func sourceDirectory(_ directories: [String], below source: FileDescriptor) -> FileDescriptor? {
    if let last = linkSource, last.directories.count == directories.count,
      zip(last.directories, directories).allSatisfy({ $0.bytesEqual($1) })
    {
      return last.fd
    }
    var directory = source
    for segment in directories {
      guard let child = try? RootedDirectory.openChild(
        of: directory, name: segment, path: segment, create: false, mode: options.directoryMode)
      else { return nil }
      directory = child
    }
    linkSource = (directories, directory)
    return directory
  }

  private mutating func syncFiles() throws(FileError) {
    defer { unsynced.removeAll() }
    for (handle, filePath) in unsynced {
      if let error = handle.sync() {
        throw FileError(.sync, path: filePath, errno: error, message: "cannot fsync a staged file")
      }
    }
  }

  /// Leaves directories not on `directories` and creates the missing ones.
  private mutating func enter(_ directories: [String]) throws(FileError) {
    var common = 0
    while common < min(stack.count, directories.count), stack[common].name.bytesEqual(directories[common]) {
      common += 1
    }
    while stack.count > common { try leave() }
    for name in directories[common...] {
      let parent = stack.last?.fd ?? top
      let child = try RootedDirectory.openChild(
        of: parent, name: name, path: joinPath(currentPath, name), create: true,
        mode: options.directoryMode)
      stack.append((name, child))
    }
  }

  private mutating func leave() throws(FileError) {
    let directoryPath = currentPath
    guard let last = stack.popLast() else { return }
    if options.fsync && !syncsFileSystem { try syncDirectory(last.fd, path: directoryPath) }
  }

  /// Fsyncs the remaining files, every directory still open, then the top directory; or,
  /// past the threshold, syncs the file system once.
  mutating func finish() throws(FileError) {
    try syncFiles()
    while !stack.isEmpty { try leave() }
    guard options.fsync else { return }
    if syncsFileSystem {
      if let error = fileSystem.sync() { throw error }
    } else {
      try syncDirectory(top, path: path)
    }
  }
}
