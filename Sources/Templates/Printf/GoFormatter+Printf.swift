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
    /// Go's `goodArgNum`: false when this directive named a bad `[n]` index.
    var goodArgNum = true

    var atEnd: Bool { i >= format.count }
    var current: UInt8 { format[i] }

    mutating func accept(_ byte: UInt8) -> Bool {
      guard !atEnd, current == byte else { return false }
      i += 1
      return true
    }

    /// Reads decimal digits as Go's `parsenum` does: nil when there are none, or when the
    /// number passes 1e6 (then, like Go, a width or precision gives up on the rest of the
    /// format, and an index skips its remaining digits). The value never exceeds 10,000,009.
    mutating func digits(overflowEndsFormat: Bool) -> Int? {
      var value: Int?
      while !atEnd, isDigit(current) {
        if let value, Limits.formatNumberTooLarge(value) {
          if overflowEndsFormat {
            i = format.count
          } else {
            while !atEnd, isDigit(current) { i += 1 }
          }
          return nil
        }
        value = (value ?? 0) * 10 + Int(current - UInt8(ascii: "0"))
        i += 1
      }
      return value
    }

    /// The int argument a `*` takes, if it is one within ±1e6 (Go's `intFromArg`, which
    /// consumes an argument only when there is one).
    mutating func starArgument() -> Int? {
      guard argNum < args.count else { return nil }
      defer { argNum += 1 }
      guard case .int(let value) = args[argNum], !Limits.formatNumberTooLarge(value) else { return nil }
      return value
    }
  }

  mutating func printf(_ format: UnsafeBufferPointer<UInt8>, _ args: [TemplateValue]) {
    var cursor = Cursor(format: format, args: args)
    while !cursor.atEnd, !full {
      let start = cursor.i
      while !cursor.atEnd, cursor.current != UInt8(ascii: "%") { cursor.i += 1 }
      out.append(contentsOf: format[start..<cursor.i])
      guard cursor.accept(UInt8(ascii: "%")) else { break }
      clearFlags()
      cursor.goodArgNum = true
      readFlags(&cursor)
      readWidthAndPrecision(&cursor)
      argumentIndex(&cursor)
      guard !cursor.atEnd else {
        out.append(contentsOf: "%!(NOVERB)".utf8)
        break
      }
      printDirective(&cursor)
    }
    if !full, !cursor.reordered, cursor.argNum < args.count { printExtra(args[cursor.argNum...]) }
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
        width = w.magnitude <= UInt(Limits.formatNumber) ? Int(w.magnitude) : 0
        if w < 0 {
          minus = true
          zero = false
        }
      } else {
        out.append(contentsOf: "%!(BADWIDTH)".utf8)
      }
    } else if let w = cursor.digits(overflowEndsFormat: true) {
      width = w
    }
    guard cursor.accept(UInt8(ascii: ".")) else { return }
    argumentIndex(&cursor)
    if cursor.accept(UInt8(ascii: "*")) {
      // Go: a negative precision argument makes no sense, and is bad like a non-int one.
      if let p = cursor.starArgument(), p >= 0 {
        precision = p
      } else {
        out.append(contentsOf: "%!(BADPREC)".utf8)
      }
    } else {
      precision = cursor.digits(overflowEndsFormat: true) ?? 0
    }
  }

  /// Reads an explicit argument index `[n]`, if present, as Go's `argNumber` does: a bad
  /// one (not digits, past 1e6, out of range) marks the directive `%!v(BADINDEX)`, and the
  /// cursor moves past the `]` (or past the `[` alone when no `]` follows).
  private mutating func argumentIndex(_ cursor: inout Cursor) {
    guard !cursor.atEnd, cursor.current == UInt8(ascii: "[") else { return }
    cursor.reordered = true
    let open = cursor.i
    var close = open + 1
    while close < cursor.format.count, cursor.format[close] != UInt8(ascii: "]") { close += 1 }
    guard close < cursor.format.count else {
      cursor.i = open + 1
      cursor.goodArgNum = false
      return
    }
    cursor.i = open + 1
    let n = cursor.digits(overflowEndsFormat: false)
    let wellFormed = n != nil && cursor.i == close
    cursor.i = close + 1
    if wellFormed, let n, n >= 1, n <= cursor.args.count {
      cursor.argNum = n - 1
      return
    }
    cursor.goodArgNum = false
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
    guard cursor.goodArgNum else {
      out.append(contentsOf: "%!".utf8 + verbBytes + "(BADINDEX)".utf8)
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
