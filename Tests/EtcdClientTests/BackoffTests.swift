import EtcdClient
import Testing

@Suite struct BackoffTests {
  @Test func doublesUpToTheMaximum() {
    let backoff = Backoff(initial: .milliseconds(100), maximum: .milliseconds(700), jitter: 0)
    #expect((1...6).map { backoff.delay(afterFailures: $0) }
      == [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(700), .milliseconds(700), .milliseconds(700)])
    // Huge failure counts neither overflow nor exceed the cap.
    #expect(backoff.delay(afterFailures: Int.max) == .milliseconds(700))
    #expect(backoff.delay(afterFailures: 0) == .milliseconds(100))
  }

  @Test func jitterStaysWithinItsFractionAndResetStartsOver() {
    var backoff = Backoff(initial: .seconds(1), maximum: .seconds(4), jitter: 0.2)
    for failure in 1...50 {
      let nominal = backoff.delay(afterFailures: failure)
      let delay = backoff.next()
      #expect(delay >= nominal * 0.8 && delay <= nominal * 1.2, "failure \(failure): \(delay) vs \(nominal)")
    }
    #expect(backoff.failures == 50)
    backoff.reset()
    let first = backoff.next()
    #expect(first >= .milliseconds(800) && first <= .milliseconds(1_200))
  }

  @Test func aMaximumBelowTheInitialDelayIsTheInitialDelay() {
    #expect(Backoff(initial: .seconds(2), maximum: .seconds(1), jitter: 0).delay(afterFailures: 3) == .seconds(2))
  }
}
