#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Templates

extension TreeSwap {
  /// Fails before anything is written when a top-level name, or `..data`, is taken by a real
  /// directory (a symlink cannot atomically replace it).
  func preflight(_ rootDir: FileDescriptor, topLevel: Set<ExactString>) throws(FileError) {
    for name in topLevel.map(\.string) + [Self.dataLinkName] {
      guard let info = lstatAt(rootDir, name) else { continue }
      if FileKind(mode: info.st_mode) == .directory {
        throw FileError(
          .conflict, path: joinPath(root, name),
          message: "a directory not managed by etcsync's tree swap stands where a symlink must go")
      }
    }
  }

  /// Makes `ROOT/NAME -> ..data/NAME` exist for every top-level name, and removes such
  /// symlinks for names no longer in the tree. Entries etcsync does not own are left alone,
  /// except a regular file or foreign symlink at a top-level name, which is replaced by rename.
  func updateLinks(_ rootDir: FileDescriptor, topLevel: Set<ExactString>) throws(FileError) {
    for name in topLevel.sorted() {
      try ensureLink(name.string, in: rootDir)
    }
    for entry in try listDirectory(rootDir, path: root) where entry.kind == .symlink {
      guard let name = entry.name, !topLevel.contains(ExactString(name)), !name.utf8.starts(with: "..".utf8) else {
        continue
      }
      guard readLinkAt(rootDir, name)?.bytesEqual(Self.linkTarget(name)) == true else { continue }
      if unlinkat(rootDir.raw, name, 0) != 0 && currentErrno() != ENOENT {
        throw .system(.remove, joinPath(root, name), "cannot remove a stale top-level symlink")
      }
    }
  }

  /// The target of the top-level symlink for `name`.
  static func linkTarget(_ name: String) -> String { "\(dataLinkName)/\(name)" }

  private func ensureLink(_ name: String, in rootDir: FileDescriptor) throws(FileError) {
    let target = Self.linkTarget(name)
    let path = joinPath(root, name)
    if readLinkAt(rootDir, name)?.bytesEqual(target) == true { return }
    if symlinkat(target, rootDir.raw, name) == 0 { return }
    guard currentErrno() == EEXIST else {
      throw .system(.symlink, path, "cannot create the top-level symlink")
    }
    let temp = TemporaryName.make(for: name)
    guard symlinkat(target, rootDir.raw, temp) == 0 else {
      throw .system(.symlink, joinPath(root, temp), "cannot create the top-level symlink")
    }
    guard renameat(rootDir.raw, temp, rootDir.raw, name) == 0 else {
      let error = FileError.system(.rename, path, "cannot replace the entry with a symlink")
      _ = unlinkat(rootDir.raw, temp, 0)
      throw error
    }
  }
}
