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
  /// A map with string keys, compared as bytes (two keys that are canonically equivalent
  /// but spelled with different bytes stay two entries, as in Go); `range` visits it in
  /// key order.
  case map([ExactString: TemplateValue])
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

extension TemplateValue {
  /// Equality as Go sees the values: strings (and bytes) compare by their bytes, not by
  /// Unicode canonical equivalence as Swift's `String` does.
  public static func == (lhs: TemplateValue, rhs: TemplateValue) -> Bool {
    switch (lhs, rhs) {
    case (.null, .null): return true
    case (.bool(let x), .bool(let y)): return x == y
    case (.int(let x), .int(let y)): return x == y
    case (.double(let x), .double(let y)): return x == y
    case (.string(let x), .string(let y)): return x.bytesEqual(y)
    case (.bytes(let x), .bytes(let y)): return x == y
    case (.list(let x), .list(let y)): return x == y
    case (.map(let x), .map(let y)): return x == y
    case (.kvPair(let x), .kvPair(let y)): return x == y
    case (.time(let x), .time(let y)): return x == y
    default: return false
    }
  }

  public func hash(into hasher: inout Hasher) {
    switch self {
    case .null: hasher.combine(0)
    case .bool(let b): hasher.combine(1); hasher.combine(b)
    case .int(let i): hasher.combine(2); hasher.combine(i)
    case .double(let d): hasher.combine(3); hasher.combine(d)
    case .string(let s): hasher.combine(4); hasher.combine(ExactString(s))
    case .bytes(let b): hasher.combine(5); hasher.combine(b)
    case .list(let l): hasher.combine(6); hasher.combine(l)
    case .map(let m): hasher.combine(7); hasher.combine(m)
    case .kvPair(let p): hasher.combine(8); hasher.combine(p)
    case .time(let t): hasher.combine(9); hasher.combine(t)
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
    self = .map(Dictionary(elements.map { (ExactString($0.0), $0.1) }, uniquingKeysWith: { _, last in last }))
  }
}

extension TemplateValue: ExpressibleByNilLiteral {
  public init(nilLiteral: ()) { self = .null }
}
