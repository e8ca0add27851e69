#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Integer and floating-point verbs, following Go's fmt.
extension GoFormatter {
  mutating func formatInteger(_ value: Int, verb: UInt8, value original: TemplateValue) {
    switch verb {
    case UInt8(ascii: "v"), UInt8(ascii: "d"): integer(value, base: 10, upper: false, verb: verb)
    case UInt8(ascii: "b"): integer(value, base: 2, upper: false, verb: verb)
    case UInt8(ascii: "o"), UInt8(ascii: "O"): integer(value, base: 8, upper: false, verb: verb)
    case UInt8(ascii: "x"): integer(value, base: 16, upper: false, verb: verb)
    case UInt8(ascii: "X"): integer(value, base: 16, upper: true, verb: verb)
    case UInt8(ascii: "c"):
      let scalar = Unicode.Scalar(UInt32(truncatingIfNeeded: value)) ?? "\u{FFFD}"
      pad(Array(String(Character(scalar)).utf8))
    case UInt8(ascii: "q"):
      let scalar = Unicode.Scalar(UInt32(truncatingIfNeeded: value)) ?? "\u{FFFD}"
      pad(GoQuote.quoteRune(scalar, asciiOnly: plus))
    case UInt8(ascii: "U"):
      var text = String(UInt64(bitPattern: Int64(value)), radix: 16, uppercase: true)
      if text.count < 4 { text = String(repeating: "0", count: 4 - text.count) + text }
      text = "U+" + text
      if sharp, let scalar = Unicode.Scalar(UInt32(truncatingIfNeeded: value)), value >= 0x20 {
        text += " '\(Character(scalar))'"
      }
      let savedZero = zero
      zero = false
      pad(Array(text.utf8))
      zero = savedZero
    default:
      badVerb(verb, original)
    }
  }

  /// Go's fmtInteger: precision as minimum digits, `0` padding as precision, sign and prefixes.
  private mutating func integer(_ value: Int, base: Int, upper: Bool, verb: UInt8) {
    let negative = value < 0
    var digits = Array(String(value.magnitude, radix: base, uppercase: upper).utf8)
    var minDigits = 0
    if let precision {
      if precision == 0 && value == 0 {
        let savedZero = zero
        zero = false
        writePadding(width ?? 0)
        zero = savedZero
        return
      }
      minDigits = precision
    } else if zero, !minus, let width {
      minDigits = width
      if negative || plus || space { minDigits -= 1 }
    }
    if digits.count < minDigits {
      // Up to 10,000,009 zeros (Go's width cap): build them as one block.
      var padded: [UInt8] = []
      padded.reserveCapacity(minDigits)
      Self.appendPadding(UInt8(ascii: "0"), count: minDigits - digits.count, to: &padded)
      padded.append(contentsOf: digits)
      digits = padded
    }
    var prefix: [UInt8] = []
    if sharp {
      switch base {
      case 2: prefix = Array("0b".utf8)
      case 8: if digits.first != UInt8(ascii: "0") { prefix = [UInt8(ascii: "0")] }
      case 16: prefix = Array((upper ? "0X" : "0x").utf8)
      default: break
      }
    }
    if verb == UInt8(ascii: "O") { prefix = Array("0o".utf8) }
    if negative {
      prefix.insert(UInt8(ascii: "-"), at: 0)
    } else if plus {
      prefix.insert(UInt8(ascii: "+"), at: 0)
    } else if space {
      prefix.insert(UInt8(ascii: " "), at: 0)
    }
    let savedZero = zero
    zero = false
    pad(prefix + digits)
    zero = savedZero
  }

  mutating func formatFloat(_ value: Double, verb: UInt8, value original: TemplateValue) {
    switch verb {
    case UInt8(ascii: "v"): float(value, verb: UInt8(ascii: "g"), defaultPrecision: -1)
    case UInt8(ascii: "g"), UInt8(ascii: "G"): float(value, verb: verb, defaultPrecision: -1)
    case UInt8(ascii: "e"), UInt8(ascii: "E"), UInt8(ascii: "f"), UInt8(ascii: "F"):
      float(value, verb: verb, defaultPrecision: 6)
    default:
      badVerb(verb, original)
    }
  }

  /// Go's fmtFloat: the number with a sign slot, then sign and padding rules.
  private mutating func float(_ value: Double, verb: UInt8, defaultPrecision: Int) {
    let prec = precision ?? defaultPrecision
    var num: [UInt8] = [value.sign == .minus ? UInt8(ascii: "-") : UInt8(ascii: "+")]
    if value.isNaN {
      num = Array("NaN".utf8)
      if plus { num.insert(UInt8(ascii: "+"), at: 0) } else if space { num.insert(UInt8(ascii: " "), at: 0) }
      let savedZero = zero
      zero = false
      pad(num)
      zero = savedZero
      return
    }
    if value.isInfinite {
      num.append(contentsOf: "Inf".utf8)
      if space, num[0] == UInt8(ascii: "+"), !plus { num[0] = UInt8(ascii: " ") }
      let savedZero = zero
      zero = false
      pad(num)
      zero = savedZero
      return
    }
    if prec < 0 {
      num.append(contentsOf: GoFloat.shortest(value.magnitude, upper: verb == UInt8(ascii: "G")))
    } else {
      num.append(contentsOf: GoFloat.fixed(value.magnitude, verb: verb, precision: prec))
    }
    if space, num[0] == UInt8(ascii: "+"), !plus { num[0] = UInt8(ascii: " ") }
    if plus || num[0] != UInt8(ascii: "+") {
      if zero, let width, width > num.count {
        out.append(num[0])
        writePadding(width - num.count)
        out.append(contentsOf: num[1...])
        return
      }
      pad(num)
      return
    }
    pad(Array(num[1...]))
  }
}

