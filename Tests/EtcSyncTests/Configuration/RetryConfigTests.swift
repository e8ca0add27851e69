import EtcSync
import Foundation
import Testing

/// A mapping's `retry: {min, max}`: parsed like `wait`, with file:line errors for bad values.
@Suite("Configuration: retry")
struct RetryConfigTests {
  @Test(
    "forms of retry",
    arguments: [
      ("", RetrySettings(min: .seconds(1), max: .seconds(5))),
      ("retry: {min: 500ms, max: 2s}", RetrySettings(min: .milliseconds(500), max: .seconds(2))),
      ("retry: {max: 2s}", RetrySettings(min: .seconds(1), max: .seconds(2))),
      ("retry: {max: 300ms}", RetrySettings(min: .milliseconds(300), max: .milliseconds(300))),
      ("retry: {min: 10s}", RetrySettings(min: .seconds(10), max: .seconds(10))),
      ("retry: {min: 2s}", RetrySettings(min: .seconds(2), max: .seconds(5))),
      ("retry: \"250ms:1s\"", RetrySettings(min: .milliseconds(250), max: .seconds(1))),
      ("retry: 2s", RetrySettings(min: .seconds(2), max: .seconds(5))),
    ])
  func forms(line: String, expected: RetrySettings) throws {
    let configuration = try loadConfiguration(yamlWithOneMapping("name: a\nkey: /a\ndest: /srv/a\n" + line))
    #expect(configuration.mappings[0].retry == expected)
  }

  @Test(
    "invalid retry values",
    arguments: [
      ("retry: {min: 2s, max: 1s}", "retry.max", "max (1s) must not be less than min (2s)"),
      ("retry: {min: 0s}", "retry.min", "expected a duration above 0s such as \"5s\", got \"0s\""),
      ("retry: {max: 0s}", "retry.max", "expected a duration above 0s such as \"5s\", got \"0s\""),
      ("retry: \"1s:2s:3s\"", "retry", "expected {min: 1s, max: 5s} or \"1s:5s\", got \"1s:2s:3s\""),
      ("retry: \"0s:1s\"", "retry", "expected positive durations such as \"1s:5s\", got \"0s:1s\""),
    ])
  func invalid(line: String, field: String, message: String) throws {
    let error = try #require(loadConfigurationError(yamlWithOneMapping("name: a\nkey: /a\ndest: /srv/a\n" + line)))
    #expect(error.field == "mappings[0].\(field)")
    #expect(error.message == message)
  }

  @Test("a bad retry names its file, line and column")
  func location() throws {
    let error = try #require(loadConfigurationError("mappings:\n  - {name: a, key: /a, dest: /a, retry: {min: 5s, max: 2s}}\n"))
    #expect("\(error)" == "etcsync.yaml:2:56: mappings[0].retry.max: max (2s) must not be less than min (5s)")
  }
}
