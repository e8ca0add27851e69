/// The `%` directive parser of `fmt.Sprintf`: flags, width, precision, `*`, `[n]` indexes.
extension GoFormatter {
  /// Where `printf` is in its format and argument list.
  private struct Cursor {
    let format: UnsafeBufferPointer<UInt8>
    let args: [TemplateValue]
    var i = 0
    var argNum = 0
    /// Whether an explicit `[n]` index was used (then unused arguments are not reported).
    var reordered = false

    var atEnd: Bool { i >= format.count }
    var current: UInt8 { format[i] }

    mutating func accept(_ byte: UInt8) -> Bool {
      guard !atEnd, current == byte else { return false }
      i += 1
      return true
    }

    /// Reads decimal digits, if any (capped to keep widths sane).
    mutating func digits() -> Int? {
      var value: Int?
      while !atEnd, isDigit(current) {
        value = min((value ?? 0) * 10 + Int(current - UInt8(ascii: "0")), 1_000_000)
        i += 1
      }
      return value
    }

    /// The int argument a `*` takes, if it is one.
    mutating func starArgument() -> Int? {
      defer { argNum += 1 }
      guard argNum < args.count, case .int(let value) = args[argNum] else { return nil }
      return value
    }
  }

  mutating func printf(_ format: UnsafeBufferPointer<UInt8>, _ args: [TemplateValue]) {
    var cursor = Cursor(format: format, args: args)
    while !cursor.atEnd {
      let start = cursor.i
      while !cursor.atEnd, cursor.current != UInt8(ascii: "%") { cursor.i += 1 }
      out.append(contentsOf: format[start..<cursor.i])
      guard cursor.accept(UInt8(ascii: "%")) else { break }
      clearFlags()
      readFlags(&cursor)
      readWidthAndPrecision(&cursor)
      argumentIndex(&cursor)
      guard !cursor.atEnd else {
        out.append(contentsOf: "%!(NOVERB)".utf8)
        break
      }
      printDirective(&cursor)
    }
    if !cursor.reordered, cursor.argNum < args.count { printExtra(args[cursor.argNum...]) }
  }

  private mutating func readFlags(_ cursor: inout Cursor) {
    while !cursor.atEnd {
      switch cursor.current {
      case UInt8(ascii: "#"): sharp = true
      case UInt8(ascii: "0"): zero = !minus
      case UInt8(ascii: "+"): plus = true
      case UInt8(ascii: "-"):
        minus = true
        zero = false
      case UInt8(ascii: " "): space = true
      default: return
      }
      cursor.i += 1
    }
  }

  private mutating func readWidthAndPrecision(_ cursor: inout Cursor) {
    argumentIndex(&cursor)
    if cursor.accept(UInt8(ascii: "*")) {
      if let w = cursor.starArgument() {
        width = abs(w)
        if w < 0 {
          minus = true
          zero = false
        }
      } else {
        out.append(contentsOf: "%!(BADWIDTH)".utf8)
      }
    } else if let w = cursor.digits() {
      width = w
    }
    guard cursor.accept(UInt8(ascii: ".")) else { return }
    argumentIndex(&cursor)
    if cursor.accept(UInt8(ascii: "*")) {
      if let p = cursor.starArgument() {
        precision = p < 0 ? nil : p
      } else {
        out.append(contentsOf: "%!(BADPREC)".utf8)
      }
    } else {
      precision = cursor.digits() ?? 0
    }
  }

  /// Reads an explicit argument index `[n]`, if present.
  private mutating func argumentIndex(_ cursor: inout Cursor) {
    guard cursor.accept(UInt8(ascii: "[")) else { return }
    cursor.reordered = true
    if let n = cursor.digits(), cursor.accept(UInt8(ascii: "]")), n >= 1, n <= cursor.args.count {
      cursor.argNum = n - 1
      return
    }
    out.append(contentsOf: "%!(BADINDEX)".utf8)
    while !cursor.atEnd, !cursor.accept(UInt8(ascii: "]")) { cursor.i += 1 }
    cursor.argNum = cursor.args.count
  }

  /// Prints the verb at the cursor with the next argument.
  private mutating func printDirective(_ cursor: inout Cursor) {
    let lead = cursor.current
    let length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
    let verbBytes = Array(cursor.format[cursor.i..<min(cursor.format.count, cursor.i + length)])
    cursor.i += length
    if lead == UInt8(ascii: "%") {
      out.append(lead)
      return
    }
    guard cursor.argNum < cursor.args.count else {
      out.append(contentsOf: "%!".utf8 + verbBytes + "(MISSING)".utf8)
      return
    }
    let arg = cursor.args[cursor.argNum]
    cursor.argNum += 1
    if lead == UInt8(ascii: "v") {
      plusV = plus
      plus = false
    }
    guard verbBytes.count == 1 else {
      // A non-ASCII verb suits no operand.
      out.append(contentsOf: "%!".utf8 + verbBytes + "(".utf8 + arg.goTypeName.utf8 + "=".utf8)
      printValue(arg, verb: UInt8(ascii: "v"), depth: 0)
      out.append(UInt8(ascii: ")"))
      return
    }
    printArgument(arg, verb: lead)
  }

  /// `%!(EXTRA type=value, ...)` for arguments no verb used.
  private mutating func printExtra(_ extra: ArraySlice<TemplateValue>) {
    clearFlags()
    out.append(contentsOf: "%!(EXTRA ".utf8)
    for (n, arg) in extra.enumerated() {
      if n > 0 { out.append(contentsOf: ", ".utf8) }
      if case .null = arg {
        out.append(contentsOf: "<nil>".utf8)
      } else {
        out.append(contentsOf: arg.goTypeName.utf8)
        out.append(UInt8(ascii: "="))
        printArgument(arg, verb: UInt8(ascii: "v"))
      }
    }
    out.append(UInt8(ascii: ")"))
  }
}
