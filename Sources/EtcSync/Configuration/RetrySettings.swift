import EtcdClient

/// How a mapping whose write failed for a reason that may pass (a full or read-only disk, a
/// busy target, a failing `check`) is tried again: after `min`, then twice as long each
/// time, never more than `max` apart, until it succeeds.
///
/// The cap bounds how long files stay behind once the fault ends: with the default, at most
/// 5 s after the disk has room again, without waiting for another change in etcd.
public struct RetrySettings: Sendable, Equatable {
  /// The first delay.
  public var min: Duration
  /// The longest delay between two attempts; at least `min`.
  public var max: Duration

  /// The default: 1 s, doubling, at most 5 s.
  public static let standard = RetrySettings(min: .seconds(1), max: .seconds(5))

  /// Retries after `min`, doubling up to `max` (by default 5 s, or `min` when that is longer).
  public init(min: Duration, max: Duration? = nil) {
    self.min = min
    self.max = max ?? Swift.max(min, Self.defaultMax)
  }

  /// The `max` of a `retry` that gives none.
  static let defaultMax: Duration = .seconds(5)

  /// The delay before attempt `attempt + 1` (`attempt` ≥ 1 failures so far): `min`, `2·min`,
  /// `4·min` … capped at `max`.
  public func delay(afterFailures attempt: Int) -> Duration {
    Backoff(initial: self.min, maximum: self.max, jitter: 0).delay(afterFailures: attempt)
  }
}

extension RetrySettings {
  /// `{min: 1s, max: 5s}` (either may be left out: `min` defaults to 1 s, or `max` when that
  /// is shorter; `max` to 5 s, or `min` when that is longer), or the string form `"1s:5s"`.
  init(decoding node: ConfigNode) throws(ConfigurationError) {
    var minimum: Duration?
    var maximum: Duration?
    var maxNode = node
    if node.isScalar {
      let text = try node.string()
      let parts = text.split(separator: ":", omittingEmptySubsequences: false)
      guard parts.count <= 2 else { throw node.invalid("{min: 1s, max: 5s} or \"1s:5s\"") }
      do {
        minimum = try GoDuration.parse(String(parts[0]))
        if parts.count == 2 { maximum = try GoDuration.parse(String(parts[1])) }
      } catch {
        throw node.error(.invalidValue, "expected {min: 1s, max: 5s} or \"1s:5s\": \(error.message)")
      }
      guard minimum! > .zero, maximum.map({ $0 > .zero }) ?? true else {
        throw node.error(.invalidValue, "expected positive durations such as \"1s:5s\", got \"\(text)\"")
      }
    } else {
      let map = try node.keyed(["min", "max"])
      minimum = try map["min"]?.positiveDuration()
      if let node = map["max"] {
        maximum = try node.positiveDuration()
        maxNode = node
      }
    }
    let min = minimum ?? Swift.min(Self.standard.min, maximum ?? Self.standard.min)
    self.init(min: min, max: maximum)
    guard self.min <= self.max else {
      throw maxNode.error(
        .invalidValue,
        "max (\(GoDuration.format(self.max))) must not be less than min (\(GoDuration.format(self.min)))")
    }
  }
}
