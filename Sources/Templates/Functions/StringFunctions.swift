/// confd's string and path functions (Go's strings and path packages), plus trimSpace,
/// indent and default. The functions that can grow a string (`join`, `replace`, `indent`)
/// compute the result's size first, without overflow, and fail past `maxSize` bytes.
enum StringFunctions {
  static func call(_ function: Builtin, _ a: [TemplateValue], maxSize: Int = .max) throws(FunctionFailure)
    -> TemplateValue
  {
    switch function {
    case .base: return .string(GoPath.base(try string(a[0])))
    case .dir: return .string(GoPath.dir(try string(a[0])))
    case .split: return .list(split(try string(a[0]), separator: try string(a[1])).map { .string($0) })
    case .join:
      let parts = try stringList(a[0])
      let separator = try string(a[1])
      var size: Int? = Limits.size(max(0, parts.count - 1), times: separator.utf8.count)
      for part in parts {
        guard let total = size else { break }
        size = Limits.size(1, times: total, plus: part.utf8.count)
      }
      guard let size, size <= maxSize else { throw .tooLarge(limit: maxSize) }
      return .string(parts.joined(separator: separator))
    case .toUpper: return .string(mapCase(try string(a[0]), upper: true))
    case .toLower: return .string(mapCase(try string(a[0]), upper: false))
    case .contains: return .bool(contains(try string(a[0]), try string(a[1])))
    case .replace:
      let text = try string(a[0])
      let old = try string(a[1])
      let new = try string(a[2])
      let count = try integer(a[3])
      guard let size = replacedSize(text, old, new, count: count), size <= maxSize else {
        throw .tooLarge(limit: maxSize)
      }
      return .string(replace(text, old, new, count: count))
    case .trimSuffix:
      let text = try string(a[0])
      let suffix = try string(a[1])
      guard !suffix.isEmpty, text.utf8.count >= suffix.utf8.count,
        text.utf8.suffix(suffix.utf8.count).elementsEqual(suffix.utf8)
      else { return .string(text) }
      return .string(String(decoding: text.utf8.dropLast(suffix.utf8.count), as: UTF8.self))
    case .trimSpace: return .string(trimSpace(try string(a[0])))
    case .indent: return .string(try indent(try integer(a[0]), try string(a[1]), maxSize: maxSize))
    case .default: return a.count < 2 || isEmpty(a[1]) ? a[0] : a[1]
    default: preconditionFailure("not a string function: \(function)")
    }
  }

  /// Go's strings.Split: an empty separator splits after each character.
  static func split(_ text: String, separator: String) -> [String] {
    if separator.isEmpty { return text.unicodeScalars.map { String($0) } }
    let t = Array(text.utf8)
    let s = Array(separator.utf8)
    var parts: [String] = []
    var start = 0
    var i = 0
    while i + s.count <= t.count {
      if t[i] == s[0], Array(t[i..<(i + s.count)]) == s {
        parts.append(String(decoding: t[start..<i], as: UTF8.self))
        i += s.count
        start = i
      } else {
        i += 1
      }
    }
    parts.append(String(decoding: t[start...], as: UTF8.self))
    return parts
  }

  /// Go's strings.Contains, byte-wise.
  static func contains(_ text: String, _ part: String) -> Bool {
    if part.isEmpty { return true }
    let t = Array(text.utf8)
    let p = Array(part.utf8)
    guard p.count <= t.count else { return false }
    for i in 0...(t.count - p.count) where t[i] == p[0] && Array(t[i..<(i + p.count)]) == p {
      return true
    }
    return false
  }

  /// The size in bytes of `replace`'s result, or nil when it does not fit in an `Int`.
  static func replacedSize(_ text: String, _ old: String, _ new: String, count: Int) -> Int? {
    let length = text.utf8.count
    if count == 0 || old.bytesEqual(new) { return length }
    let possible: Int
    if old.isEmpty {
      possible = text.unicodeScalars.count + 1
    } else {
      possible = split(text, separator: old).count - 1
    }
    let replaced = count < 0 ? possible : min(count, possible)
    // Non-overlapping matches: replaced * old.count <= length.
    return Limits.size(replaced, times: new.utf8.count, plus: length - replaced * old.utf8.count)
  }

  /// Go's strings.Replace: the first `count` non-overlapping instances (all if negative).
  static func replace(_ text: String, _ old: String, _ new: String, count: Int) -> String {
    if count == 0 || old.bytesEqual(new) { return text }
    if old.isEmpty {
      // Go inserts `new` before each character and at the end.
      var out = ""
      var done = 0
      for scalar in text.unicodeScalars {
        if count < 0 || done < count {
          out += new
          done += 1
        }
        out.unicodeScalars.append(scalar)
      }
      if count < 0 || done < count { out += new }
      return out
    }
    var parts = split(text, separator: old)
    if count > 0, parts.count - 1 > count {
      let tail = parts[count...].joined(separator: old)
      parts = Array(parts[..<count]) + [tail]
    }
    return parts.joined(separator: new)
  }

  /// ASCII letters change directly; other scalars use their simple case mapping when it is
  /// one scalar (Go maps rune by rune).
  static func mapCase(_ text: String, upper: Bool) -> String {
    var out = String.UnicodeScalarView()
    for scalar in text.unicodeScalars {
      if scalar.isASCII {
        let v = scalar.value
        if upper, v >= 0x61, v <= 0x7A {
          out.append(Unicode.Scalar(v - 32)!)
        } else if !upper, v >= 0x41, v <= 0x5A {
          out.append(Unicode.Scalar(v + 32)!)
        } else {
          out.append(scalar)
        }
        continue
      }
      let mapped = upper ? scalar.properties.uppercaseMapping : scalar.properties.lowercaseMapping
      if mapped.unicodeScalars.count == 1 {
        out.append(contentsOf: mapped.unicodeScalars)
      } else {
        out.append(scalar)
      }
    }
    return String(out)
  }

  /// Go's strings.TrimSpace: Unicode white space at both ends.
  static func trimSpace(_ text: String) -> String {
    let scalars = text.unicodeScalars
    guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
    let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
    return String(scalars[first...last])
  }

  /// consul-template's indent: prefix every non-empty line with `spaces` spaces. At most
  /// ``Limits/indentWidth`` spaces, and a result of at most `maxSize` bytes.
  static func indent(_ spaces: Int, _ text: String, maxSize: Int = .max) throws(FunctionFailure) -> String {
    guard spaces >= 0 else { throw .call("indent value must be a positive integer") }
    guard spaces <= Limits.indentWidth else {
      throw .call("indent value \(spaces) is larger than \(Limits.indentWidth)")
    }
    var lines = 0
    var atStart = true
    for byte in text.utf8 {
      if atStart, byte != UInt8(ascii: "\n") { lines += 1 }
      atStart = byte == UInt8(ascii: "\n")
    }
    guard let size = Limits.size(lines, times: spaces, plus: text.utf8.count), size <= maxSize else {
      throw .tooLarge(limit: maxSize)
    }
    let pad = Array(repeating: UInt8(ascii: " "), count: spaces)
    var out: [UInt8] = []
    out.reserveCapacity(size)
    var atLineStart = true
    for byte in text.utf8 {
      if atLineStart, byte != UInt8(ascii: "\n") { out.append(contentsOf: pad) }
      out.append(byte)
      atLineStart = byte == UInt8(ascii: "\n")
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// sprig's notion of empty, used by `default`: nil, false, 0, "", and empty collections.
  static func isEmpty(_ value: TemplateValue) -> Bool {
    !value.isTrue
  }
}
