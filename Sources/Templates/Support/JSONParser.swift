/// A recursive-descent JSON reader.
struct JSONParser {
  let bytes: [UInt8]
  var position = 0

  mutating func skipSpace() {
    while position < bytes.count,
      bytes[position] == 0x20 || bytes[position] == 0x09 || bytes[position] == 0x0A || bytes[position] == 0x0D
    {
      position += 1
    }
  }

  func describe(_ byte: UInt8) -> String {
    byte == UInt8(ascii: "'") ? "'\\''" : byte < 0x80 ? "'\(Character(Unicode.Scalar(byte)))'" : "byte \(byte)"
  }

  func unexpected(_ context: String) -> JSON.SyntaxError {
    guard position < bytes.count else { return JSON.SyntaxError(message: "unexpected end of JSON input") }
    return JSON.SyntaxError(message: "invalid character \(describe(bytes[position])) \(context)")
  }

  mutating func parseValue(depth: Int) throws(JSON.SyntaxError) -> TemplateValue {
    guard depth < 500 else { throw JSON.SyntaxError(message: "exceeded max depth") }
    skipSpace()
    guard position < bytes.count else { throw unexpected("looking for beginning of value") }
    switch bytes[position] {
    case UInt8(ascii: "{"): return try parseObject(depth: depth)
    case UInt8(ascii: "["): return try parseArray(depth: depth)
    case UInt8(ascii: "\""): return .string(try parseString())
    case UInt8(ascii: "t"): try literal("true"); return .bool(true)
    case UInt8(ascii: "f"): try literal("false"); return .bool(false)
    case UInt8(ascii: "n"): try literal("null"); return .null
    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .double(try parseNumber())
    default: throw unexpected("looking for beginning of value")
    }
  }

  private mutating func literal(_ word: String) throws(JSON.SyntaxError) {
    for expected in word.utf8 {
      guard position < bytes.count, bytes[position] == expected else {
        throw unexpected("in literal \(word) (expecting '\(Character(Unicode.Scalar(expected)))')")
      }
      position += 1
    }
  }

  private mutating func parseObject(depth: Int) throws(JSON.SyntaxError) -> TemplateValue {
    position += 1
    var map: [ExactString: TemplateValue] = [:]
    skipSpace()
    if position < bytes.count, bytes[position] == UInt8(ascii: "}") {
      position += 1
      return .map(map)
    }
    while true {
      skipSpace()
      guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
        throw unexpected("looking for beginning of object key string")
      }
      let key = try parseString()
      skipSpace()
      guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else {
        throw unexpected("after object key")
      }
      position += 1
      map[ExactString(key)] = try parseValue(depth: depth + 1)
      skipSpace()
      guard position < bytes.count else { throw unexpected("") }
      if bytes[position] == UInt8(ascii: ",") {
        position += 1
        continue
      }
      guard bytes[position] == UInt8(ascii: "}") else { throw unexpected("after object key:value pair") }
      position += 1
      return .map(map)
    }
  }

  private mutating func parseArray(depth: Int) throws(JSON.SyntaxError) -> TemplateValue {
    position += 1
    var items: [TemplateValue] = []
    skipSpace()
    if position < bytes.count, bytes[position] == UInt8(ascii: "]") {
      position += 1
      return .list(items)
    }
    while true {
      items.append(try parseValue(depth: depth + 1))
      skipSpace()
      guard position < bytes.count else { throw unexpected("") }
      if bytes[position] == UInt8(ascii: ",") {
        position += 1
        continue
      }
      guard bytes[position] == UInt8(ascii: "]") else { throw unexpected("after array element") }
      position += 1
      return .list(items)
    }
  }

  private mutating func parseNumber() throws(JSON.SyntaxError) -> Double {
    let start = position
    if bytes[position] == UInt8(ascii: "-") { position += 1 }
    guard position < bytes.count, isDigit(bytes[position]) else { throw unexpected("in numeric literal") }
    if bytes[position] == UInt8(ascii: "0") {
      position += 1
    } else {
      while position < bytes.count, isDigit(bytes[position]) { position += 1 }
    }
    if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
      position += 1
      guard position < bytes.count, isDigit(bytes[position]) else { throw unexpected("after decimal point in numeric literal") }
      while position < bytes.count, isDigit(bytes[position]) { position += 1 }
    }
    if position < bytes.count, bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E") {
      position += 1
      if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") {
        position += 1
      }
      guard position < bytes.count, isDigit(bytes[position]) else { throw unexpected("in exponent of numeric literal") }
      while position < bytes.count, isDigit(bytes[position]) { position += 1 }
    }
    let text = String(decoding: bytes[start..<position], as: UTF8.self)
    return Double(text) ?? .infinity
  }

  private mutating func parseString() throws(JSON.SyntaxError) -> String {
    position += 1
    var out: [UInt8] = []
    while position < bytes.count {
      let byte = bytes[position]
      switch byte {
      case UInt8(ascii: "\""):
        position += 1
        return String(decoding: out, as: UTF8.self)
      case UInt8(ascii: "\\"):
        position += 1
        try parseEscape(into: &out)
      case 0..<0x20:
        throw unexpected("in string literal")
      default:
        out.append(byte)
        position += 1
      }
    }
    throw JSON.SyntaxError(message: "unexpected end of JSON input")
  }

  private mutating func parseEscape(into out: inout [UInt8]) throws(JSON.SyntaxError) {
    guard position < bytes.count else { throw JSON.SyntaxError(message: "unexpected end of JSON input") }
    let e = bytes[position]
    position += 1
    switch e {
    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
    case UInt8(ascii: "b"): out.append(8)
    case UInt8(ascii: "f"): out.append(12)
    case UInt8(ascii: "n"): out.append(10)
    case UInt8(ascii: "r"): out.append(13)
    case UInt8(ascii: "t"): out.append(9)
    case UInt8(ascii: "u"):
      var value = try hex4()
      if (0xD800..<0xDC00).contains(value), position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"),
        bytes[position + 1] == UInt8(ascii: "u")
      {
        let saved = position
        position += 2
        let low = try hex4()
        if (0xDC00..<0xE000).contains(low) {
          value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00)
        } else {
          position = saved
        }
      }
      let scalar = Unicode.Scalar(value) ?? "\u{FFFD}"
      out.append(contentsOf: String(Character(scalar)).utf8)
    default:
      position -= 1
      throw unexpected("in string escape code")
    }
  }

  private mutating func hex4() throws(JSON.SyntaxError) -> UInt32 {
    var value: UInt32 = 0
    for _ in 0..<4 {
      guard position < bytes.count, let digit = GoLiteral.hexValue(bytes[position]) else {
        throw unexpected("in \\u hexadecimal character escape")
      }
      value = value * 16 + UInt32(digit)
      position += 1
    }
    return value
  }
}
