/// String verbs (`%s %q %x %X %v`) following Go's fmt.
extension GoFormatter {
  mutating func formatString(_ bytes: [UInt8], verb: UInt8, value original: TemplateValue) {
    switch verb {
    case UInt8(ascii: "v"), UInt8(ascii: "s"):
      padString(truncated(bytes))
    case UInt8(ascii: "q"):
      let text = truncated(bytes)
      if sharp, GoQuote.canBackquote(text) {
        padString([UInt8(ascii: "`")] + text + [UInt8(ascii: "`")])
      } else {
        padString(GoQuote.quote(text, asciiOnly: plus))
      }
    case UInt8(ascii: "x"), UInt8(ascii: "X"):
      hexString(bytes, upper: verb == UInt8(ascii: "X"))
    default:
      badVerb(verb, original)
    }
  }

  /// The first `precision` characters, when a precision is set.
  private func truncated(_ bytes: [UInt8]) -> [UInt8] {
    guard let precision else { return bytes }
    var characters = 0
    for (i, byte) in bytes.enumerated() where byte & 0xC0 != 0x80 {
      if characters == precision { return Array(bytes[..<i]) }
      characters += 1
    }
    return bytes
  }

  /// Go's fmtSbx: two hex digits a byte; `% x` separates bytes, `%#x` adds 0x.
  private mutating func hexString(_ bytes: [UInt8], upper: Bool) {
    let digits = Array((upper ? "0123456789ABCDEFX" : "0123456789abcdefx").utf8)
    let length = min(bytes.count, precision ?? bytes.count)
    var encodedWidth = 2 * length
    guard encodedWidth > 0 else {
      writePadding(width ?? 0)
      return
    }
    if space {
      if sharp { encodedWidth *= 2 }
      encodedWidth += length - 1
    } else if sharp {
      encodedWidth += 2
    }
    if let width, width > encodedWidth, !minus { writePadding(width - encodedWidth) }
    if sharp { out.append(contentsOf: [UInt8(ascii: "0"), digits[16]]) }
    for i in 0..<length {
      if space, i > 0 {
        out.append(UInt8(ascii: " "))
        if sharp { out.append(contentsOf: [UInt8(ascii: "0"), digits[16]]) }
      }
      out.append(digits[Int(bytes[i] >> 4)])
      out.append(digits[Int(bytes[i] & 0xF)])
    }
    if let width, width > encodedWidth, minus { writePadding(width - encodedWidth) }
  }
}

/// Go's strconv.Quote, QuoteToASCII, QuoteRune and CanBackquote.
enum GoQuote {
  static func quote(_ bytes: [UInt8], asciiOnly: Bool) -> [UInt8] {
    var out: [UInt8] = [UInt8(ascii: "\"")]
    var i = 0
    while i < bytes.count {
      let (scalar, length) = decode(bytes, at: i)
      if let scalar {
        appendEscaped(scalar, quote: UInt8(ascii: "\""), asciiOnly: asciiOnly, to: &out)
      } else {
        out.append(contentsOf: "\\x".utf8)
        out.append(contentsOf: hex(UInt32(bytes[i]), width: 2))
      }
      i += length
    }
    out.append(UInt8(ascii: "\""))
    return out
  }

  static func quoteRune(_ scalar: Unicode.Scalar, asciiOnly: Bool) -> [UInt8] {
    var out: [UInt8] = [UInt8(ascii: "'")]
    appendEscaped(scalar, quote: UInt8(ascii: "'"), asciiOnly: asciiOnly, to: &out)
    out.append(UInt8(ascii: "'"))
    return out
  }

  /// Whether the text can be written as a Go raw string: no backquote, no control
  /// characters except tab, valid UTF-8, no U+FEFF.
  static func canBackquote(_ bytes: [UInt8]) -> Bool {
    var i = 0
    while i < bytes.count {
      let (scalar, length) = decode(bytes, at: i)
      guard let scalar else { return false }
      if scalar == "`" || scalar == "\u{FEFF}" { return false }
      if scalar.value < 0x20 && scalar != "\t" { return false }
      if scalar.value == 0x7F { return false }
      i += length
    }
    return true
  }

  private static func appendEscaped(
    _ scalar: Unicode.Scalar, quote: UInt8, asciiOnly: Bool, to out: inout [UInt8]
  ) {
    let value = scalar.value
    if value == UInt32(quote) || scalar == "\\" {
      out.append(UInt8(ascii: "\\"))
      out.append(UInt8(value))
      return
    }
    if value < 0x80 {
      if value >= 0x20 && value != 0x7F {
        out.append(UInt8(value))
        return
      }
    } else if !asciiOnly && isPrintable(scalar) {
      out.append(contentsOf: String(Character(scalar)).utf8)
      return
    }
    switch scalar {
    case "\u{07}": out.append(contentsOf: "\\a".utf8)
    case "\u{08}": out.append(contentsOf: "\\b".utf8)
    case "\u{0C}": out.append(contentsOf: "\\f".utf8)
    case "\n": out.append(contentsOf: "\\n".utf8)
    case "\r": out.append(contentsOf: "\\r".utf8)
    case "\t": out.append(contentsOf: "\\t".utf8)
    case "\u{0B}": out.append(contentsOf: "\\v".utf8)
    default:
      if value < 0x20 || value == 0x7F {
        out.append(contentsOf: "\\x".utf8)
        out.append(contentsOf: hex(value, width: 2))
      } else if value < 0x10000 {
        out.append(contentsOf: "\\u".utf8)
        out.append(contentsOf: hex(value, width: 4))
      } else {
        out.append(contentsOf: "\\U".utf8)
        out.append(contentsOf: hex(value, width: 8))
      }
    }
  }

  /// Go's unicode.IsPrint for non-ASCII: letters, marks, numbers, punctuation, symbols.
  static func isPrintable(_ scalar: Unicode.Scalar) -> Bool {
    switch scalar.properties.generalCategory {
    case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator,
      .paragraphSeparator, .spaceSeparator:
      return false
    default:
      return true
    }
  }

  private static func hex(_ value: UInt32, width: Int) -> [UInt8] {
    let text = String(value, radix: 16)
    return Array((String(repeating: "0", count: max(0, width - text.count)) + text).utf8)
  }

  /// Decodes one UTF-8 scalar at `i`; `nil` with length 1 for an invalid byte.
  static func decode(_ bytes: [UInt8], at i: Int) -> (Unicode.Scalar?, Int) {
    let lead = bytes[i]
    if lead < 0x80 { return (Unicode.Scalar(lead), 1) }
    let length: Int
    var value: UInt32
    switch lead {
    case 0xC2...0xDF: length = 2; value = UInt32(lead & 0x1F)
    case 0xE0...0xEF: length = 3; value = UInt32(lead & 0x0F)
    case 0xF0...0xF4: length = 4; value = UInt32(lead & 0x07)
    default: return (nil, 1)
    }
    guard i + length <= bytes.count else { return (nil, 1) }
    for k in 1..<length {
      let byte = bytes[i + k]
      guard byte & 0xC0 == 0x80 else { return (nil, 1) }
      value = value << 6 | UInt32(byte & 0x3F)
    }
    let minimum: UInt32 = length == 2 ? 0x80 : length == 3 ? 0x800 : 0x10000
    guard value >= minimum, let scalar = Unicode.Scalar(value) else { return (nil, 1) }
    return (scalar, length)
  }
}
