/// A YAML writer laid out like go-yaml v2's `yaml.Marshal`, which consul-template's
/// `toYAML` uses: block mappings with sorted keys, sequences at their key's indentation,
/// plain scalars where they read back as the same string, quotes otherwise.
enum YAML {
  static func encode(_ value: TemplateValue) -> String {
    var out = ""
    switch value {
    case .map(let map) where !map.isEmpty: mapping(map, indent: 0, into: &out)
    case .list(let items) where !items.isEmpty: sequence(items, indent: 0, into: &out)
    case .kvPair(let pair): mapping(pairMap(pair), indent: 0, into: &out)
    default: out += scalar(value, indent: 0) + "\n"
    }
    return out
  }

  private static func pairMap(_ pair: KVPair) -> [ExactString: TemplateValue] {
    ["Key": .string(pair.key), "Value": .bytes(pair.value)]
  }

  private static func mapping(_ map: [ExactString: TemplateValue], indent: Int, into out: inout String) {
    let pad = String(repeating: " ", count: indent)
    for key in map.keys.sorted() {
      out += pad + scalar(.string(key.string), indent: indent) + ":"
      value(map[key] ?? .null, indent: indent, inSequence: false, into: &out)
    }
  }

  private static func sequence(_ items: [TemplateValue], indent: Int, into out: inout String) {
    let pad = String(repeating: " ", count: indent)
    for item in items {
      out += pad + "-"
      value(item, indent: indent, inSequence: true, into: &out)
    }
  }

  /// Writes what follows `key:` or `-`.
  private static func value(_ value: TemplateValue, indent: Int, inSequence: Bool, into out: inout String) {
    switch value {
    case .map(let map) where !map.isEmpty:
      nested(map, indent: indent + 2, inline: inSequence, into: &out)
    case .kvPair(let pair):
      nested(pairMap(pair), indent: indent + 2, inline: inSequence, into: &out)
    case .list(let items) where !items.isEmpty:
      if inSequence {
        var inner = ""
        sequence(items, indent: indent + 2, into: &inner)
        out += " " + inner.dropFirst(indent + 2)
      } else {
        out += "\n"
        sequence(items, indent: indent, into: &out)
      }
    default:
      out += " " + scalar(value, indent: indent + 2) + "\n"
    }
  }

  /// A mapping under a key (on the next lines) or under `-` (starting on the same line).
  private static func nested(_ map: [ExactString: TemplateValue], indent: Int, inline: Bool, into out: inout String) {
    var inner = ""
    mapping(map, indent: indent, into: &inner)
    out += inline ? " " + inner.dropFirst(indent) : "\n" + inner
  }

  static func scalar(_ value: TemplateValue, indent: Int) -> String {
    switch value {
    case .null: return "null"
    case .bool(let b): return b ? "true" : "false"
    case .int(let i): return String(i)
    case .double(let d):
      if d.isNaN { return ".nan" }
      if d.isInfinite { return d < 0 ? "-.inf" : ".inf" }
      return GoFormat.sprint([value])
    case .string(let s): return string(s, indent: indent)
    case .bytes(let b): return string(String(decoding: b, as: UTF8.self), indent: indent)
    case .time(let t): return t.format("2006-01-02T15:04:05.999999999Z07:00")
    case .map: return "{}"
    case .list: return "[]"
    case .kvPair: return "{}"
    }
  }

  private static func string(_ s: String, indent: Int) -> String {
    // Byte-wise searches: String's `contains` matches whole graphemes, and misses `: ` when
    // a combining mark follows the space.
    if StringFunctions.contains(s, "\n") && s.unicodeScalars.allSatisfy({ $0 == "\n" || isPrintable($0) }) {
      return literalBlock(s, indent: indent)
    }
    if s.isEmpty || readsAsOtherType(s) { return doubleQuoted(s) }
    if !s.unicodeScalars.allSatisfy(isPrintable) { return doubleQuoted(s) }
    if plainAllowed(s) { return s }
    return "'" + s.replacingOccurrences("'", "''") + "'"
  }

  private static func literalBlock(_ s: String, indent: Int) -> String {
    var trailing = 0
    for c in s.utf8.reversed() {
      guard c == UInt8(ascii: "\n") else { break }
      trailing += 1
    }
    let chomp = trailing == 0 ? "-" : trailing == 1 ? "" : "+"
    let pad = String(repeating: " ", count: indent)
    var body = Substring(s)
    if trailing > 0 { body = body.dropLast(1) }
    let lines = body.split(separator: "\n", omittingEmptySubsequences: false)
    return "|" + chomp + lines.map { $0.isEmpty ? "\n" : "\n" + pad + $0 }.joined()
  }

  private static func isPrintable(_ scalar: Unicode.Scalar) -> Bool {
    if scalar == "\t" { return true }
    if scalar.isASCII { return scalar.value >= 0x20 && scalar.value != 0x7F }
    return GoQuote.isPrintable(scalar) || scalar == "\u{A0}"
  }

  /// Strings a YAML 1.1 reader would take as bool, null or a number.
  private static func readsAsOtherType(_ s: String) -> Bool {
    let words: Set<String> = [
      "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
      "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~",
      ".inf", ".Inf", ".INF", "+.inf", "-.inf", ".nan", ".NaN", ".NAN",
    ]
    if words.contains(s) { return true }
    let number = s.hasPrefix("+") || s.hasPrefix("-") ? String(s.dropFirst()) : s
    if number.isEmpty { return false }
    if GoLiteral.parseInt(number.replacingOccurrences("_", "")) != nil { return true }
    let allowed = Set("0123456789._eE+-")
    return number.allSatisfy(allowed.contains) && Double(number.replacingOccurrences("_", "")) != nil
  }

  private static func plainAllowed(_ s: String) -> Bool {
    let scalars = Array(s.unicodeScalars)
    let first = scalars[0]
    if "-?:,[]{}#&*!|>'\"%@`".unicodeScalars.contains(first) {
      let indicatorNeedsSpace = first == "-" || first == "?" || first == ":"
      if !indicatorNeedsSpace || scalars.count == 1 || scalars[1] == " " { return false }
    }
    if first == " " || scalars.last == " " || scalars.last == ":" { return false }
    if StringFunctions.contains(s, ": ") || StringFunctions.contains(s, " #") || StringFunctions.contains(s, "\t") {
      return false
    }
    return true
  }

  private static func doubleQuoted(_ s: String) -> String {
    let escaped = Escaping.map(s) { scalar in
      if let escape = Escaping.backslash(scalar) { return escape }
      if isPrintable(scalar) { return nil }
      let (prefix, width) = scalar.value <= 0xFF ? ("\\x", 2) : scalar.value <= 0xFFFF ? ("\\u", 4) : ("\\U", 8)
      return prefix + Escaping.hex(scalar.value, width: width)
    }
    return "\"" + escaped + "\""
  }
}

extension String {
  /// Replaces every occurrence of `target` (no Foundation needed).
  func replacingOccurrences(_ target: String, _ replacement: String) -> String {
    StringFunctions.replace(self, target, replacement, count: -1)
  }
}
