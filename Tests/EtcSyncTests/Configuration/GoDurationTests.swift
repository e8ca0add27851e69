import EtcSync
import Testing

@Suite("Go-style durations")
struct GoDurationTests {
  @Test(
    "valid durations parse",
    arguments: [
      ("0", Duration.zero),
      ("0s", .zero),
      ("10ns", .nanoseconds(10)),
      ("500us", .microseconds(500)),
      ("500µs", .microseconds(500)),
      ("500μs", .microseconds(500)),
      ("200ms", .milliseconds(200)),
      ("1.25ms", .microseconds(1250)),
      ("2s", .seconds(2)),
      ("1.5s", .milliseconds(1500)),
      (".5s", .milliseconds(500)),
      ("+5s", .seconds(5)),
      ("1m30s", .seconds(90)),
      ("2h45m", .seconds(2 * 3600 + 45 * 60)),
      ("1h", .seconds(3600)),
      ("1h2m3s4ms", .seconds(3723) + .milliseconds(4)),
    ])
  func parses(text: String, expected: Duration) throws {
    #expect(try GoDuration.parse(text) == expected)
  }

  @Test(
    "invalid durations say why",
    arguments: [
      ("", "an empty string is not a duration"),
      ("5", "\"5\" has no unit; write it with one, such as \"5s\" or \"5ms\""),
      ("1.5", "\"1.5\" has no unit; write it with one, such as \"1.5s\" or \"1.5ms\""),
      ("-1s", "\"-1s\" is negative; a duration must be 0 or more"),
      ("5sec", "\"5sec\": unknown unit \"sec\"; use ns, us, ms, s, m or h"),
      ("1 s", "\"1 s\": unknown unit \" s\"; use ns, us, ms, s, m or h"),
      ("1m5", "\"1m5\": a unit is missing after the last number"),
      ("s", "\"s\": a number is missing"),
      ("ms", "\"ms\": a number is missing"),
      ("9999999999h", "\"9999999999h\" is too large"),
      ("99999999999999999999s", "\"99999999999999999999s\" is too large"),
    ])
  func refuses(text: String, message: String) {
    #expect(throws: DurationParseError(message)) { try GoDuration.parse(text) }
  }

  @Test(
    "durations format the way Go prints them",
    arguments: [
      (Duration.zero, "0s"),
      (.nanoseconds(10), "10ns"),
      (.nanoseconds(2500), "2.5us"),
      (.microseconds(1500), "1.5ms"),
      (.milliseconds(200), "200ms"),
      (.milliseconds(1500), "1.5s"),
      (.seconds(90), "1m30s"),
      (.seconds(3600), "1h0m0s"),
      (.seconds(3723) + .milliseconds(4), "1h2m3.004s"),
    ])
  func formats(duration: Duration, text: String) throws {
    #expect(GoDuration.format(duration) == text)
    #expect(try GoDuration.parse(text) == duration)
  }
}
