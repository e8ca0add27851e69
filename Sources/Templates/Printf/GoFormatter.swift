/// The state of one Go `fmt` call: the output and the flags of the directive at hand.
struct GoFormatter {
  var out: [UInt8] = []
  var minus = false
  var plus = false
  var sharp = false
  var space = false
  var zero = false
  var plusV = false
  var width: Int?
  var precision: Int?

  mutating func clearFlags() {
    minus = false
    plus = false
    sharp = false
    space = false
    zero = false
    plusV = false
    width = nil
    precision = nil
  }

  /// Prints one operand with a verb, as `fmt`'s printArg does.
  mutating func printArgument(_ value: TemplateValue, verb: UInt8) {
    if verb == UInt8(ascii: "T") {
      padString(Array(value.goTypeName.utf8))
      return
    }
    printValue(value, verb: verb, depth: 0)
  }

  mutating func printValue(_ value: TemplateValue, verb: UInt8, depth: Int) {
    switch value {
    case .null:
      if depth > 0 || verb == UInt8(ascii: "v") {
        padString(Array("<nil>".utf8))
      } else {
        badVerb(verb, value)
      }
    case .bool(let b):
      if verb == UInt8(ascii: "t") || verb == UInt8(ascii: "v") {
        padString(Array((b ? "true" : "false").utf8))
      } else {
        badVerb(verb, value)
      }
    case .int(let i): formatInteger(i, verb: verb, value: value)
    case .double(let d): formatFloat(d, verb: verb, value: value)
    case .string(let s): formatString(Array(s.utf8), verb: verb, value: value)
    case .bytes(let b): formatString(b, verb: verb, value: value)
    case .time(let t):
      if "vsxXq".utf8.contains(verb) {
        formatString(Array(t.description.utf8), verb: verb, value: value)
      } else {
        badVerb(verb, value)
      }
    case .list(let items):
      out.append(UInt8(ascii: "["))
      for (i, item) in items.enumerated() {
        if i > 0 { out.append(UInt8(ascii: " ")) }
        printValue(item, verb: verb, depth: depth + 1)
      }
      out.append(UInt8(ascii: "]"))
    case .map(let map):
      out.append(contentsOf: "map[".utf8)
      for (i, key) in ByteOrder.sorted(Array(map.keys)).enumerated() {
        if i > 0 { out.append(UInt8(ascii: " ")) }
        printValue(.string(key), verb: verb, depth: depth + 1)
        out.append(UInt8(ascii: ":"))
        printValue(map[key] ?? .null, verb: verb, depth: depth + 1)
      }
      out.append(UInt8(ascii: "]"))
    case .kvPair(let pair):
      out.append(UInt8(ascii: "{"))
      if plusV { out.append(contentsOf: "Key:".utf8) }
      printValue(.string(pair.key), verb: verb, depth: depth + 1)
      out.append(UInt8(ascii: " "))
      if plusV { out.append(contentsOf: "Value:".utf8) }
      printValue(.bytes(pair.value), verb: verb, depth: depth + 1)
      out.append(UInt8(ascii: "}"))
    }
  }

  /// `%!d(string=hello)`: a verb that does not suit the operand.
  mutating func badVerb(_ verb: UInt8, _ value: TemplateValue) {
    out.append(contentsOf: "%!".utf8)
    out.append(verb)
    out.append(UInt8(ascii: "("))
    if case .null = value {
      out.append(contentsOf: "<nil>".utf8)
    } else {
      out.append(contentsOf: value.goTypeName.utf8)
      out.append(UInt8(ascii: "="))
      printValue(value, verb: UInt8(ascii: "v"), depth: 0)
    }
    out.append(UInt8(ascii: ")"))
  }

  // MARK: - Padding

  mutating func writePadding(_ count: Int) {
    guard count > 0 else { return }
    let byte = zero && !minus ? UInt8(ascii: "0") : UInt8(ascii: " ")
    out.append(contentsOf: repeatElement(byte, count: count))
  }

  /// Writes `bytes` padded to the width (counted in characters), left or right.
  mutating func pad(_ bytes: [UInt8]) {
    guard let width, width > 0 else {
      out.append(contentsOf: bytes)
      return
    }
    let length = bytes.reduce(0) { $0 + ($1 & 0xC0 == 0x80 ? 0 : 1) }
    if minus {
      out.append(contentsOf: bytes)
      writePadding(width - length)
    } else {
      writePadding(width - length)
      out.append(contentsOf: bytes)
    }
  }

  /// Pads a textual operand (string, bool, nil); Go honours the `0` flag for these too.
  mutating func padString(_ bytes: [UInt8]) {
    pad(bytes)
  }
}
