#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One entry of a directory, with its raw name (names on disk need not be UTF-8).
struct DirectoryEntry {
  /// The name, NUL-terminated, ready to pass to `*at` calls.
  let cName: [CChar]
  /// The entry's type, from `d_type` or, when the file system does not say, `fstatat`.
  let kind: FileKind

  /// The name's bytes, without the terminating NUL.
  var bytes: [UInt8] { cName.dropLast().map { UInt8(bitPattern: $0) } }
  /// The name as a string, or nil when it is not valid UTF-8.
  var name: String? { String(validating: bytes, as: UTF8.self) }
}

/// Lists `directory` (without "." and ".."), never following symlinks.
func listDirectory(_ directory: FileDescriptor, path: String) throws(FileError) -> [DirectoryEntry] {
  let copy = dup(directory.raw)
  guard copy >= 0, let stream = fdopendir(copy) else {
    if copy >= 0 { _ = close(copy) }
    throw .system(.read, path, "cannot list the directory")
  }
  defer { closedir(stream) }
  rewinddir(stream)
  var entries: [DirectoryEntry] = []
  while let entry = readdir(stream) {
    var raw = entry.pointee.d_name
    let cName = withUnsafeBytes(of: &raw) { buffer in
      Array(buffer.prefix { $0 != 0 }.map { CChar(bitPattern: $0) }) + [0]
    }
    if cName == [46, 0] || cName == [46, 46, 0] { continue }
    let kind = entryKind(Int32(entry.pointee.d_type), cName: cName, in: directory)
    entries.append(DirectoryEntry(cName: cName, kind: kind))
  }
  return entries
}

private func entryKind(_ type: Int32, cName: [CChar], in directory: FileDescriptor) -> FileKind {
  switch type {
  case Int32(DT_REG): return .regular
  case Int32(DT_DIR): return .directory
  case Int32(DT_LNK): return .symlink
  case Int32(DT_UNKNOWN):
    var info = stat()
    guard fstatat(directory.raw, cName, &info, AT_SYMLINK_NOFOLLOW) == 0 else { return .other }
    return FileKind(mode: info.st_mode)
  default: return .other
  }
}

/// Removes the directory `cName` in `parent` and everything below it, never following a
/// symlink (a symlink inside is removed, not its target).
func removeTree(_ cName: [CChar], in parent: FileDescriptor, path: String) throws(FileError) {
  let flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
  let fd = retryingEINTR { openat(parent.raw, cName, flags) }
  guard fd >= 0 else {
    if currentErrno() == ENOENT { return }
    throw .system(.remove, path, "cannot open the directory to remove it")
  }
  let directory = FileDescriptor(fd)
  for entry in try listDirectory(directory, path: path) {
    let childPath = joinPath(path, entry.name ?? escapeBytes(entry.bytes))
    if entry.kind == .directory {
      try removeTree(entry.cName, in: directory, path: childPath)
    } else if unlinkat(directory.raw, entry.cName, 0) != 0 && currentErrno() != ENOENT {
      throw .system(.remove, childPath, "cannot remove the file")
    }
  }
  if unlinkat(parent.raw, cName, AT_REMOVEDIR) != 0 && currentErrno() != ENOENT {
    throw .system(.remove, path, "cannot remove the directory")
  }
}

extension String {
  /// The string's UTF-8 bytes, NUL-terminated, for comparison with ``DirectoryEntry/cName``.
  var cName: [CChar] { utf8.map { CChar(bitPattern: $0) } + [0] }
}
