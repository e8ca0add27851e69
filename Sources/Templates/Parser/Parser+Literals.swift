/// String, character and number literals, decoded as Go decodes them.
extension Parser {
  /// The value of a `"quoted"` or `` `raw` `` string token.
  func unquote(_ token: Token) throws(TemplateError) -> String {
    let body = Array(source.bytes[(token.start + 1)..<(token.end - 1)])
    if token.kind == .rawString {
      return String(decoding: body.filter { $0 != UInt8(ascii: "\r") }, as: UTF8.self)
    }
    guard let bytes = GoLiteral.unescape(body, quote: UInt8(ascii: "\"")) else {
      throw fail("invalid syntax in string \(text(token))", at: token.start)
    }
    return String(decoding: bytes, as: UTF8.self)
  }

  /// The value of a number or character token: an int, or a float when the text has a
  /// fraction or exponent (Go's rule for untyped constants).
  func number(_ token: Token) throws(TemplateError) -> TemplateValue {
    let literal = text(token)
    if token.kind == .char {
      let body = Array(source.bytes[(token.start + 1)..<(token.end - 1)])
      guard let bytes = GoLiteral.unescape(body, quote: UInt8(ascii: "'")),
        let scalar = String(decoding: bytes, as: UTF8.self).unicodeScalars.first,
        String(decoding: bytes, as: UTF8.self).unicodeScalars.count == 1
      else {
        throw fail("malformed character constant: \(literal)", at: token.start)
      }
      return .int(Int(scalar.value))
    }
    if literal.hasSuffix("i") {
      throw fail("complex numbers are not supported: \(literal)", at: token.start)
    }
    if let value = GoLiteral.parseInt(literal) { return .int(value) }
    let isHex = literal.lowercased().hasPrefix("0x") || literal.lowercased().hasPrefix("-0x")
      || literal.lowercased().hasPrefix("+0x")
    let looksFloat = literal.contains { ".eEpP".contains($0) } && !(isHex && !literal.contains { "pP".contains($0) })
    if looksFloat, let value = GoLiteral.parseFloat(literal) { return .double(value) }
    if GoLiteral.parseFloat(literal) != nil {
      throw fail("integer overflow: \"\(literal)\"", at: token.start)
    }
    throw fail("illegal number syntax: \"\(literal)\"", at: token.start)
  }
}

/// Decoders for Go's literal syntax.
enum GoLiteral {
  /// Decodes the escapes of a Go string or rune literal body; `nil` if malformed.
  static func unescape(_ body: [UInt8], quote: UInt8) -> [UInt8]? {
    var out: [UInt8] = []
    out.reserveCapacity(body.count)
    var i = 0
    func hex(_ count: Int) -> UInt32? {
      guard i + count <= body.count else { return nil }
      var value: UInt32 = 0
      for _ in 0..<count {
        guard let digit = hexValue(body[i]) else { return nil }
        value = value * 16 + UInt32(digit)
        i += 1
      }
      return value
    }
    while i < body.count {
      let c = body[i]
      i += 1
      if c == quote { return nil }
      guard c == UInt8(ascii: "\\") else {
        out.append(c)
        continue
      }
      guard i < body.count else { return nil }
      let e = body[i]
      i += 1
      switch e {
      case UInt8(ascii: "a"): out.append(7)
      case UInt8(ascii: "b"): out.append(8)
      case UInt8(ascii: "f"): out.append(12)
      case UInt8(ascii: "n"): out.append(10)
      case UInt8(ascii: "r"): out.append(13)
      case UInt8(ascii: "t"): out.append(9)
      case UInt8(ascii: "v"): out.append(11)
      case UInt8(ascii: "\\"): out.append(e)
      case UInt8(ascii: "'"), UInt8(ascii: "\""):
        guard e == quote else { return nil }
        out.append(e)
      case UInt8(ascii: "x"):
        guard let v = hex(2) else { return nil }
        out.append(UInt8(v))
      case UInt8(ascii: "u"), UInt8(ascii: "U"):
        guard let v = hex(e == UInt8(ascii: "u") ? 4 : 8), let scalar = Unicode.Scalar(v) else { return nil }
        out.append(contentsOf: String(Character(scalar)).utf8)
      case UInt8(ascii: "0")...UInt8(ascii: "7"):
        guard i + 2 <= body.count else { return nil }
        var v = UInt32(e - UInt8(ascii: "0"))
        for _ in 0..<2 {
          let d = body[i]
          guard d >= UInt8(ascii: "0"), d <= UInt8(ascii: "7") else { return nil }
          v = v * 8 + UInt32(d - UInt8(ascii: "0"))
          i += 1
        }
        guard v <= 255 else { return nil }
        out.append(UInt8(v))
      default:
        return nil
      }
    }
    return out
  }

  static func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
    default: return nil
    }
  }

  /// Go's `strconv.ParseInt(s, 0, 64)`: sign, `0x`/`0o`/`0b`/leading-`0` prefixes, `_`.
  static func parseInt(_ text: String) -> Int? {
    var s = Substring(text)
    var negative = false
    if let first = s.first, first == "+" || first == "-" {
      negative = first == "-"
      s = s.dropFirst()
    }
    var radix = 10
    let lower = s.lowercased()
    if lower.hasPrefix("0x") {
      radix = 16
      s = s.dropFirst(2)
    } else if lower.hasPrefix("0o") {
      radix = 8
      s = s.dropFirst(2)
    } else if lower.hasPrefix("0b") {
      radix = 2
      s = s.dropFirst(2)
    } else if s.count > 1, s.first == "0" {
      radix = 8
      s = s.dropFirst()
    }
    let digits = s.filter { $0 != "_" }
    guard !digits.isEmpty, let magnitude = UInt64(digits, radix: radix) else { return nil }
    if negative {
      guard magnitude <= UInt64(Int64.max) + 1 else { return nil }
      return magnitude == UInt64(Int64.max) + 1 ? Int.min : -Int(magnitude)
    }
    guard magnitude <= UInt64(Int.max) else { return nil }
    return Int(magnitude)
  }

  /// Go's `strconv.ParseFloat(s, 64)` for decimal and hex floats, with `_` separators.
  static func parseFloat(_ text: String) -> Double? {
    let cleaned = text.filter { $0 != "_" }
    guard !cleaned.isEmpty else { return nil }
    return Double(cleaned)
  }
}
