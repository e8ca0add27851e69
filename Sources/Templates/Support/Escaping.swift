/// What the escaping functions share (Go's HTML and JavaScript escapes, YAML's and JSON's
/// quoted strings): a text rewritten scalar by scalar, the backslash escapes JSON and YAML have
/// in common, and hexadecimal escapes padded to a width.
public enum Escaping {
  /// `text` with each scalar that `replacement` maps to a string replaced by that string; the
  /// others are kept as they are.
  public static func map(_ text: String, _ replacement: (Unicode.Scalar) -> String?) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars {
      if let replaced = replacement(scalar) { out += replaced } else { out.unicodeScalars.append(scalar) }
    }
    return out
  }

  /// The backslash escapes of JSON and of YAML's double-quoted style: `"`, `\`, newline,
  /// carriage return and tab; nil for any other scalar.
  public static func backslash(_ scalar: Unicode.Scalar) -> String? {
    switch scalar {
    case "\"": return "\\\""
    case "\\": return "\\\\"
    case "\n": return "\\n"
    case "\r": return "\\r"
    case "\t": return "\\t"
    default: return nil
    }
  }

  /// `value` in hexadecimal, zero-padded to at least `width` digits.
  public static func hex(_ value: UInt32, width: Int, uppercase: Bool = true) -> String {
    let digits = String(value, radix: 16, uppercase: uppercase)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
  }
}
