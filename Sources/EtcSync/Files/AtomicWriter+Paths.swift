#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What stands at a target's name before a write.
struct TargetState {
  /// The target's `lstat` when it is a regular file (the only kind whose bytes and
  /// attributes are compared and inherited).
  var regular: stat?
  /// Whether anything (file, symlink, FIFO…) stands there; a write replaces it by rename.
  var exists: Bool
}

extension AtomicWriter {
  /// Validates `relativePath` and splits it into directory components and the file name.
  func split(_ relativePath: String) throws(FileError) -> (directories: [String], name: String) {
    if let problem = pathProblem(relativePath) {
      throw FileError(
        .invalidPath, path: joinPath(root, relativePath),
        message: "invalid relative path (\(KeyPathError(problem, key: Array(relativePath.utf8)).description))")
    }
    var components = pathSegments(relativePath)
    let name = components.removeLast()
    return (components, name)
  }

  /// Opens the directory that holds `relativePath`, creating it when asked (each new
  /// directory's parent is fsynced with ``Options/fsync``). Only that directory's descriptor
  /// stays open, unless `keepChain` keeps every level's.
  func openParent(of relativePath: String, create: Bool, keepChain: Bool = false) throws(FileError)
    -> (RootedDirectory, String)
  {
    let (directories, name) = try split(relativePath)
    var parent = try RootedDirectory(
      root: root, create: create, mode: options.directoryMode, keepChain: keepChain, syncNew: options.fsync,
      expected: options.rootIdentity)
    try parent.descend(into: directories, create: create, mode: options.directoryMode)
    return (parent, name)
  }

  /// Like ``openParent(of:create:keepChain:)`` without creating; nil when a directory is
  /// missing (a root that is not ``Options/rootIdentity`` is an error, never "missing").
  func openExistingParent(of relativePath: String, keepChain: Bool = false) throws(FileError) -> (RootedDirectory, String)? {
    do {
      return try openParent(of: relativePath, create: false, keepChain: keepChain)
    } catch where error.code == .openDirectory && error.errno == ENOENT {
      return nil
    }
  }

  /// What stands at `name`; a directory there is an error (a file cannot replace it).
  func inspectTarget(_ name: String, in parent: RootedDirectory) throws(FileError) -> TargetState {
    guard let info = lstatAt(parent.directory, name) else {
      if currentErrno() == ENOENT { return TargetState(regular: nil, exists: false) }
      throw .system(.read, joinPath(parent.path, name), "cannot inspect the target")
    }
    switch FileKind(mode: info.st_mode) {
    case .regular: return TargetState(regular: info, exists: true)
    case .directory:
      throw FileError(
        .isADirectory, path: joinPath(parent.path, name), errno: EISDIR,
        message: "cannot replace a directory with a file")
    case .symlink, .other: return TargetState(regular: nil, exists: true)
    }
  }

  /// Removes the file at `relativePath` (a key was deleted), fsyncs its directory, and with
  /// ``Options/removeEmptyDirectories`` removes the directories this left empty, up to (not
  /// including) the root: any empty directory on the way, whoever created it. With `expected`,
  /// a file that does not hold it is left as it is (``DeleteOutcome/keptEdit``).
  @discardableResult
  public func delete(relativePath: String, expected: ExpectedFile? = nil) throws(FileError) -> DeleteOutcome {
    guard let (parent, name) = try openExistingParent(of: relativePath, keepChain: options.removeEmptyDirectories)
    else { return .absent }
    if let expected {
      let target = try inspectTarget(name, in: parent)
      guard target.exists else { return .absent }
      guard holds(expected, name: name, in: parent.directory, target: target) else { return .keptEdit }
    }
    if unlinkat(parent.directory.raw, name, 0) != 0 {
      let error = currentErrno()
      if error == ENOENT { return .absent }
      throw FileError(
        error == EISDIR ? .isADirectory : .remove, path: joinPath(parent.path, name),
        errno: error, message: "cannot remove the file")
    }
    if options.fsync { try syncDirectory(parent.directory, path: parent.path) }
    if options.removeEmptyDirectories { try removeEmptyDirectories(parent) }
    return .deleted
  }

