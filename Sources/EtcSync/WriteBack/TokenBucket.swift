/// A rate limit as a token bucket: it holds at most a minute's worth, and refills evenly over
/// the minute. Write-back's `keysPerMinute` and `bytesPerMinute` (``WriteBackLimits``).
struct TokenBucket: Sendable, Equatable {
  /// The most it holds: a minute's worth.
  let capacity: Double
  /// What comes back each second.
  let perSecond: Double
  private(set) var tokens: Double
  private var updated: ContinuousClock.Instant

  /// A full bucket of `perMinute`.
  init(perMinute: Int, now: ContinuousClock.Instant) {
    self.capacity = Double(max(1, perMinute))
    self.perSecond = self.capacity / 60
    self.tokens = self.capacity
    self.updated = now
  }

  /// Adds what came back since the last refill.
  mutating func refill(now: ContinuousClock.Instant) {
    guard now > self.updated else { return }
    let elapsed = now - self.updated
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    self.tokens = min(self.capacity, self.tokens + seconds * self.perSecond)
    self.updated = now
  }

  /// Whether `amount` is there now.
  func holds(_ amount: Int) -> Bool { Double(amount) <= self.tokens }

  /// Takes `amount` (check ``holds(_:)`` first).
  mutating func take(_ amount: Int) { self.tokens = max(0, self.tokens - Double(amount)) }

  /// When `amount` will be there (refilled up to `now`); nil when it never fits the bucket.
  func available(_ amount: Int, after now: ContinuousClock.Instant) -> ContinuousClock.Instant? {
    let missing = Double(amount) - self.tokens
    guard Double(amount) <= self.capacity else { return nil }
    guard missing > 0 else { return now }
    // Rounded up to the millisecond, so that the bucket holds it then.
    return now + .milliseconds(Int((missing / self.perSecond * 1000).rounded(.up)) + 1)
  }
}
