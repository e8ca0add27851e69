/// When ``Presence`` puts its key: at once for an error that starts or ends (and the first
/// report of an agent generation), at most once per interval for a change of the applied
/// revision, and at most once per interval for answers to status requests, counted apart.
///
/// Answers have a budget of their own so that an agent that has just put its record for a
/// revision change still answers a fresh `status --wait-revision` at once, instead of
/// waiting out the rest of the second. A pure value: the caller passes the time, so tests
/// need no clock.
struct PresencePacer: Sendable {
  /// When a put should happen.
  enum Decision: Equatable, Sendable {
    /// Put now.
    case now
    /// Put no earlier than this instant (one delayed put carries every change until then).
    case at(ContinuousClock.Instant)
  }

  /// The shortest time between two puts for revision changes, and between two answers.
  let interval: Duration
  /// The last put, whatever it carried.
  private(set) var lastPut: ContinuousClock.Instant?
  /// The last put that answered a status request.
  private(set) var lastAnswer: ContinuousClock.Instant?

  init(interval: Duration) {
    self.interval = interval
  }

  /// When to put a record whose change is `urgent` (an error started or ended, a new
  /// generation), `answering` a status request, or neither (the applied revision moved).
  func decide(urgent: Bool, answering: Bool, at now: ContinuousClock.Instant) -> Decision {
    if urgent { return .now }
    let last = answering ? self.lastAnswer : self.lastPut
    guard let last, now - last < self.interval else { return .now }
    return .at(last + self.interval)
  }

  /// Records a put made at `now`; `answering` says it carried an answer to a status request.
  mutating func put(at now: ContinuousClock.Instant, answering: Bool) {
    self.lastPut = now
    if answering { self.lastAnswer = now }
  }
}
