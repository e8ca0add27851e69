#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Crypto

extension AtomicWriter {
  /// What ``hash(_:sizeLimit:)`` found at a path.
  public enum HashedRead: Sendable, Equatable {
    /// No file (nor a missing parent directory) is there.
    case absent
    /// The regular file's SHA-256.
    case hash(ContentHash)
    /// A regular file larger than the size limit: not read.
    case tooLarge
    /// Something is there that cannot be read as a regular file.
    case unreadable
  }

  /// The SHA-256 of the regular file at `relativePath`, read 64 KiB at a time (never following
  /// a symlink), so that a huge file put there costs no memory; a file over `sizeLimit` bytes
  /// is not read at all.
  public func hash(_ relativePath: String, sizeLimit: Int64) -> HashedRead {
    self.hashAndStat(relativePath, sizeLimit: sizeLimit).read
  }

  /// ``hash(_:sizeLimit:)``, with the `lstat` of the regular file it hashed (the one its
  /// descriptor was checked against; nil when none was read): the drift checks compare its
  /// mode and owner without opening the path again.
  func hashAndStat(_ relativePath: String, sizeLimit: Int64) -> (read: HashedRead, info: stat?) {
    for _ in 0..<3 {
      let parent: (RootedDirectory, String)?
      do { parent = try openExistingParent(of: relativePath) } catch { return (.unreadable, nil) }
      guard let (directory, name) = parent else { return (.absent, nil) }
      guard let info = lstatAt(directory.directory, name) else {
        return (currentErrno() == ENOENT ? .absent : .unreadable, nil)
      }
      guard FileKind(mode: info.st_mode) == .regular else { return (.unreadable, nil) }
      if Int64(info.st_size) > sizeLimit { return (.tooLarge, nil) }
      if let read = hashRegularFile(name, in: directory.directory, info: info, sizeLimit: sizeLimit) { return (read, info) }
      // Replaced between lstat and open: look again.
    }
    return (.unreadable, nil)
  }
}

/// The SHA-256 of the regular file `name` in `directory`, which `info` (its `lstat`) describes,
/// read 64 KiB at a time through a descriptor that is checked to be that inode; nil when it was
/// replaced between the `lstat` and the open (look again).
func hashRegularFile(_ name: String, in directory: FileDescriptor, info: stat, sizeLimit: Int64) -> AtomicWriter.HashedRead? {
  switch openRegularFile(name, in: directory, info: info) {
  case .replaced: return nil
  case .failed: return .unreadable
  case .opened(let file, _):
    var hasher = SHA256()
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    var total: Int64 = 0
    while true {
      let count = buffer.withUnsafeMutableBytes { raw in
        retryingEINTR { Glibc.read(file.raw, raw.baseAddress, raw.count) }
      }
      if count < 0 { return .unreadable }
      if count == 0 { break }
      total += Int64(count)
      if total > sizeLimit { return .tooLarge }  // grew while read
      buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[..<count])) }
    }
    return .hash(ContentHash(digest: Array(hasher.finalize())))
  }
}
