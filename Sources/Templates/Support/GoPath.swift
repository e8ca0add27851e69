/// Go's `path` package for slash-separated keys: Clean, Base, Dir.
///
/// Everything works on UTF-8 bytes, as Go does: Swift's `Character` view would merge a `/`
/// with a following combining mark into one grapheme, and split keys elsewhere than etcd's
/// bytes say.
enum GoPath {
  private static let slash = UInt8(ascii: "/")
  private static let dot = UInt8(ascii: ".")

  /// Go's path.Clean: the shortest equivalent path (`.`, `..` and repeated `/` resolved).
  static func clean(_ path: String) -> String {
    String(decoding: clean(Array(path.utf8)), as: UTF8.self)
  }

  static func clean(_ path: [UInt8]) -> [UInt8] {
    if path.isEmpty { return [dot] }
    let rooted = path[0] == slash
    var parts: [ArraySlice<UInt8>] = []
    for part in path.split(separator: slash, omittingEmptySubsequences: true) {
      if part.count == 1, part.first == dot { continue }
      if part.count == 2, part.allSatisfy({ $0 == dot }) {
        if let last = parts.last, !(last.count == 2 && last.allSatisfy({ $0 == dot })) {
          parts.removeLast()
        } else if !rooted {
          parts.append(part)
        }
        continue
      }
      parts.append(part)
    }
    var out: [UInt8] = rooted ? [slash] : []
    for (i, part) in parts.enumerated() {
      if i > 0 { out.append(slash) }
      out.append(contentsOf: part)
    }
    return out.isEmpty ? [dot] : out
  }

  /// Go's path.Base: the last element, trailing slashes removed; `.` for "", `/` for "/".
  static func base(_ path: String) -> String {
    let bytes = Array(path.utf8)
    if bytes.isEmpty { return "." }
    var end = bytes.count
    while end > 0, bytes[end - 1] == slash { end -= 1 }
    if end == 0 { return "/" }
    var start = end
    while start > 0, bytes[start - 1] != slash { start -= 1 }
    return String(decoding: bytes[start..<end], as: UTF8.self)
  }

  /// Go's path.Dir: everything before the last element, cleaned.
  static func dir(_ path: String) -> String {
    let bytes = Array(path.utf8)
    guard let last = bytes.lastIndex(of: slash) else { return "." }
    return String(decoding: clean(Array(bytes[...last])), as: UTF8.self)
  }
}
