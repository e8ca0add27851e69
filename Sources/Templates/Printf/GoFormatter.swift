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
  /// Once `out` holds more than this many bytes, lists, maps and `printf` directives stop
  /// printing; the caller sees the size and fails. Bounds what data can make a call allocate.
  var limit = Int.max

  /// Whether the output has passed ``limit``.
  var full: Bool { out.count > limit }

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
      for (i, item) in items.enumerated() where !full {
        if i > 0 { out.append(UInt8(ascii: " ")) }
        printValue(item, verb: verb, depth: depth + 1)
      }
      out.append(UInt8(ascii: "]"))
    case .map(let map):
      out.append(contentsOf: "map[".utf8)
      for (i, key) in map.keys.sorted().enumerated() where !full {
        if i > 0 { out.append(UInt8(ascii: " ")) }
        printValue(.string(key.string), verb: verb, depth: depth + 1)
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

  /// Widths reach 10,000,009 (Go's fmt): padding is copied in blocks, not byte by byte.
  private static let spaces = [UInt8](repeating: UInt8(ascii: " "), count: 4096)
  private static let zeros = [UInt8](repeating: UInt8(ascii: "0"), count: 4096)

  mutating func writePadding(_ count: Int) {
    Self.appendPadding(zero && !minus ? UInt8(ascii: "0") : UInt8(ascii: " "), count: count, to: &out)
  }

  /// Appends `count` spaces or zeros.
  static func appendPadding(_ byte: UInt8, count: Int, to out: inout [UInt8]) {
    let block = byte == UInt8(ascii: "0") ? zeros : spaces
    var left = count
    while left > 0 {
      let n = min(left, block.count)
      block.withUnsafeBufferPointer { out.append(contentsOf: UnsafeBufferPointer(rebasing: $0[..<n])) }
      left -= n
    }
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
