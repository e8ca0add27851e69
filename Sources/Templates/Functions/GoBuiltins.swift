/// Go text/template's own functions: len, index, slice, html, js, urlquery.
enum GoBuiltins {
  static func length(_ value: TemplateValue) throws(FunctionFailure) -> TemplateValue {
    switch value {
    case .string(let s): return .int(s.utf8.count)
    case .bytes(let b): return .int(b.count)
    case .list(let l): return .int(l.count)
    case .map(let m): return .int(m.count)
    case .null: throw .call("len of nil pointer")
    default: throw .call("len of type \(value.goTypeName)")
    }
  }

  /// `index x 1 2`: `x[1][2]`; a missing map key gives nil, as Go's zero value would.
  static func index(_ item: TemplateValue, _ indexes: [TemplateValue]) throws(FunctionFailure) -> TemplateValue {
    var current = item
    for position in indexes {
      switch current {
      case .list(let items):
        let i = try indexValue(position, count: items.count)
        current = items[i]
      case .string, .bytes:
        let bytes = current.bytesValue
        let i = try indexValue(position, count: bytes.count)
        current = .int(Int(bytes[i]))
      case .map(let map):
        guard let key = position.stringValue else {
          throw .call("value has type \(position.goTypeName); should be string")
        }
        current = map[ExactString(key)] ?? .null
      case .null:
        throw .call("index of untyped nil")
      default:
        throw .call("can't index item of type \(current.goTypeName)")
      }
    }
    return current
  }

  private static func indexValue(_ value: TemplateValue, count: Int) throws(FunctionFailure) -> Int {
    guard case .int(let i) = value else {
      if case .null = value { throw .call("cannot index slice/array with nil") }
      throw .call("cannot index slice/array with type \(value.goTypeName)")
    }
    guard i >= 0, i < count else { throw .call("index out of range: \(i)") }
    return i
  }

  /// `slice x 1 2`: `x[1:2]`; strings slice by byte, and take at most two indexes.
  static func slice(_ item: TemplateValue, _ indexes: [TemplateValue]) throws(FunctionFailure) -> TemplateValue {
    guard indexes.count <= 3 else { throw .call("too many slice indexes: \(indexes.count)") }
    let count: Int
    switch item {
    case .list(let items): count = items.count
    case .string, .bytes:
      if indexes.count == 3 { throw .call("cannot 3-index slice a string") }
      count = item.bytesValue.count
    case .null: throw .call("slice of untyped nil")
    default: throw .call("can't slice item of type \(item.goTypeName)")
    }
    var bounds = [0, count, count]
    for (n, value) in indexes.enumerated() {
      guard case .int(let i) = value else {
        throw .call("cannot index slice/array with type \(value.goTypeName)")
      }
      guard i >= 0, i <= count else { throw .call("index out of range: \(i)") }
      bounds[n] = i
    }
    if indexes.count < 2 { bounds[1] = count }
    guard bounds[0] <= bounds[1] else { throw .call("invalid slice index: \(bounds[0]) > \(bounds[1])") }
    if indexes.count == 3, bounds[1] > bounds[2] {
      throw .call("invalid slice index: \(bounds[1]) > \(bounds[2])")
    }
    switch item {
    case .list(let items): return .list(Array(items[bounds[0]..<bounds[1]]))
    case .string(let s): return .bytes(Array(Array(s.utf8)[bounds[0]..<bounds[1]]))
    default: return .bytes(Array(item.bytesValue[bounds[0]..<bounds[1]]))
    }
  }

  /// Go's template.HTMLEscapeString.
  static func html(_ text: String) -> String {
    Escaping.map(text) { scalar in
      switch scalar {
      case "\"": "&#34;"
      case "'": "&#39;"
      case "&": "&amp;"
      case "<": "&lt;"
      case ">": "&gt;"
      case "\u{0}": "\u{FFFD}"
      default: nil
      }
    }
  }

  /// Go's template.JSEscapeString.
  static func js(_ text: String) -> String {
    Escaping.map(text) { scalar in
      switch scalar {
      case "\\": return "\\\\"
      case "'": return "\\'"
      case "\"": return "\\\""
      case "<", ">", "&", "=": return "\\u" + Escaping.hex(scalar.value, width: 4)
      default:
        let hidden = scalar.value < 0x20 || (scalar.value >= 0x80 && !GoQuote.isPrintable(scalar))
        return hidden ? "\\u" + Escaping.hex(scalar.value, width: 4) : nil
      }
    }
  }

  /// Go's url.QueryEscape.
  static func urlQuery(_ text: String) -> String {
    var out = ""
    for byte in text.utf8 {
      switch byte {
      case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
        UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"),
        UInt8(ascii: "."), UInt8(ascii: "~"):
        out.unicodeScalars.append(Unicode.Scalar(byte))
      case UInt8(ascii: " "):
        out += "+"
      default:
        let hex = String(byte, radix: 16, uppercase: true)
        out += "%" + (hex.count == 1 ? "0" + hex : hex)
      }
    }
    return out
  }
}

extension TemplateValue {
  /// The bytes of a string or bytes value (empty for other kinds).
  var bytesValue: [UInt8] {
    switch self {
    case .string(let s): return Array(s.utf8)
    case .bytes(let b): return b
    default: return []
    }
  }
}
