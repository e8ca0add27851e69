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
    var generator = SystemRandomNumberGenerator()
    let digits = 2 * min(count, 8)
    let value: UInt64 = generator.next()
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
