import Crypto

/// sha256sum, sha1sum, md5sum (hex digests of a string's bytes, through swift-crypto, which
/// the agent already links for TLS), urlParse, and sprig's names `b64enc`/`b64dec` for
/// confd's base64 functions.
enum DigestFunctions {
  static func call(_ function: Builtin, _ a: [TemplateValue]) throws(FunctionFailure) -> TemplateValue {
    switch function {
    case .sha256sum: return .string(hex(SHA256.hash(data: try bytes(a[0]))))
    case .sha1sum: return .string(hex(Insecure.SHA1.hash(data: try bytes(a[0]))))
    case .md5sum: return .string(hex(Insecure.MD5.hash(data: try bytes(a[0]))))
    case .b64enc: return try EncodingFunctions.call(.base64Encode, a)
    case .b64dec: return try EncodingFunctions.call(.base64Decode, a)
    case .urlParse: return try URLParts.parse(try string(a[0])).value
    default: preconditionFailure("not a digest function: \(function)")
    }
  }

  /// A string argument's bytes, exactly (invalid UTF-8 in a value is hashed as it is).
  private static func bytes(_ value: TemplateValue) throws(FunctionFailure) -> [UInt8] {
    if case .bytes(let b) = value { return b }
    return Array(try string(value).utf8)
  }

  private static func hex(_ digest: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for byte in digest {
      out.append(digits[Int(byte >> 4)])
      out.append(digits[Int(byte & 15)])
    }
    return String(decoding: out, as: UTF8.self)
  }
}

/// sprig's `urlParse`: Go's `url.Parse`, as a map with `scheme`, `host`, `hostname`, `path`,
/// `query`, `opaque`, `fragment` and `userinfo`. `path` and `fragment` are unescaped, `query`
/// stays raw, `userinfo` is as written.
struct URLParts {
  var scheme = "", host = "", path = "", query = "", opaque = "", fragment = "", userinfo = ""

  var value: TemplateValue {
    .map([
      "scheme": .string(scheme), "host": .string(host), "hostname": .string(hostname), "path": .string(path),
      "query": .string(query), "opaque": .string(opaque), "fragment": .string(fragment),
      "userinfo": .string(userinfo),
    ])
  }

  /// Go's `URL.Hostname`: the host without a valid port, and without IPv6 brackets.
  var hostname: String {
    var bytes = Array(host.utf8)
    if let colon = bytes.lastIndex(of: UInt8(ascii: ":")),
      bytes[(colon + 1)...].allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
    {
      bytes.removeSubrange(colon...)
    }
    if bytes.first == UInt8(ascii: "["), bytes.last == UInt8(ascii: "]") { bytes = Array(bytes.dropFirst().dropLast()) }
    return String(decoding: bytes, as: UTF8.self)
  }

  static func parse(_ text: String) throws(FunctionFailure) -> URLParts {
    var parts = URLParts()
    var rest = Array(text.utf8)
    if let hash = rest.firstIndex(of: UInt8(ascii: "#")) {
      parts.fragment = try unescape(Array(rest[(hash + 1)...]), text)
      rest.removeSubrange(hash...)
    }
    if rest.contains(where: { $0 < 0x20 || $0 == 0x7F }) {
      throw .call("unable to parse url: parse \(quoted(text)): net/url: invalid control character in URL")
    }
    if let colon = schemeEnd(rest) {
      guard colon > 0 else { throw .call("unable to parse url: parse \(quoted(text)): missing protocol scheme") }
      parts.scheme = String(decoding: rest[..<colon], as: UTF8.self).lowercased()
      rest.removeSubrange(...colon)
    }
    if let question = rest.firstIndex(of: UInt8(ascii: "?")) {
      parts.query = String(decoding: rest[(question + 1)...], as: UTF8.self)
      rest.removeSubrange(question...)
    }
    let slash = UInt8(ascii: "/")
    if rest.first != slash {
      if !parts.scheme.isEmpty {
        parts.opaque = String(decoding: rest, as: UTF8.self)
        return parts
      }
      let segment = rest.prefix { $0 != slash }
      if segment.contains(UInt8(ascii: ":")) {
        throw .call("unable to parse url: parse \(quoted(text)): first path segment in URL cannot contain colon")
      }
    }
    if rest.starts(with: [slash, slash]), !parts.scheme.isEmpty || !rest.starts(with: [slash, slash, slash]) {
      let authority = rest[2...].prefix { $0 != slash }
      rest.removeFirst(2 + authority.count)
      var hostBytes = Array(authority)
      if let at = hostBytes.lastIndex(of: UInt8(ascii: "@")) {
        parts.userinfo = String(decoding: hostBytes[..<at], as: UTF8.self)
        hostBytes.removeSubrange(...at)
      }
      parts.host = try unescape(hostBytes, text)
    }
    parts.path = try unescape(rest, text)
    return parts
  }

  /// The index of the `:` ending a scheme (`[A-Za-z][A-Za-z0-9+.-]*:`), 0 for a leading `:`
  /// (Go's "missing protocol scheme"), nil when the text has no scheme.
  private static func schemeEnd(_ bytes: [UInt8]) -> Int? {
    for (index, byte) in bytes.enumerated() {
      switch byte {
      case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"): continue
      case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."):
        if index == 0 { return nil }
      case UInt8(ascii: ":"): return index
      default: return nil
      }
    }
    return nil
  }

  /// Percent-decoding; a bad escape fails as Go's does.
  private static func unescape(_ bytes: [UInt8], _ text: String) throws(FunctionFailure) -> String {
    var out: [UInt8] = []
    var index = 0
    while index < bytes.count {
      guard bytes[index] == UInt8(ascii: "%") else {
        out.append(bytes[index])
        index += 1
        continue
      }
      guard index + 2 < bytes.count, let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2]) else {
        let escape = String(decoding: bytes[index..<min(index + 3, bytes.count)], as: UTF8.self)
        throw .call("unable to parse url: parse \(quoted(text)): invalid URL escape \(quoted(escape))")
      }
      out.append(high << 4 | low)
      index += 3
    }
    return String(decoding: out, as: UTF8.self)
  }

  private static func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    default: nil
    }
  }

  private static func quoted(_ text: String) -> String {
    String(decoding: GoQuote.quote(Array(text.utf8), asciiOnly: false), as: UTF8.self)
  }
}
