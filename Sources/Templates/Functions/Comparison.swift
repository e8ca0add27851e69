/// Go text/template's eq, ne, lt, le, gt, ge: only like kinds compare (int with int,
/// float with float, string with string, bool with bool for eq); anything else is an error.
enum Comparison {
  enum Kind { case bool, int, float, string, other, invalid }

  static func kind(_ value: TemplateValue) -> Kind {
    switch value {
    case .null: return .invalid
    case .bool: return .bool
    case .int: return .int
    case .double: return .float
    case .string, .bytes: return .string
    default: return .other
    }
  }

  /// `eq a b c ...`: whether `a` equals any of the others.
  static func equal(_ first: TemplateValue, _ others: [TemplateValue]) throws(FunctionFailure) -> Bool {
    guard !others.isEmpty else { throw .call("missing argument for comparison") }
    let k1 = kind(first)
    for other in others {
      let k2 = kind(other)
      if k1 != k2 {
        if k1 != .invalid && k2 != .invalid { throw .call("incompatible types for comparison") }
        continue
      }
      if try same(first, other, kind: k1) { return true }
    }
    return false
  }

  private static func same(_ a: TemplateValue, _ b: TemplateValue, kind: Kind) throws(FunctionFailure) -> Bool {
    switch (a, b) {
    case (.null, .null): return true
    case (.bool(let x), .bool(let y)): return x == y
    case (.int(let x), .int(let y)): return x == y
    case (.double(let x), .double(let y)): return x == y
    case (.kvPair(let x), .kvPair(let y)): return x == y
    case (.time(let x), .time(let y)): return x == y
    case (.list, _), (.map, _):
      throw .call("non-comparable type \(GoFormat.sprint([a])): \(a.goTypeName)")
    case (_, .list), (_, .map):
      throw .call("non-comparable type \(GoFormat.sprint([b])): \(b.goTypeName)")
    default:
      if kind == .string { return a.bytesValue == b.bytesValue }
      throw .call("incompatible types for comparison")
    }
  }

  /// `lt a b`.
  static func less(_ a: TemplateValue, _ b: TemplateValue) throws(FunctionFailure) -> Bool {
    let k1 = kind(a)
    let k2 = kind(b)
    for k in [k1, k2] where k == .other || k == .invalid {
      throw .call("invalid type for comparison")
    }
    guard k1 == k2 else { throw .call("incompatible types for comparison") }
    if k1 == .bool { throw .call("invalid type for comparison") }
    switch (a, b) {
    case (.int(let x), .int(let y)): return x < y
    case (.double(let x), .double(let y)): return x < y
    default: return ByteOrder.less(a.bytesValue, b.bytesValue)
    }
  }

  /// `le a b`.
  static func lessOrEqual(_ a: TemplateValue, _ b: TemplateValue) throws(FunctionFailure) -> Bool {
    if try less(a, b) { return true }
    return try equal(a, [b])
  }
}
