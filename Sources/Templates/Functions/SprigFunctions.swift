/// sprig's collection, logic, conversion and string functions, with sprig's argument order
/// (the subject last, so `{{getv "/v" | trimPrefix "v"}}` works in a pipeline).
enum SprigFunctions {
  static func call(_ function: Builtin, _ a: [TemplateValue]) throws(FunctionFailure) -> TemplateValue {
    switch function {
    case .dict:
      var map: [ExactString: TemplateValue] = [:]
      for i in stride(from: 0, to: a.count, by: 2) {
        // sprig converts keys with fmt.Sprint; a key without a value gets "".
        map[ExactString(text(a[i]))] = i + 1 < a.count ? a[i + 1] : .string("")
      }
      return .map(map)
    case .list:
      return .list(a)
    case .append:
      guard case .list(var items) = a[0] else { throw .call("Cannot push on type \(a[0].goTypeName)") }
      guard items.count < Limits.appendLength else {
        throw .call("append: the list would be longer than \(Limits.appendLength) items", code: .limitExceeded)
      }
      items.append(a[1])
      return .list(items)
    case .hasKey:
      return .bool(try map(a[0])[ExactString(try string(a[1]))] != nil)
    case .keys:
      var names: [String] = []
      for value in a { names += try map(value).keys.map(\.string) }
      return .list(ByteOrder.sorted(names).map { .string($0) })
    case .values:
      let entries = try map(a[0])
      return .list(ByteOrder.sorted(entries.keys.map(\.string)).map { entries[ExactString($0)]! })
    case .uniq:
      guard case .list(let items) = a[0] else { throw .call("Cannot find uniq on type \(a[0].goTypeName)") }
      var seen: Set<TemplateValue> = []
      return .list(items.filter { seen.insert($0).inserted })
    case .sortAlpha:
      guard case .list(let items) = a[0] else { return .list([.string(text(a[0]))]) }
      let strings = items.compactMap { item -> String? in item == .null ? nil : text(item) }
      return .list(ByteOrder.sorted(strings).map { .string($0) })
    case .ternary:
      guard case .bool(let condition) = a[2] else {
        throw .argument("wrong type for value; expected bool; got \(a[2].goTypeName)")
      }
      return condition ? a[0] : a[1]
    case .coalesce:
      return a.first { $0.isTrue } ?? .null
    case .empty:
      return .bool(!a[0].isTrue)
    case .required:
      switch a[1] {
      case .null: throw .call(try string(a[0]))
      case .string(let s) where s.isEmpty: throw .call(try string(a[0]))
      case .bytes(let b) where b.isEmpty: throw .call(try string(a[0]))
      default: return a[1]
      }
    case .toInt:
      return .int(toInt(a[0]))
    case .toString:
      if case .bytes = a[0] { return a[0] }
      return .string(text(a[0]))
    case .max, .min:
      var result = toInt(a[0])
      for value in a.dropFirst() {
        let number = toInt(value)
        if function == .max ? number > result : number < result { result = number }
      }
      return .int(result)
    default:
      preconditionFailure("not a sprig function: \(function)")
    }
  }

  static func callString(_ function: Builtin, _ a: [TemplateValue], maxSize: Int) throws(FunctionFailure)
    -> TemplateValue
  {
    switch function {
    case .trim:
      return .string(StringFunctions.trimSpace(try string(a[0])))
    case .trimPrefix:
      let (prefix, text) = (Array(try string(a[0]).utf8), Array(try string(a[1]).utf8))
      guard text.starts(with: prefix) else { return a[1] }
      return .string(String(decoding: text.dropFirst(prefix.count), as: UTF8.self))
    case .hasPrefix:
      return .bool(Array(try string(a[1]).utf8).starts(with: try string(a[0]).utf8))
    case .hasSuffix:
      return .bool(Array(try string(a[1]).utf8).reversed().starts(with: Array(try string(a[0]).utf8).reversed()))
    case .title:
      return .string(title(try string(a[0])))
    case .quote, .squote:
      var out: [UInt8] = []
      for value in a where value != .null {
        if !out.isEmpty { out.append(UInt8(ascii: " ")) }
        if function == .quote {
          out += GoQuote.quote(Array(text(value).utf8), asciiOnly: false)
        } else {
          out.append(UInt8(ascii: "'"))
          out += GoFormat.sprintBytes([value], limit: maxSize)
          out.append(UInt8(ascii: "'"))
        }
        guard out.count <= maxSize else { throw .tooLarge(limit: maxSize) }
      }
      return .string(String(decoding: out, as: UTF8.self))
    case .nindent:
      let indented = try StringFunctions.indent(try integer(a[0]), try string(a[1]), maxSize: maxSize - 1)
      return .string("\n" + indented)
    default:
      preconditionFailure("not a sprig string function: \(function)")
    }
  }

