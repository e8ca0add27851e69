#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// An owned file descriptor, closed by ``close()`` or when the last reference goes away.
final class FileDescriptor: Sendable {
  let raw: Int32
  private let isClosed = Atomic<Bool>(false)

  init(_ raw: Int32) { self.raw = raw }

  deinit { self.close() }

  /// Closes the descriptor now (once; later calls do nothing). A staged file is closed
  /// before it is renamed: closing after the rename would report a write to watchers of the
  /// target (inotify's IN_CLOSE_WRITE arrives under the new name).
  func close() {
    guard !self.isClosed.exchange(true, ordering: .relaxed) else { return }
    _ = Glibc.close(self.raw)
  }

  /// `fstat` of this descriptor.
  func status() -> stat? {
    var info = stat()
    return fstat(raw, &info) == 0 ? info : nil
  }

  /// `fsync`, retried on `EINTR`; returns the errno on failure.
  func sync() -> Int32? {
    retryingEINTR { fsync(raw) } == 0 ? nil : currentErrno()
  }
}

/// Runs a system call again while it fails with `EINTR`.
@inline(__always)
func retryingEINTR<T: BinaryInteger>(_ call: () -> T) -> T {
  while true {
    let result = call()
    if result == -1 && currentErrno() == EINTR { continue }
    return result
  }
}

/// `fstatat` without following a final symlink; nil when it fails (errno is left set).
func lstatAt(_ directory: FileDescriptor, _ name: String) -> stat? {
  var info = stat()
  return fstatat(directory.raw, name, &info, AT_SYMLINK_NOFOLLOW) == 0 ? info : nil
}

/// The file-type bits of a `stat`.
enum FileKind: Equatable {
  case regular, directory, symlink, other

  init(mode: mode_t) {
    switch mode & S_IFMT {
    case S_IFREG: self = .regular
    case S_IFDIR: self = .directory
    case S_IFLNK: self = .symlink
    default: self = .other
    }
  }
}

/// `readlinkat`; nil when the entry is missing or not a symlink.
func readLinkAt(_ directory: FileDescriptor, _ name: String) -> String? {
  var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
  let count = readlinkat(directory.raw, name, &buffer, buffer.count - 1)
  guard count >= 0 else { return nil }
  return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Writes all of `bytes` to `fd`, handling partial writes and `EINTR`; returns the errno on
/// failure.
func writeAll(_ fd: FileDescriptor, _ bytes: [UInt8]) -> Int32? {
  bytes.withUnsafeBytes { buffer -> Int32? in
    guard let base = buffer.baseAddress else { return nil }
    var offset = 0
    while offset < buffer.count {
      let chunk = min(buffer.count - offset, 1 << 30)
      let written = retryingEINTR { write(fd.raw, base + offset, chunk) }
      if written < 0 { return currentErrno() }
      if written == 0 { return EIO }
      offset += written
    }
    return nil
  }
}

/// An errno value as an error, for `Result`.
struct Errno: Error, Equatable {
  let value: Int32
}

/// Reads `fd` from its current offset to the end. `sizeHint` (what `fstat` said) only sizes
/// the first allocation, and at most ``readAllReserveLimit``: a sparse file claiming 1 TiB
/// does not make it ask for 1 TiB up front (the array grows as bytes really arrive).
func readAll(_ fd: FileDescriptor, sizeHint: Int = 0) -> Result<[UInt8], Errno> {
  var bytes = [UInt8]()
  bytes.reserveCapacity(min(max(sizeHint, 0), readAllReserveLimit) + 1)
  var chunk = [UInt8](repeating: 0, count: 64 * 1024)
  while true {
    let count = chunk.withUnsafeMutableBytes { buffer in
      retryingEINTR { read(fd.raw, buffer.baseAddress, buffer.count) }
    }
    if count < 0 { return .failure(Errno(value: currentErrno())) }
    if count == 0 { return .success(bytes) }
    bytes.append(contentsOf: chunk[0..<count])
  }
}

/// The most ``readAll(_:sizeHint:)`` reserves from a size hint (16 MiB).
let readAllReserveLimit = 16 << 20

/// Joins path pieces with "/", ignoring empty pieces.
func joinPath(_ pieces: String...) -> String {
  joinPath(pieces)
}

/// Joins path pieces with "/", ignoring empty pieces.
func joinPath(_ pieces: [String]) -> String {
  var result = ""
  for piece in pieces where !piece.isEmpty {
    if result.isEmpty || result.hasSuffix("/") {
      result += piece
    } else {
      result += "/" + piece
    }
  }
  return result
}
