/// confd's rule for `prefix`: keys are joined to the prefix with Go's `path.Join`, on bytes.
///
/// `join("/app", "/db/url")` and `join("/app", "db/url")` are both `/app/db/url`; the result is
/// cleaned as `path.Clean` does (doubled `/` collapsed, `.` dropped, `..` removing the segment
/// before it, no trailing `/`), so `join("/app", "/")` is `/app`. Only the byte `/` separates
/// segments (a `/` followed by a combining mark is still a separator).
enum KeyJoin {
  private static let slash = UInt8(ascii: "/")
  private static let dot = UInt8(ascii: ".")

  /// The key prefix as configured, made absolute and cleaned: `path.Join("/", text)`.
  static func root(_ text: String) -> String {
    self.join("/", text)
  }

  /// Go's `path.Join(prefix, key)`.
  static func join(_ prefix: String, _ key: String) -> String {
    let parts = [Array(prefix.utf8), Array(key.utf8)].filter { !$0.isEmpty }
    guard !parts.isEmpty else { return "" }
    return String(decoding: self.clean(Array(parts.joined(separator: [slash]))), as: UTF8.self)
  }

  /// Go's `path.Clean`, on bytes.
  static func clean(_ path: [UInt8]) -> [UInt8] {
    if path.isEmpty { return [dot] }
    let rooted = path[0] == slash
    var segments: [ArraySlice<UInt8>] = []
    for segment in path.split(separator: slash, omittingEmptySubsequences: true) {
      if segment.elementsEqual([dot]) { continue }
      if segment.elementsEqual([dot, dot]) {
        if let last = segments.last, !last.elementsEqual([dot, dot]) {
          segments.removeLast()
        } else if !rooted {
          segments.append(segment)
        }
        continue
      }
      segments.append(segment)
    }
    let body = Array(segments.joined(separator: [slash]))
    if rooted { return [slash] + body }
    return body.isEmpty ? [dot] : body
  }
}
