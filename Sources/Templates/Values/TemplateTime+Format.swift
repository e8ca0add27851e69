/// Go's reference-time layouts (`Mon Jan 2 15:04:05 MST 2006`), as `time.Time.Format` reads them.
extension TemplateTime {
  private static let longMonths = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
  ]
  private static let longDays = [
    "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
  ]

  /// Formats the time with a Go layout string.
  public func format(_ layout: String) -> String {
    let f = fields
    var out: [UInt8] = []
    let bytes = Array(layout.utf8)
    var i = 0
    while i < bytes.count {
      if let (length, text) = chunk(bytes, at: i, f) {
        out.append(contentsOf: text.utf8)
        i += length
      } else {
        out.append(bytes[i])
        i += 1
      }
    }
    return String(decoding: out, as: UTF8.self)
  }

  private func has(_ bytes: [UInt8], _ i: Int, _ word: String) -> Bool {
    let w = Array(word.utf8)
    return i + w.count <= bytes.count && Array(bytes[i..<(i + w.count)]) == w
  }

  private func pad(_ value: Int, _ width: Int, _ fill: Character = "0") -> String {
    let s = String(value)
    return s.count >= width ? s : String(repeating: fill, count: width - s.count) + s
  }

  /// The layout element at `i`, as (length in the layout, formatted text), or nil for a literal byte.
  private func chunk(_ b: [UInt8], at i: Int, _ f: CalendarFields) -> (Int, String)? {
    let months = Self.longMonths
    let days = Self.longDays
    switch b[i] {
    case UInt8(ascii: "J"):
      if has(b, i, "January") { return (7, months[f.month - 1]) }
      if has(b, i, "Jan") { return (3, String(months[f.month - 1].prefix(3))) }
    case UInt8(ascii: "M"):
      if has(b, i, "Monday") { return (6, days[f.weekday]) }
      if has(b, i, "Mon") { return (3, String(days[f.weekday].prefix(3))) }
      if has(b, i, "MST") { return (3, zoneName(f)) }
    case UInt8(ascii: "0"):
      if has(b, i, "002") { return (3, pad(f.yearDay, 3)) }
      if i + 1 < b.count, (UInt8(ascii: "1")...UInt8(ascii: "6")).contains(b[i + 1]) {
        let values = [f.month, f.day, (f.hour + 11) % 12 + 1, f.minute, f.second, f.year % 100]
        return (2, pad(values[Int(b[i + 1] - UInt8(ascii: "1"))], 2))
      }
    case UInt8(ascii: "1"):
      if has(b, i, "15") { return (2, pad(f.hour, 2)) }
      return (1, String(f.month))
    case UInt8(ascii: "2"):
      if has(b, i, "2006") { return (4, pad(f.year, 4)) }
      return (1, String(f.day))
    case UInt8(ascii: "_"):
      if has(b, i, "_2006") { return (5, "_" + pad(f.year, 4)) }
      if has(b, i, "__2") { return (3, pad(f.yearDay, 3, " ")) }
      if has(b, i, "_2") { return (2, pad(f.day, 2, " ")) }
    case UInt8(ascii: "3"): return (1, String((f.hour + 11) % 12 + 1))
    case UInt8(ascii: "4"): return (1, String(f.minute))
    case UInt8(ascii: "5"): return (1, String(f.second))
    case UInt8(ascii: "P"): if has(b, i, "PM") { return (2, f.hour >= 12 ? "PM" : "AM") }
    case UInt8(ascii: "p"): if has(b, i, "pm") { return (2, f.hour >= 12 ? "pm" : "am") }
    case UInt8(ascii: "-"), UInt8(ascii: "Z"):
      return zoneChunk(b, at: i, f)
    case UInt8(ascii: "."), UInt8(ascii: ","):
      return fractionChunk(b, at: i)
    default:
      break
    }
    return nil
  }

  private func zoneName(_ f: CalendarFields) -> String {
    if !f.zone.isEmpty { return f.zone }
    return offsetText(f.offset, colons: false, seconds: false, hoursOnly: false)
  }

  private func zoneChunk(_ b: [UInt8], at i: Int, _ f: CalendarFields) -> (Int, String)? {
    let isZ = b[i] == UInt8(ascii: "Z")
    let forms: [(String, Bool, Bool, Bool)] = [
      ("070000", false, true, false), ("07:00:00", true, true, false), ("0700", false, false, false),
      ("07:00", true, false, false), ("07", false, false, true),
    ]
    for (tail, colons, seconds, hoursOnly) in forms where has(b, i + 1, tail) {
      if isZ && f.offset == 0 { return (tail.utf8.count + 1, "Z") }
      return (tail.utf8.count + 1, offsetText(f.offset, colons: colons, seconds: seconds, hoursOnly: hoursOnly))
    }
    return nil
  }

  private func offsetText(_ offset: Int, colons: Bool, seconds: Bool, hoursOnly: Bool) -> String {
    let sign = offset < 0 ? "-" : "+"
    let total = abs(offset)
    var text = sign + pad(total / 3600, 2)
    if hoursOnly { return text }
    text += (colons ? ":" : "") + pad(total / 60 % 60, 2)
    if seconds { text += (colons ? ":" : "") + pad(total % 60, 2) }
    return text
  }

  /// `.000` (fixed digits) and `.999` (trailing zeros dropped) fractional seconds.
  private func fractionChunk(_ b: [UInt8], at i: Int) -> (Int, String)? {
    guard i + 1 < b.count, b[i + 1] == UInt8(ascii: "0") || b[i + 1] == UInt8(ascii: "9") else {
      return nil
    }
    let digit = b[i + 1]
    var j = i + 1
    while j < b.count, b[j] == digit { j += 1 }
    if j < b.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b[j]) { return nil }
    let count = min(j - i - 1, 9)
    var digits = Array(pad(Int(nanoseconds), 9).utf8.prefix(count))
    let separator = String(UnicodeScalar(b[i]))
    if digit == UInt8(ascii: "9") {
      while digits.last == UInt8(ascii: "0") { digits.removeLast() }
      if digits.isEmpty { return (j - i, "") }
    }
    return (j - i, separator + String(decoding: digits, as: UTF8.self))
  }
}
