/// Exponential backoff: `initial`, then twice as long after each failure, never more than
/// `maximum`, each delay spread by ±`jitter` (a fraction) so that a fleet that lost etcd at
/// once does not come back at once.
///
/// The one backoff of the package and of etcsync: the client's retried reads, the watch and
/// keep-alive streams, presence registration and a mapping's `retry: {min, max}` all use it.
public struct Backoff: Sendable, Equatable {
  /// The first delay.
  public var initial: Duration
  /// The longest delay.
  public var maximum: Duration
  /// How far each delay may stray from its nominal value, as a fraction (0.2: ±20 %).
  public var jitter: Double
  /// Failures since the last ``reset()``.
  public private(set) var failures = 0

  /// Starts at `initial`, doubling up to `maximum`, ±`jitter`.
  public init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(5), jitter: Double = 0.2) {
    self.initial = initial
    self.maximum = Swift.max(initial, maximum)
    self.jitter = Swift.min(Swift.max(jitter, 0), 1)
  }

  /// The nominal delay after `failures` failures (≥ 1): `initial`, `2·initial`, `4·initial`…
  /// capped at `maximum`, without jitter.
  public func delay(afterFailures failures: Int) -> Duration {
    var delay = self.initial
    var doublings = Swift.max(0, failures - 1)
    while doublings > 0 && delay < self.maximum {
      delay = delay * 2
      doublings -= 1
    }
    return Swift.min(delay, self.maximum)
  }

  /// Counts one more failure and returns how long to wait before the next attempt.
  public mutating func next() -> Duration {
    self.failures += 1
    let nominal = self.delay(afterFailures: self.failures)
    guard self.jitter > 0 else { return nominal }
    return nominal * Double.random(in: (1 - self.jitter)...(1 + self.jitter))
  }

  /// Forgets the failures: the next delay is `initial` again (after a success).
  public mutating func reset() { self.failures = 0 }
}
