/// A value inside a template: what pipelines produce, functions take and actions print.
///
/// It mirrors the Go values that confd templates see: strings, ints, float64s, bools,
/// slices, `map[string]interface{}`, memkv's `KVPair`, `time.Time` and nil.
public enum TemplateValue: Sendable, Hashable {
  /// Go's nil: an absent value. An action prints it as `<no value>`.
  case null
  /// A boolean.
  case bool(Bool)
  /// An integer (Go's `int`).
  case int(Int)
  /// A floating-point number (Go's `float64`; JSON numbers decode to this).
  case double(Double)
  /// A text string.
  case string(String)
  /// A value from the data source, kept as its bytes and treated as a string.
  case bytes([UInt8])
  /// A list (Go slice).
  case list([TemplateValue])
  /// A map with string keys; `range` visits it in key order.
  case map([String: TemplateValue])
  /// A key and its value, as returned by `get` and `gets`.
  case kvPair(KVPair)
  /// A point in time, as returned by `datetime`.
  case time(TemplateTime)
}

extension TemplateValue {
  /// The value as text when it is a string or bytes, else `nil`.
  public var stringValue: String? {
    switch self {
    case .string(let s): return s
    case .bytes(let b): return String(decoding: b, as: UTF8.self)
    default: return nil
    }
  }

  /// Whether Go's `if` would take this value as true: non-zero, non-empty, non-nil.
  public var isTrue: Bool {
    switch self {
    case .null: return false
    case .bool(let b): return b
    case .int(let i): return i != 0
    case .double(let d): return d != 0
    case .string(let s): return !s.isEmpty
    case .bytes(let b): return !b.isEmpty
    case .list(let l): return !l.isEmpty
    case .map(let m): return !m.isEmpty
    case .kvPair, .time: return true
    }
  }

  /// Whether the value is a string or bytes (Go's string kind).
  var isStringKind: Bool {
    switch self {
    case .string, .bytes: return true
    default: return false
    }
  }

  /// The Go type name used in error messages and `%T`.
  var goTypeName: String {
    switch self {
    case .null: return "<nil>"
    case .bool: return "bool"
    case .int: return "int"
    case .double: return "float64"
    case .string, .bytes: return "string"
    case .list(let items):
      if !items.isEmpty, items.allSatisfy(\.isStringKind) { return "[]string" }
      if !items.isEmpty, items.allSatisfy({ if case .kvPair = $0 { true } else { false } }) {
        return "memkv.KVPairs"
      }
      return "[]interface {}"
    case .map: return "map[string]interface {}"
    case .kvPair: return "memkv.KVPair"
    case .time: return "time.Time"
    }
  }
}

extension TemplateValue: ExpressibleByStringLiteral {
  public init(stringLiteral value: String) { self = .string(value) }
}

extension TemplateValue: ExpressibleByIntegerLiteral {
  public init(integerLiteral value: Int) { self = .int(value) }
}

extension TemplateValue: ExpressibleByFloatLiteral {
  public init(floatLiteral value: Double) { self = .double(value) }
}

extension TemplateValue: ExpressibleByBooleanLiteral {
  public init(booleanLiteral value: Bool) { self = .bool(value) }
}

extension TemplateValue: ExpressibleByArrayLiteral {
  public init(arrayLiteral elements: TemplateValue...) { self = .list(elements) }
}

extension TemplateValue: ExpressibleByDictionaryLiteral {
  public init(dictionaryLiteral elements: (String, TemplateValue)...) {
    self = .map(Dictionary(elements, uniquingKeysWith: { _, last in last }))
  }
}

extension TemplateValue: ExpressibleByNilLiteral {
  public init(nilLiteral: ()) { self = .null }
}
