/// Go's `fmt.Sprint`, `fmt.Sprintln` and `fmt.Sprintf`, for template values.
enum GoFormat {
  /// `fmt.Sprint`: operands in `%v`, with a space between two operands when neither is a string.
  static func sprint(_ args: [TemplateValue]) -> String {
    String(decoding: sprintBytes(args), as: UTF8.self)
  }

  static func sprintBytes(_ args: [TemplateValue]) -> [UInt8] {
    var f = GoFormatter()
    var previousIsString = false
    for (i, arg) in args.enumerated() {
      let isString = arg.isStringKind
      if i > 0, !isString, !previousIsString { f.out.append(UInt8(ascii: " ")) }
      f.printArgument(arg, verb: UInt8(ascii: "v"))
      previousIsString = isString
    }
    return f.out
  }

  /// `fmt.Sprintln`: operands in `%v`, always separated by spaces, then a newline.
  static func sprintlnBytes(_ args: [TemplateValue]) -> [UInt8] {
    var f = GoFormatter()
    for (i, arg) in args.enumerated() {
      if i > 0 { f.out.append(UInt8(ascii: " ")) }
      f.printArgument(arg, verb: UInt8(ascii: "v"))
    }
    f.out.append(UInt8(ascii: "\n"))
    return f.out
  }

  /// `fmt.Sprintf`.
  static func sprintfBytes(_ format: String, _ args: [TemplateValue]) -> [UInt8] {
    var f = GoFormatter()
    f.out.reserveCapacity(format.utf8.count + 16 * args.count)
    if format.utf8.withContiguousStorageIfAvailable({ f.printf($0, args) }) == nil {
      Array(format.utf8).withUnsafeBufferPointer { f.printf($0, args) }
    }
    return f.out
  }

  /// Appends a value as an action prints it: `%v`, with nil shown as `<no value>`.
  static func appendValue(_ value: TemplateValue, to out: inout [UInt8]) {
    switch value {
    case .string(let s): out.append(contentsOf: s.utf8)
    case .bytes(let b): out.append(contentsOf: b)
    case .int(let i): appendDecimal(i, to: &out)
    case .null: out.append(contentsOf: "<no value>".utf8)
    default:
      var f = GoFormatter()
      swap(&f.out, &out)
      f.printArgument(value, verb: UInt8(ascii: "v"))
      swap(&f.out, &out)
    }
  }

  /// Appends an integer in decimal without building a String.
  static func appendDecimal(_ value: Int, to out: inout [UInt8]) {
    if value == 0 {
      out.append(UInt8(ascii: "0"))
      return
    }
    var magnitude = value.magnitude
    var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes of scratch
    let count = withUnsafeMutableBytes(of: &digits) { buffer -> Int in
      var i = buffer.count
      while magnitude > 0 {
        i -= 1
        buffer[i] = UInt8(ascii: "0") + UInt8(magnitude % 10)
        magnitude /= 10
      }
      return buffer.count - i
    }
    if value < 0 { out.append(UInt8(ascii: "-")) }
    withUnsafeBytes(of: &digits) { buffer in
      out.append(contentsOf: buffer[(buffer.count - count)...])
    }
  }
}
