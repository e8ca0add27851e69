/// Standard base64 with padding (Go's `base64.StdEncoding`).
enum Base64 {
  private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

  static func encode(_ bytes: [UInt8]) -> String {
    var out: [UInt8] = []
    out.reserveCapacity((bytes.count + 2) / 3 * 4)
    var i = 0
    while i + 3 <= bytes.count {
      let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
      out.append(alphabet[Int(n >> 18 & 63)])
      out.append(alphabet[Int(n >> 12 & 63)])
      out.append(alphabet[Int(n >> 6 & 63)])
      out.append(alphabet[Int(n & 63)])
      i += 3
    }
    let rest = bytes.count - i
    if rest > 0 {
      var n = UInt32(bytes[i]) << 16
      if rest == 2 { n |= UInt32(bytes[i + 1]) << 8 }
      out.append(alphabet[Int(n >> 18 & 63)])
      out.append(alphabet[Int(n >> 12 & 63)])
      out.append(rest == 2 ? alphabet[Int(n >> 6 & 63)] : UInt8(ascii: "="))
      out.append(UInt8(ascii: "="))
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// Decodes; on error returns the offset of the first bad byte (Go's CorruptInputError).
  /// Go ignores `\r` and `\n`.
  static func decode(_ text: [UInt8]) -> Result<[UInt8], CorruptInput> {
    var values: [UInt8] = []
    var positions: [Int] = []
    var padding = 0
    for (offset, byte) in text.enumerated() {
      if byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\n") { continue }
      if byte == UInt8(ascii: "=") {
        padding += 1
        positions.append(offset)
        continue
      }
      guard padding == 0, let value = sextet(byte) else { return .failure(CorruptInput(offset: offset)) }
      values.append(UInt8(value))
      positions.append(offset)
    }
    let total = values.count + padding
    guard total % 4 == 0, padding <= 2, padding == 0 || values.count % 4 + padding == 4 else {
      let offset = total % 4 == 0 ? (positions.last ?? 0) : text.count
      return .failure(CorruptInput(offset: offset))
    }
    var out: [UInt8] = []
    var i = 0
    while i < values.count {
      let chunk = values[i..<min(i + 4, values.count)]
      var n: UInt32 = 0
      for (k, v) in chunk.enumerated() { n |= UInt32(v) << UInt32(18 - 6 * k) }
      out.append(UInt8(n >> 16 & 0xFF))
      if chunk.count > 2 { out.append(UInt8(n >> 8 & 0xFF)) }
      if chunk.count > 3 { out.append(UInt8(n & 0xFF)) }
      i += 4
    }
    return .success(out)
  }

  /// The 6-bit value of an alphabet byte.
  private static func sextet(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "A")...UInt8(ascii: "Z"): return byte - UInt8(ascii: "A")
    case UInt8(ascii: "a")...UInt8(ascii: "z"): return byte - UInt8(ascii: "a") + 26
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0") + 52
    case UInt8(ascii: "+"): return 62
    case UInt8(ascii: "/"): return 63
    default: return nil
    }
  }

  struct CorruptInput: Error {
    var offset: Int
  }
}
