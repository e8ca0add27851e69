/// Go's `path` package for slash-separated keys: Clean, Base, Dir.
enum GoPath {
  /// Go's path.Clean: the shortest equivalent path (`.`, `..` and repeated `/` resolved).
  static func clean(_ path: String) -> String {
    if path.isEmpty { return "." }
    let rooted = path.hasPrefix("/")
    var parts: [Substring] = []
    for part in path.split(separator: "/", omittingEmptySubsequences: true) {
      switch part {
      case ".":
        continue
      case "..":
        if let last = parts.last, last != ".." {
          parts.removeLast()
        } else if !rooted {
          parts.append(part)
        }
      default:
        parts.append(part)
      }
    }
    let joined = parts.joined(separator: "/")
    if rooted { return "/" + joined }
    return joined.isEmpty ? "." : joined
  }

  /// Go's path.Base: the last element, trailing slashes removed; `.` for "", `/` for "/".
  static func base(_ path: String) -> String {
    if path.isEmpty { return "." }
    var trimmed = Substring(path)
    while trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
    if trimmed.isEmpty { return "/" }
    if let slash = trimmed.lastIndex(of: "/") { return String(trimmed[trimmed.index(after: slash)...]) }
    return String(trimmed)
  }

  /// Go's path.Dir: everything before the last element, cleaned.
  static func dir(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return clean(String(path[...slash]))
  }
}
