/// Durations written the way Go's `time.ParseDuration` reads them: `200ms`, `2s`, `1m30s`,
/// `1.5s`, `500us` (or `µs`), `1h`.
///
/// A bare number other than `0` is refused, so `timeout: 5` cannot silently mean five
/// nanoseconds or five seconds. Negative durations are refused too: no setting needs one.
/// Used for every duration in the configuration file, the environment and the flags.
public enum GoDuration {
  /// The units, longest spelling first where one is a prefix of another.
  private static let units: [(name: String, nanoseconds: Int64)] = [
    ("ns", 1), ("us", 1_000), ("µs", 1_000), ("μs", 1_000), ("ms", 1_000_000),
    ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000),
  ]

  /// Parses a duration such as `1m30s`.
  public static func parse(_ text: String) throws(DurationParseError) -> Duration {
    var rest = Substring(text)
    guard !rest.isEmpty else { throw DurationParseError("an empty string is not a duration") }
    if rest.first == "-" {
      throw DurationParseError("\"\(text)\" is negative; a duration must be 0 or more")
    }
    if rest.first == "+" { rest = rest.dropFirst() }
    if rest == "0" { return .zero }
    if !rest.isEmpty, rest.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }) {
      throw DurationParseError(
        "\"\(text)\" has no unit; write it with one, such as \"\(rest)s\" or \"\(rest)ms\"")
    }
    var total: Int64 = 0
    repeat {
      let (whole, fraction, digits) = try self.number(&rest, in: text)
      let unitText = rest.prefix { !($0.isASCII && ($0.isNumber || $0 == ".")) }
      rest = rest.dropFirst(unitText.count)
      guard !unitText.isEmpty else {
        throw DurationParseError("\"\(text)\": a unit is missing after the last number")
      }
      guard let unit = self.units.first(where: { $0.name == unitText })?.nanoseconds else {
        throw DurationParseError(
          "\"\(text)\": unknown unit \"\(unitText)\"; use ns, us, ms, s, m or h")
      }
      guard digits > 0 else { throw DurationParseError("\"\(text)\": a number is missing") }
      total = try self.add(whole: whole, fraction: fraction, unit: unit, to: total, in: text)
    } while !rest.isEmpty
    return .nanoseconds(total)
  }

  /// Reads `123`, `1.5` or `.5`; returns the whole part, the fraction's value and how many
  /// digits there were in all.
  private static func number(
    _ rest: inout Substring, in text: String
  ) throws(DurationParseError) -> (Int64, Double, Int) {
    var whole: Int64 = 0
    var digits = 0
    while let c = rest.first, let d = c.wholeNumberValue, c.isASCII {
      let (m, o1) = whole.multipliedReportingOverflow(by: 10)
      let (s, o2) = m.addingReportingOverflow(Int64(d))
      guard !o1, !o2 else { throw DurationParseError("\"\(text)\" is too large") }
      whole = s
      digits += 1
      rest = rest.dropFirst()
    }
    var fraction = 0.0
    if rest.first == "." {
      rest = rest.dropFirst()
      var scale = 1.0
      while let c = rest.first, let d = c.wholeNumberValue, c.isASCII {
        scale /= 10
        fraction += Double(d) * scale
        digits += 1
        rest = rest.dropFirst()
      }
    }
    return (whole, fraction, digits)
  }

  private static func add(
    whole: Int64, fraction: Double, unit: Int64, to total: Int64, in text: String
  ) throws(DurationParseError) -> Int64 {
    let (scaled, o1) = whole.multipliedReportingOverflow(by: unit)
    let part = (fraction * Double(unit)).rounded()
    let (withFraction, o2) = scaled.addingReportingOverflow(Int64(part))
    let (sum, o3) = total.addingReportingOverflow(withFraction)
    guard !o1, !o2, !o3 else { throw DurationParseError("\"\(text)\" is too large") }
    return sum
  }

  /// Formats a duration the way Go prints one: `0s`, `200ms`, `1.5s`, `1m30s`, `2h0m0s`.
  public static func format(_ duration: Duration) -> String {
    let (seconds, attoseconds) = duration.components
    guard seconds >= 0, attoseconds >= 0 else { return "-" + self.format(.zero - duration) }
    let nanos = attoseconds / 1_000_000_000
    if seconds == 0 {
      if nanos == 0 { return "0s" }
      if nanos < 1_000 { return "\(nanos)ns" }
      if nanos < 1_000_000 { return self.decimal(nanos, scale: 1_000) + "us" }
      return self.decimal(nanos, scale: 1_000_000) + "ms"
    }
    let secondsText = self.decimal(seconds % 60 * 1_000_000_000 + nanos, scale: 1_000_000_000) + "s"
    let minutes = seconds / 60
    if minutes == 0 { return secondsText }
    if minutes < 60 { return "\(minutes)m" + secondsText }
    return "\(minutes / 60)h\(minutes % 60)m" + secondsText
  }

  /// `value / scale` with the fraction's trailing zeros dropped.
  private static func decimal(_ value: Int64, scale: Int64) -> String {
    let whole = value / scale
    var fraction = value % scale
    guard fraction != 0 else { return "\(whole)" }
    var width = String(scale).count - 1
    while fraction % 10 == 0 {
      fraction /= 10
      width -= 1
    }
    let digits = String(fraction)
    return "\(whole)." + String(repeating: "0", count: width - digits.count) + digits
  }
}

/// Why a duration string could not be read; the message quotes the text and says what a
/// duration looks like.
public struct DurationParseError: Error, Sendable, Hashable, CustomStringConvertible {
  /// The explanation, without a field name: callers add where the text came from.
  public var message: String

  /// Creates an error with its explanation.
  public init(_ message: String) { self.message = message }

  public var description: String { self.message }
}
