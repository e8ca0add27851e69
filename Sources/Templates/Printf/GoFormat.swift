/// Go's `fmt.Sprint`, `fmt.Sprintln` and `fmt.Sprintf`, for template values.
enum GoFormat {
  /// `fmt.Sprint`: operands in `%v`, with a space between two operands when neither is a string.
  static func sprint(_ args: [TemplateValue]) -> String {
    String(decoding: sprintBytes(args), as: UTF8.self)
  }

  /// `limit` stops the output soon after it passes that many bytes (the caller then fails).
  static func sprintBytes(_ args: [TemplateValue], limit: Int = .max) -> [UInt8] {
    var f = GoFormatter()
    f.limit = limit
    var previousIsString = false
    for (i, arg) in args.enumerated() where !f.full {
      let isString = arg.isStringKind
      if i > 0, !isString, !previousIsString { f.out.append(UInt8(ascii: " ")) }
      f.printArgument(arg, verb: UInt8(ascii: "v"))
      previousIsString = isString
    }
    return f.out
  }

  /// `fmt.Sprintln`: operands in `%v`, always separated by spaces, then a newline.
  static func sprintlnBytes(_ args: [TemplateValue], limit: Int = .max) -> [UInt8] {
    var f = GoFormatter()
    f.limit = limit
    for (i, arg) in args.enumerated() where !f.full {
      if i > 0 { f.out.append(UInt8(ascii: " ")) }
      f.printArgument(arg, verb: UInt8(ascii: "v"))
    }
    f.out.append(UInt8(ascii: "\n"))
    return f.out
  }

  /// `fmt.Sprintf`; `limit` stops the output soon after it passes that many bytes.
  static func sprintfBytes(_ format: String, _ args: [TemplateValue], limit: Int = .max) -> [UInt8] {
    var f = GoFormatter()
    f.limit = limit
    f.out.reserveCapacity(min(format.utf8.count, 1 << 16) + 16 * min(args.count, 1 << 12))
    if format.utf8.withContiguousStorageIfAvailable({ f.printf($0, args) }) == nil {
      Array(format.utf8).withUnsafeBufferPointer { f.printf($0, args) }
    }
    return f.out
  }

  /// Appends a value as an action prints it: `%v`, with nil shown as `<no value>`. Lists
  /// and maps stop soon after `out` passes `limit` bytes (the caller then fails).
  static func appendValue(_ value: TemplateValue, to out: inout [UInt8], limit: Int = .max) {
    switch value {
    case .string(let s): out.append(contentsOf: s.utf8)
    case .bytes(let b): out.append(contentsOf: b)
    case .int(let i): appendDecimal(i, to: &out)
    case .null: out.append(contentsOf: "<no value>".utf8)
    default:
      var f = GoFormatter()
      f.limit = limit
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
