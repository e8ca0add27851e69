#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Names of etcsync's temporary files: `.NAME.etcsync-tmp-<random>`, created beside the
/// target so that the final `renameat` stays within one directory (and one file system).
/// The start-up cleanup removes every such name; key→path rules reserve the pattern so a
/// key can never produce one.
enum TemporaryName {
  /// The marker every temporary name contains.
  static let marker = ".etcsync-tmp-"

  /// A fresh temporary name for a file called `name`. Long names are shortened (on a
  /// UTF-8 boundary) so the result stays within 255 bytes.
  static func make(for name: String) -> String {
    let suffix = marker + randomHex(bytes: 8)
    let budget = maximumSegmentBytes - 1 - suffix.utf8.count
    return "." + prefix(of: name, maxBytes: budget) + suffix
  }

  /// `count` random bytes (at most 8) as lower-case hex.
  static func randomHex(bytes count: Int) -> String {
    let digits = 2 * min(count, 8)
    let value = KernelRandom.next()
    let hex = String(value, radix: 16)
    let padded = String(repeating: "0", count: max(0, 16 - hex.count)) + hex
    return String(padded.suffix(digits))
  }

  private static func prefix(of name: String, maxBytes: Int) -> Substring {
    guard name.utf8.count > maxBytes else { return Substring(name) }
    var end = name.startIndex
    var used = 0
    for index in name.unicodeScalars.indices {
      let width = name.unicodeScalars[index].utf8.count
      if used + width > maxBytes { break }
      used += width
      end = name.unicodeScalars.index(after: index)
    }
    return name[..<end]
  }
}

/// Whether `name` (one path segment, as bytes) is an etcsync temporary file name: it starts
/// with "." and contains ".etcsync-tmp-".
func isTemporaryFileName(_ name: some Collection<UInt8>) -> Bool {
  guard name.first == UInt8(ascii: "."), name.count >= TemporaryName.marker.utf8.count else {
    return false
  }
  let marker = Array(TemporaryName.marker.utf8)
  let bytes = Array(name)
  guard bytes.count >= marker.count else { return false }
  for start in 0...(bytes.count - marker.count)
  where bytes[start] == marker[0] && bytes[start..<(start + marker.count)].elementsEqual(marker) {
    return true
  }
  return false
}

/// The kernel's randomness, read 4 KiB at a time from `/dev/urandom`: one read per 512
/// temporary names instead of a `getrandom` call for each (100,000 of a large tree's initial
/// sync). The bytes are the kernel's either way, and stay in this process. Where
/// `/dev/urandom` cannot be read (a chroot without `/dev`), each value is the standard
/// library's own `SystemRandomNumberGenerator`.
enum KernelRandom {
  /// The words read and not yet used; `unusable` once `/dev/urandom` could not be read (it is
  /// not opened again).
  private static let pool = Mutex<(words: [UInt64], next: Int, unusable: Bool)>(([], 0, false))

  /// A random 64-bit value.
  static func next() -> UInt64 {
    let value: UInt64? = pool.withLock { pool in
      if pool.unusable { return nil }
      if pool.next >= pool.words.count {
        pool.words = refill()
        pool.next = 0
        if pool.words.isEmpty {
          pool.unusable = true
          return nil
        }
      }
      defer { pool.next += 1 }
      return pool.words[pool.next]
    }
    if let value { return value }
    var generator = SystemRandomNumberGenerator()
    return generator.next()
  }

  /// 4 KiB from `/dev/urandom`, if it is the kernel's character device (a regular file in
  /// its place, in a chroot or an odd image, would give the same bytes each time).
  private static func refill() -> [UInt64] {
    let fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFCHR else { return [] }
    var words = [UInt64](repeating: 0, count: 512)
    let count = words.withUnsafeMutableBytes { raw in retryingEINTR { read(fd, raw.baseAddress, raw.count) } }
    return count == words.count * 8 ? words : []
  }
}