/// Float digits as Go's strconv prints them.
enum GoFloat {
  /// The shortest `%g` form (Go's `'g'` with precision -1): `%e` when the exponent is
  /// below -4 or at least 6, else plain decimal.
  static func shortest(_ magnitude: Double, upper: Bool) -> [UInt8] {
    if magnitude == 0 { return [UInt8(ascii: "0")] }
    let (digits, point) = decimalDigits(magnitude)
    let exponent = point - 1
    if exponent < -4 || exponent >= 6 {
      var out: [UInt8] = [digits[0]]
      if digits.count > 1 {
        out.append(UInt8(ascii: "."))
        out.append(contentsOf: digits[1...])
      }
      out.append(upper ? UInt8(ascii: "E") : UInt8(ascii: "e"))
      out.append(exponent < 0 ? UInt8(ascii: "-") : UInt8(ascii: "+"))
      let e = abs(exponent)
      if e < 10 { out.append(UInt8(ascii: "0")) }
      out.append(contentsOf: String(e).utf8)
      return out
    }
    return plainDecimal(digits, point)
  }

  /// The shortest JSON form (Go's encoding/json): plain decimal unless the magnitude is
  /// below 1e-6 or at least 1e21, then `1e+21`-style without a padded exponent.
  static func json(_ value: Double) -> [UInt8] {
    let magnitude = value.magnitude
    var out: [UInt8] = value.sign == .minus && magnitude != 0 ? [UInt8(ascii: "-")] : []
    if magnitude == 0 { return out + [UInt8(ascii: "0")] }
    let (digits, point) = decimalDigits(magnitude)
    if magnitude < 1e-6 || magnitude >= 1e21 {
      out.append(digits[0])
      if digits.count > 1 {
        out.append(UInt8(ascii: "."))
        out.append(contentsOf: digits[1...])
      }
      let exponent = point - 1
      out.append(contentsOf: "e\(exponent < 0 ? "-" : "+")\(abs(exponent))".utf8)
      return out
    }
    return out + plainDecimal(digits, point)
  }

  private static func plainDecimal(_ digits: [UInt8], _ point: Int) -> [UInt8] {
    var out: [UInt8] = []
    if point <= 0 {
      out.append(contentsOf: "0.".utf8)
      out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: -point))
      out.append(contentsOf: digits)
      return out
    }
    for i in 0..<point { out.append(i < digits.count ? digits[i] : UInt8(ascii: "0")) }
    if digits.count > point {
      out.append(UInt8(ascii: "."))
      out.append(contentsOf: digits[point...])
    }
    return out
  }

  /// The shortest round-trip decimal digits of a positive finite value, and the position
  /// of the decimal point (value = 0.d1d2d3... × 10^point).
  static func decimalDigits(_ magnitude: Double) -> (digits: [UInt8], point: Int) {
    let text = Array(magnitude.description.utf8)
    var mantissa = text[...]
    var exponent = 0
    if let e = text.firstIndex(where: { $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }) {
      mantissa = text[..<e]
      exponent = Int(String(decoding: text[(e + 1)...], as: UTF8.self)) ?? 0
    }
    var digits: [UInt8] = []
    var point = 0
    var seenPoint = false
    for c in mantissa {
      if c == UInt8(ascii: ".") {
        seenPoint = true
        continue
      }
      digits.append(c)
      if !seenPoint { point += 1 }
    }
    point += exponent
    while digits.first == UInt8(ascii: "0") {
      digits.removeFirst()
      point -= 1
    }
    while digits.last == UInt8(ascii: "0") { digits.removeLast() }
    return (digits, point)
  }

  /// `%e`, `%f` or `%g` with an explicit precision, via the C library (same digits as Go).
  static func fixed(_ magnitude: Double, verb: UInt8, precision: Int) -> [UInt8] {
    let conversion = verb == UInt8(ascii: "F") ? UInt8(ascii: "f") : verb
    let format = "%.*" + String(UnicodeScalar(conversion))
    let precision = Int32(min(precision, 1000))
    var buffer = [CChar](repeating: 0, count: 1500)
    let count = withVaList([precision, magnitude]) { args in
      vsnprintf(&buffer, buffer.count, format, args)
    }
    return buffer.prefix(Int(max(0, min(count, Int32(buffer.count - 1))))).map { UInt8(bitPattern: $0) }
  }
}
