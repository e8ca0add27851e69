/// JSON decoding with Go's `encoding/json` results (objects → maps, numbers → float64)
/// and encoding with `json.Marshal`'s output (sorted keys, HTML-safe escapes).
enum JSON {
  struct SyntaxError: Error {
    var message: String
  }

  /// Parses one JSON value; anything but white space after it is an error.
  static func parse(_ text: [UInt8]) throws(SyntaxError) -> TemplateValue {
    var parser = JSONParser(bytes: text)
    parser.skipSpace()
    if parser.position >= text.count { throw SyntaxError(message: "unexpected end of JSON input") }
    let value = try parser.parseValue(depth: 0)
    parser.skipSpace()
    if parser.position < text.count {
      throw SyntaxError(message: "invalid character \(parser.describe(text[parser.position])) after top-level value")
    }
    return value
  }

  /// `json.Marshal` of a value; fails for NaN and infinities.
  static func encode(_ value: TemplateValue) throws(SyntaxError) -> [UInt8] {
    var out: [UInt8] = []
    try encode(value, into: &out)
    return out
  }

  private static func encode(_ value: TemplateValue, into out: inout [UInt8]) throws(SyntaxError) {
    switch value {
    case .null: out.append(contentsOf: "null".utf8)
    case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
    case .int(let i): GoFormat.appendDecimal(i, to: &out)
    case .double(let d):
      guard d.isFinite else {
        throw SyntaxError(message: "json: unsupported value: \(GoFormat.sprint([value]))")
      }
      out.append(contentsOf: GoFloat.json(d))
    case .string(let s): appendString(Array(s.utf8), to: &out)
    case .bytes(let b): appendString(b, to: &out)
    case .time(let t): appendString(Array(t.format("2006-01-02T15:04:05.999999999Z07:00").utf8), to: &out)
    case .kvPair(let pair):
      out.append(contentsOf: "{\"Key\":".utf8)
      appendString(Array(pair.key.utf8), to: &out)
      out.append(contentsOf: ",\"Value\":".utf8)
      appendString(pair.value, to: &out)
      out.append(UInt8(ascii: "}"))
    case .list(let items):
      out.append(UInt8(ascii: "["))
      for (i, item) in items.enumerated() {
        if i > 0 { out.append(UInt8(ascii: ",")) }
        try encode(item, into: &out)
      }
      out.append(UInt8(ascii: "]"))
    case .map(let map):
      out.append(UInt8(ascii: "{"))
      for (i, key) in map.keys.sorted().enumerated() {
        if i > 0 { out.append(UInt8(ascii: ",")) }
        appendString(Array(key.utf8), to: &out)
        out.append(UInt8(ascii: ":"))
        try encode(map[key] ?? .null, into: &out)
      }
      out.append(UInt8(ascii: "}"))
    }
  }

  /// A JSON string with Go's escapes: `<`, `>`, `&`, U+2028 and U+2029 as \u escapes,
  /// invalid UTF-8 as U+FFFD.
  static func appendString(_ bytes: [UInt8], to out: inout [UInt8]) {
    let hexDigits = Array("0123456789abcdef".utf8)
    out.append(UInt8(ascii: "\""))
    var i = 0
    while i < bytes.count {
      let byte = bytes[i]
      if byte < 0x80 {
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"):
          out.append(UInt8(ascii: "\\"))
          out.append(byte)
        case UInt8(ascii: "\n"): out.append(contentsOf: "\\n".utf8)
        case UInt8(ascii: "\r"): out.append(contentsOf: "\\r".utf8)
        case UInt8(ascii: "\t"): out.append(contentsOf: "\\t".utf8)
        case 0..<0x20, UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "&"):
          out.append(contentsOf: "\\u00".utf8)
          out.append(hexDigits[Int(byte >> 4)])
          out.append(hexDigits[Int(byte & 0xF)])
        default:
          out.append(byte)
        }
        i += 1
        continue
      }
      let (scalar, length) = GoQuote.decode(bytes, at: i)
      if let scalar {
        if scalar == "\u{2028}" || scalar == "\u{2029}" {
          out.append(contentsOf: (scalar == "\u{2028}" ? "\\u2028" : "\\u2029").utf8)
        } else {
          out.append(contentsOf: bytes[i..<(i + length)])
        }
      } else {
        out.append(contentsOf: "\u{FFFD}".utf8)
      }
      i += length
    }
    out.append(UInt8(ascii: "\""))
  }
}
