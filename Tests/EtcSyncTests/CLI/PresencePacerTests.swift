@testable import EtcSync
import Testing

/// ``PresencePacer``: revision changes and answers to status requests are each limited to one
/// put per interval, counted apart, so a put for a revision change never delays an answer.
/// The tests pass the instants; no clock is read for an assertion.
@Suite("Presence pacing")
struct PresencePacerTests {
  let start = ContinuousClock.now
  let second = Duration.seconds(1)

  @Test("an answer right after a put for a revision change goes at once")
  func answerAfterRevisionPut() {
    var pacer = PresencePacer(interval: second)
    pacer.put(at: start, answering: false)
    let soon = start + .milliseconds(100)
    #expect(pacer.decide(urgent: false, answering: true, at: soon) == .now)
    // A revision change alone still waits out the second.
    #expect(pacer.decide(urgent: false, answering: false, at: soon) == .at(start + second))
  }

  @Test("at most one answer per interval: a second request within it waits for the interval's end")
  func answersAreLimited() {
    var pacer = PresencePacer(interval: second)
    pacer.put(at: start, answering: true)
    #expect(pacer.decide(urgent: false, answering: true, at: start + .milliseconds(300)) == .at(start + second))
    #expect(pacer.decide(urgent: false, answering: true, at: start + second) == .now)
    // An answer counts as a put: the revision change waits too.
    #expect(pacer.decide(urgent: false, answering: false, at: start + .milliseconds(300)) == .at(start + second))
  }

  @Test("the first put of each kind goes at once, and an error (urgent) always does")
  func firstAndUrgent() {
    var pacer = PresencePacer(interval: second)
    #expect(pacer.decide(urgent: false, answering: false, at: start) == .now)
    #expect(pacer.decide(urgent: false, answering: true, at: start) == .now)
    pacer.put(at: start, answering: true)
    #expect(pacer.decide(urgent: true, answering: false, at: start) == .now)
    #expect(pacer.decide(urgent: true, answering: true, at: start) == .now)
  }

  @Test("a put that answered nothing leaves the answer budget alone")
  func answerBudgetIsItsOwn() {
    var pacer = PresencePacer(interval: second)
    pacer.put(at: start, answering: true)
    let later = start + .milliseconds(1500)
    pacer.put(at: later, answering: false)
    #expect(pacer.lastAnswer == start && pacer.lastPut == later)
    #expect(pacer.decide(urgent: false, answering: true, at: later + .milliseconds(1)) == .now)
    #expect(pacer.decide(urgent: false, answering: false, at: later + .milliseconds(1)) == .at(later + second))
  }
}