  /// sprig's `strval`: a string as it is, anything else as `fmt.Sprint` prints it.
  static func text(_ value: TemplateValue) -> String {
    if let string = value.stringValue { return string }
    return GoFormat.sprint([value])
  }

  /// A map argument.
  private static func map(_ value: TemplateValue) throws(FunctionFailure) -> [ExactString: TemplateValue] {
    guard case .map(let entries) = value else {
      throw .argument("wrong type for value; expected map[string]interface {}; got \(value.goTypeName)")
    }
    return entries
  }

  /// sprig's `toInt` (spf13/cast): ints as they are, floats truncated toward zero, `true`
  /// 1, strings parsed as Go's `strconv.ParseInt(s, 0, 0)` reads them (`0x1F`, `0o17`,
  /// `0b11`, `017`, `1_000`, and `8.00` with its zero decimals dropped); anything else, or a
  /// number outside Int's range, is 0.
  static func toInt(_ value: TemplateValue) -> Int {
    switch value {
    case .int(let i): return i
    case .double(let d): return d.isFinite && d > -9.2e18 && d < 9.2e18 ? Int(d) : 0
    case .bool(let b): return b ? 1 : 0
    case .string, .bytes: return parseInt(text(value)) ?? 0
    default: return 0
    }
  }

  /// `strconv.ParseInt(s, 0, 0)` after cast's trimming of a `.000` tail; nil when invalid or
  /// out of range.
  static func parseInt(_ text: String) -> Int? {
    var bytes = Array(text.utf8)
    if let dot = bytes.firstIndex(of: UInt8(ascii: ".")), dot > 0,
      bytes[(dot + 1)...].allSatisfy({ $0 == UInt8(ascii: "0") })
    {
      bytes.removeSubrange(dot...)
    }
    var negative = false
    if let first = bytes.first, first == UInt8(ascii: "+") || first == UInt8(ascii: "-") {
      negative = first == UInt8(ascii: "-")
      bytes.removeFirst()
    }
    var base: UInt64 = 10
    var prefixed = false
    if bytes.count > 1, bytes[0] == UInt8(ascii: "0") {
      switch bytes[1] | 0x20 {
      case UInt8(ascii: "x"): base = 16; bytes.removeFirst(2); prefixed = true
      case UInt8(ascii: "o"): base = 8; bytes.removeFirst(2); prefixed = true
      case UInt8(ascii: "b"): base = 2; bytes.removeFirst(2); prefixed = true
      default: base = 8; bytes.removeFirst(); prefixed = true
      }
    }
    // Underscores only with a base prefix, between digits (Go's underscoreOK).
    if bytes.contains(UInt8(ascii: "_")) {
      guard prefixed, bytes.first != UInt8(ascii: "_"), bytes.last != UInt8(ascii: "_"),
        !zip(bytes, bytes.dropFirst()).contains(where: { $0 == UInt8(ascii: "_") && $1 == UInt8(ascii: "_") })
      else { return nil }
      bytes.removeAll { $0 == UInt8(ascii: "_") }
    }
    guard !bytes.isEmpty || (prefixed && base == 8) else { return nil }
    var magnitude: UInt64 = 0
    for byte in bytes {
      let digit: UInt64
      switch byte {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt64(byte - UInt8(ascii: "0"))
      case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt64(byte - UInt8(ascii: "a") + 10)
      case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt64(byte - UInt8(ascii: "A") + 10)
      default: return nil
      }
      guard digit < base else { return nil }
      let (times, o1) = magnitude.multipliedReportingOverflow(by: base)
      let (sum, o2) = times.addingReportingOverflow(digit)
      if o1 || o2 { return nil }
      magnitude = sum
    }
    if negative { return magnitude <= UInt64(Int.max) + 1 ? Int(truncatingIfNeeded: 0 &- magnitude) : nil }
    return magnitude <= UInt64(Int.max) ? Int(magnitude) : nil
  }

  /// Go's `strings.Title`: the first letter of each word in title case, a word starting
  /// after white space or ASCII punctuation.
  static func title(_ text: String) -> String {
    var out = String.UnicodeScalarView()
    var previous: Unicode.Scalar = " "
    for scalar in text.unicodeScalars {
      if isSeparator(previous) {
        let mapped = scalar.properties.titlecaseMapping.unicodeScalars
        if mapped.count == 1 { out.append(contentsOf: mapped) } else { out.append(scalar) }
      } else {
        out.append(scalar)
      }
      previous = scalar
    }
    return String(out)
  }

  /// Go's `strings.isSeparator`.
  private static func isSeparator(_ scalar: Unicode.Scalar) -> Bool {
    if scalar.isASCII {
      let v = scalar.value
      if (0x30...0x39).contains(v) || (0x41...0x5A).contains(v) || (0x61...0x7A).contains(v) || v == 0x5F {
        return false
      }
      return true
    }
    if scalar.properties.isAlphabetic || scalar.properties.numericType == .decimal { return false }
    return scalar.properties.isWhitespace
  }
}
