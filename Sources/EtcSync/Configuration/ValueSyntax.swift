/// The small value syntaxes of the configuration: file modes, endpoints, listen addresses,
/// owners and names. Each returns a reason when the text does not fit, and the caller adds
/// the field and position.
enum ValueSyntax {
  /// `"0644"`, `"644"`, `"0o644"` → 0o644. Values above 0o7777 are refused.
  static func fileMode(_ text: String) -> UInt16? {
    var digits = Substring(text)
    if digits.hasPrefix("0o") || digits.hasPrefix("0O") { digits = digits.dropFirst(2) }
    guard !digits.isEmpty, digits.count <= 5, digits.allSatisfy({ ("0"..."7").contains($0) }),
      let value = UInt16(digits, radix: 8), value <= 0o7777
    else { return nil }
    return value
  }

  /// A mode as operators write it: `0644`.
  static func formatMode(_ mode: UInt16) -> String {
    let octal = String(mode, radix: 8)
    return String(repeating: "0", count: max(0, 4 - octal.count)) + octal
  }

  /// Checks an etcd client URL the way the client reads it: `http://host:port`,
  /// `https://host:port`, `host:port`, `host` (port 2379) or `[v6]:port`. Returns whether it
  /// asks for TLS, or why it is not an endpoint.
  static func endpoint(_ text: String) -> Result<Bool, ValueSyntaxError> {
    var rest = Substring(text)
    var secure = false
    if rest.hasPrefix("https://") {
      secure = true
      rest = rest.dropFirst(8)
    } else if rest.hasPrefix("http://") {
      rest = rest.dropFirst(7)
    } else if rest.contains("://") {
      return .failure(ValueSyntaxError("the scheme must be http:// or https://"))
    }
    while rest.hasSuffix("/") { rest = rest.dropLast() }
    if rest.contains("/") {
      return .failure(ValueSyntaxError("an endpoint has no path; write scheme://host:port"))
    }
    switch self.hostAndPort(rest, defaultPort: 2379, allowPortZero: false) {
    case .success(let (host, _)):
      if host.isEmpty { return .failure(ValueSyntaxError("the host is empty")) }
      return .success(secure)
    case .failure(let error):
      return .failure(error)
    }
  }

  /// `host:port`, `[v6]:port` or `:port` (every interface); port 0 picks a free port.
  static func listenAddress(_ text: String) -> Result<(host: String, port: Int), ValueSyntaxError> {
    guard text.contains(":") else {
      return .failure(ValueSyntaxError("a port is missing; write host:port such as 127.0.0.1:9464"))
    }
    return self.hostAndPort(Substring(text), defaultPort: nil, allowPortZero: true)
  }

  private static func hostAndPort(
    _ text: Substring, defaultPort: Int?, allowPortZero: Bool
  ) -> Result<(host: String, port: Int), ValueSyntaxError> {
    var host = text
    var portText: Substring?
    if text.hasPrefix("[") {
      guard let close = text.firstIndex(of: "]") else {
        return .failure(ValueSyntaxError("unclosed '[' in an IPv6 address"))
      }
      host = text[text.index(after: text.startIndex)..<close]
      let after = text[text.index(after: close)...]
      if after.hasPrefix(":") {
        portText = after.dropFirst()
      } else if !after.isEmpty {
        return .failure(ValueSyntaxError("unexpected text after ']'"))
      }
    } else if let colon = text.lastIndex(of: ":") {
      host = text[..<colon]
      if host.contains(":") {
        return .failure(ValueSyntaxError("write an IPv6 address in brackets, such as [::1]:2379"))
      }
      portText = text[text.index(after: colon)...]
    }
    if host.contains(where: { $0.isWhitespace }) {
      return .failure(ValueSyntaxError("the host contains a space"))
    }
    guard let portText else {
      guard let defaultPort else { return .failure(ValueSyntaxError("a port is missing")) }
      return .success((String(host), defaultPort))
    }
    let lowest = allowPortZero ? 0 : 1
    guard let port = Int(portText), (lowest...65535).contains(port) else {
      return .failure(
        ValueSyntaxError("\"\(portText)\" is not a port number (\(lowest)-65535)"))
    }
    return .success((String(host), port))
  }

  /// A user or group: a numeric id (below 4294967295), or a name that does not start with
  /// `-` and has no spaces, `:` or `/`.
  static func isPrincipal(_ text: String) -> Bool {
    if text.isEmpty { return false }
    if text.allSatisfy({ $0.isASCII && $0.isNumber }) {
      guard let id = UInt32(text), id != UInt32.max else { return false }
      return true
    }
    return !text.hasPrefix("-") && !text.contains(where: { $0.isWhitespace || $0 == ":" || $0 == "/" })
  }

  /// Mapping names appear in metrics labels, log lines, the state file and presence values:
  /// letters, digits, `-`, `_` and `.`, at most 128 characters.
  static func isMappingName(_ text: String) -> Bool {
    let allowed = text.allSatisfy { c in
      c.isASCII && (c.isLetter || c.isNumber || c == "-" || c == "_" || c == ".")
    }
    return !text.isEmpty && text.count <= 128 && allowed && text != "." && text != ".."
  }

  /// Splits an absolute path into segments, dropping empty ones (`//`, a trailing `/`).
  /// Returns nil when the path is relative or has a `.` or `..` segment.
  static func absoluteSegments(_ path: String) -> [Substring]? {
    guard path.hasPrefix("/") else { return nil }
    let segments = path.split(separator: "/", omittingEmptySubsequences: true)
    if segments.contains(where: { $0 == "." || $0 == ".." }) { return nil }
    return segments
  }

  /// An absolute path with `.` and `..` segments resolved as text (no symlinks followed);
  /// nil when the path is relative or `..` climbs above the root.
  static func lexicallyNormalized(_ path: String) -> String? {
    guard path.hasPrefix("/") else { return nil }
    var segments: [Substring] = []
    for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
      if segment == "." { continue }
      if segment == ".." {
        guard segments.popLast() != nil else { return nil }
        continue
      }
      segments.append(segment)
    }
    return "/" + segments.joined(separator: "/")
  }

  /// Removes a trailing `/` and repeated slashes from an absolute path.
  static func normalizedAbsolute(_ path: String) -> String? {
    guard let segments = self.absoluteSegments(path) else { return nil }
    return "/" + segments.joined(separator: "/")
  }
}

/// Why a value does not fit its syntax.
struct ValueSyntaxError: Error, Equatable {
  var message: String
  init(_ message: String) { self.message = message }
}
