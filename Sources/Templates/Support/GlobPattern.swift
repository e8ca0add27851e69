/// A compiled Go `path.Match` pattern: `*` matches any run of non-`/` bytes, `?` one
/// non-`/` character, `[a-z]`/`[^a-z]` a class, `\x` the byte x. Compiled once per `gets`,
/// then matched against many keys without allocating.
struct GlobPattern {
  enum Item {
    case byte(UInt8)
    case any
    case set(negated: Bool, ranges: [(UInt32, UInt32)])
  }

  /// A run of items, optionally preceded by `*`.
  struct Chunk {
    var star: Bool
    var items: [Item]
  }

  struct BadPattern: Error {}

  private(set) var chunks: [Chunk] = []
  /// The bytes every match starts with (up to the first special character).
  private(set) var literalPrefix: String = ""

  init(_ pattern: String) throws(BadPattern) {
    let p = Array(pattern.utf8)
    var i = 0
    var current = Chunk(star: false, items: [])
    var sawSpecial = false
    var prefix: [UInt8] = []
    while i < p.count {
      let c = p[i]
      switch c {
      case UInt8(ascii: "*"):
        sawSpecial = true
        if current.items.isEmpty {
          current.star = true
        } else {
          chunks.append(current)
          current = Chunk(star: true, items: [])
        }
        i += 1
      case UInt8(ascii: "?"):
        sawSpecial = true
        current.items.append(.any)
        i += 1
      case UInt8(ascii: "["):
        sawSpecial = true
        current.items.append(try Self.parseSet(p, &i))
      case UInt8(ascii: "\\"):
        guard i + 1 < p.count else { throw BadPattern() }
        current.items.append(.byte(p[i + 1]))
        if !sawSpecial { prefix.append(p[i + 1]) }
        i += 2
      default:
        current.items.append(.byte(c))
        if !sawSpecial { prefix.append(c) }
        i += 1
      }
    }
    chunks.append(current)
    literalPrefix = String(decoding: prefix, as: UTF8.self)
  }

  private static func parseSet(_ p: [UInt8], _ i: inout Int) throws(BadPattern) -> Item {
    i += 1
    var negated = false
    if i < p.count, p[i] == UInt8(ascii: "^") {
      negated = true
      i += 1
    }
    var ranges: [(UInt32, UInt32)] = []
    while true {
      if i < p.count, p[i] == UInt8(ascii: "]"), !ranges.isEmpty {
        i += 1
        return .set(negated: negated, ranges: ranges)
      }
      let low = try escapedScalar(p, &i)
      var high = low
      if i < p.count, p[i] == UInt8(ascii: "-") {
        i += 1
        high = try escapedScalar(p, &i)
      }
      ranges.append((low, high))
    }
  }

  private static func escapedScalar(_ p: [UInt8], _ i: inout Int) throws(BadPattern) -> UInt32 {
    guard i < p.count, p[i] != UInt8(ascii: "-"), p[i] != UInt8(ascii: "]") else { throw BadPattern() }
    if p[i] == UInt8(ascii: "\\") {
      i += 1
      guard i < p.count else { throw BadPattern() }
    }
    let (scalar, length) = GoQuote.decode(p, at: i)
    guard let scalar else { throw BadPattern() }
    i += length
    guard i < p.count else { throw BadPattern() }
    return scalar.value
  }

  /// Whether the whole of `name` matches.
  func matches(_ name: String) -> Bool {
    if let result = name.utf8.withContiguousStorageIfAvailable({ matches($0) }) { return result }
    return Array(name.utf8).withUnsafeBufferPointer { matches($0) }
  }

  func matches(_ name: UnsafeBufferPointer<UInt8>) -> Bool {
    var position = 0
    let end = name.count
    chunkLoop: for (n, chunk) in chunks.enumerated() {
      let isLast = n == chunks.count - 1
      if chunk.star && chunk.items.isEmpty {
        return !name[position...].contains(UInt8(ascii: "/"))
      }
      if let rest = match(chunk.items, name, from: position), rest == end || !isLast {
        position = rest
        continue
      }
      if chunk.star {
        var skip = position
        while skip < end, name[skip] != UInt8(ascii: "/") {
          if let rest = match(chunk.items, name, from: skip + 1), rest == end || !isLast {
            position = rest
            continue chunkLoop
          }
          skip += 1
        }
      }
      return false
    }
    return position == end
  }

  /// Matches the items at `start`; returns where the match ends.
  private func match(_ items: [Item], _ s: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
    var i = start
    for item in items {
      guard i < s.count else { return nil }
      switch item {
      case .byte(let b):
        guard s[i] == b else { return nil }
        i += 1
      case .any:
        guard s[i] != UInt8(ascii: "/") else { return nil }
        i += Self.scalarAt(s, i).length
      case .set(let negated, let ranges):
        let (value, length) = Self.scalarAt(s, i)
        let inSet = ranges.contains { $0.0 <= value && value <= $0.1 }
        guard inSet != negated else { return nil }
        i += length
      }
    }
    return i
  }

  private static func scalarAt(_ s: UnsafeBufferPointer<UInt8>, _ i: Int) -> (value: UInt32, length: Int) {
    let lead = s[i]
    if lead < 0x80 { return (UInt32(lead), 1) }
    let length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
    guard length > 1, i + length <= s.count else { return (0xFFFD, 1) }
    var value = UInt32(lead) & (0xFF >> (length + 1))
    for k in 1..<length { value = value << 6 | UInt32(s[i + k] & 0x3F) }
    return (value, length)
  }
}
