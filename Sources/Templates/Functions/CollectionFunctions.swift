/// confd's number and list functions: atoi, parseBool, add, sub, mul, div, mod, seq,
/// reverse, sortByLength, sortKVByLength, map.
enum CollectionFunctions {
  static func call(_ function: Builtin, _ a: [TemplateValue]) throws(FunctionFailure) -> TemplateValue {
    switch function {
    case .atoi:
      let text = try string(a[0])
      let quoted = String(decoding: GoQuote.quote(Array(text.utf8), asciiOnly: false), as: UTF8.self)
      switch atoiResult(text) {
      case .value(let value): return .int(value)
      case .outOfRange: throw .call("strconv.Atoi: parsing \(quoted): value out of range")
      case .invalid: throw .call("strconv.Atoi: parsing \(quoted): invalid syntax")
      }
    case .parseBool:
      let text = try string(a[0])
      switch text {
      case "1", "t", "T", "true", "TRUE", "True": return .bool(true)
      case "0", "f", "F", "false", "FALSE", "False": return .bool(false)
      default: throw .call("strconv.ParseBool: parsing \"\(text)\": invalid syntax")
      }
    case .add: return .int(try integer(a[0]) &+ integer(a[1]))
    case .sub: return .int(try integer(a[0]) &- integer(a[1]))
    case .mul: return .int(try integer(a[0]) &* integer(a[1]))
    case .div, .mod:
      let x = try integer(a[0])
      let y = try integer(a[1])
      guard y != 0 else { throw .call("runtime error: integer divide by zero") }
      if function == .div { return .int(x.dividedReportingOverflow(by: y).partialValue) }
      return .int(x.remainderReportingOverflow(dividingBy: y).partialValue)
    case .seq:
      let first = try integer(a[0])
      let last = try integer(a[1])
      guard last >= first else { return .list([]) }
      // last - first can overflow Int (seq -9223372036854775808 9223372036854775807).
      let (span, overflow) = last.subtractingReportingOverflow(first)
      guard !overflow, span < Limits.sequenceLength else {
        throw .call("seq \(first) \(last): more than \(Limits.sequenceLength) numbers", code: .limitExceeded)
      }
      return .list((first...last).map { .int($0) })
    case .reverse:
      guard case .list(let items) = a[0] else { return a[0] }
      return .list(items.reversed())
    case .sortByLength:
      let strings = try stringList(a[0])
      return .list(stableSorted(strings) { $0.utf8.count < $1.utf8.count }.map { .string($0) })
    case .sortKVByLength:
      guard case .list(let items) = a[0] else {
        throw .argument("wrong type for value; expected []memkv.KVPair; got \(a[0].goTypeName)")
      }
      var pairs: [KVPair] = []
      for item in items {
        guard case .kvPair(let pair) = item else {
          throw .argument("wrong type for value; expected []memkv.KVPair; got \(a[0].goTypeName)")
        }
        pairs.append(pair)
      }
      return .list(stableSorted(pairs) { $0.key.utf8.count < $1.key.utf8.count }.map { .kvPair($0) })
    case .map:
      guard a.count % 2 == 0 else { throw .call("invalid map call") }
      var map: [ExactString: TemplateValue] = [:]
      for i in stride(from: 0, to: a.count, by: 2) {
        guard let key = a[i].stringValue else { throw .call("map keys must be strings") }
        map[ExactString(key)] = a[i + 1]
      }
      return .map(map)
    default:
      preconditionFailure("not a collection function: \(function)")
    }
  }

  /// What `strconv.Atoi` makes of a text.
  enum AtoiResult: Equatable {
    case value(Int)
    case outOfRange
    case invalid
  }

  /// Go's strconv.Atoi, telling syntax errors from values outside `Int` (read byte by
  /// byte: String's `first` would be a grapheme, `+` and a combining mark together).
  static func atoiResult(_ text: String) -> AtoiResult {
    var digits = Substring(text).utf8[...]
    var negative = false
    if let first = digits.first, first == UInt8(ascii: "+") || first == UInt8(ascii: "-") {
      negative = first == UInt8(ascii: "-")
      digits = digits.dropFirst()
    }
    guard !digits.isEmpty, digits.allSatisfy(isDigit) else { return .invalid }
    var magnitude: UInt64 = 0
    for digit in digits {
      let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
      let (sum, o2) = times10.addingReportingOverflow(UInt64(digit - UInt8(ascii: "0")))
      if o1 || o2 { return .outOfRange }
      magnitude = sum
    }
    if negative {
      if magnitude == UInt64(Int.max) + 1 { return .value(Int.min) }
      return magnitude <= UInt64(Int.max) ? .value(-Int(magnitude)) : .outOfRange
    }
    return magnitude <= UInt64(Int.max) ? .value(Int(magnitude)) : .outOfRange
  }

  /// Sorts keeping equal elements in their original order.
  static func stableSorted<T>(_ items: [T], by less: (T, T) -> Bool) -> [T] {
    items.enumerated().sorted { lhs, rhs in
      if less(lhs.element, rhs.element) { return true }
      if less(rhs.element, lhs.element) { return false }
      return lhs.offset < rhs.offset
    }.map(\.element)
  }
}