  /// Removes the innermost directories of `chain` while they are empty.
  private func removeEmptyDirectories(_ chain: RootedDirectory) throws(FileError) {
    var level = chain.components.count
    while level > 0 {
      let parent = chain.descriptors[level - 1]
      if unlinkat(parent.raw, chain.components[level - 1], AT_REMOVEDIR) != 0 { return }
      let parentPath = joinPath([root] + chain.components[0..<(level - 1)])
      if options.fsync { try syncDirectory(parent, path: parentPath) }
      level -= 1
    }
  }
}

/// Whether the regular file `name` (whose `lstat` is `info`) holds exactly `bytes`.
func hasContent(_ bytes: [UInt8], name: String, in directory: FileDescriptor, info: stat) -> Bool {
  guard Int(info.st_size) == bytes.count, case .opened(let file, _) = openRegularFile(name, in: directory, info: info)
  else { return false }
  // Compared 64 KiB at a time, so that checking a 12 MB file does not hold a second copy.
  var chunk = [UInt8](repeating: 0, count: min(64 * 1024, bytes.count + 1))
  var offset = 0
  while true {
    let count = chunk.withUnsafeMutableBytes { buffer in
      retryingEINTR { read(file.raw, buffer.baseAddress, buffer.count) }
    }
    if count < 0 { return false }
    if count == 0 { return offset == bytes.count }
    guard offset + count <= bytes.count else { return false }
    let same = chunk.withUnsafeBytes { read in
      bytes.withUnsafeBytes { wanted in
        memcmp(read.baseAddress!, wanted.baseAddress! + offset, count) == 0
      }
    }
    guard same else { return false }
    offset += count
  }
}

/// Reads the regular file `name`, making sure it is still the inode `info` describes (never a
/// symlink, FIFO or device swapped in meanwhile); nil when it cannot be read.
func readRegularFile(_ name: String, in directory: FileDescriptor, info: stat) -> [UInt8]? {
  if case .bytes(let bytes) = readRegularFileChecked(name, in: directory, info: info) { return bytes }
  return nil
}

/// ``readRegularFile(_:in:info:)`` that says why it read nothing: the file was replaced (or
/// removed) since `info` was taken, or reading it failed with an errno.
enum RegularFileRead {
  case bytes([UInt8])
  case replaced
  case failed(Int32)
}

/// The regular file `name` opened for reading, if it is still the inode `info` describes.
enum RegularFileOpen {
  case opened(FileDescriptor, stat)
  case replaced
  case failed(Int32)
}

func openRegularFile(_ name: String, in directory: FileDescriptor, info: stat) -> RegularFileOpen {
  let fd = retryingEINTR {
    openat(directory.raw, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
  }
  guard fd >= 0 else {
    let code = currentErrno()
    return code == ENOENT || code == ELOOP ? .replaced : .failed(code)
  }
  let file = FileDescriptor(fd)
  guard let now = file.status(), FileKind(mode: now.st_mode) == .regular,
    now.st_ino == info.st_ino, now.st_dev == info.st_dev
  else { return .replaced }
  return .opened(file, now)
}

func readRegularFileChecked(_ name: String, in directory: FileDescriptor, info: stat) -> RegularFileRead {
  let (file, now): (FileDescriptor, stat)
  switch openRegularFile(name, in: directory, info: info) {
  case .opened(let opened, let status): (file, now) = (opened, status)
  case .replaced: return .replaced
  case .failed(let code): return .failed(code)
  }
  switch readAll(file, sizeHint: Int(now.st_size)) {
  case .success(let bytes): return .bytes(bytes)
  case .failure(let error): return .failed(error.value)
  }
}
