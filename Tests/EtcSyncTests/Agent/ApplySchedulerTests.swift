import Testing

import EtcdTestSupport

@testable import EtcSync

/// The daemon's scheduling rules as plain functions of a fake clock: no etcd, no files, no
/// sleeping. Each `t(ms)` is an instant that many milliseconds after an arbitrary origin.
@Suite struct ApplySchedulerTests {
  typealias Instant = ContinuousClock.Instant
  let origin = ContinuousClock.now
  func t(_ ms: Int) -> Instant { self.origin + .milliseconds(ms) }

  func scheduler(_ policies: [String: ApplyScheduler.Policy]) -> ApplyScheduler {
    ApplyScheduler(policies.sorted { $0.key < $1.key }.map { (name: $0.key, policy: $0.value) })
  }

  @Test func anIsolatedChangeIsDueAtOnce() {
    var scheduler = self.scheduler(["a": .init(), "b": .init()])
    scheduler.changed(["a"], at: self.t(0))
    let decision = scheduler.due(now: self.t(0), queued: 0)
    #expect(decision == .init(due: ["a"], wakeAt: nil))
    #expect(!scheduler.hasPending)
    #expect(scheduler.takeApplyingSince("a") == self.t(0))
    #expect(scheduler.takeApplyingSince("a") == nil)
  }

  @Test func queuedInputDefersUntilAbsorbedOrTheDefaultMaximum() {
    var scheduler = self.scheduler(["a": .init()])
    scheduler.changed(["a"], at: self.t(0))
    #expect(scheduler.due(now: self.t(0), queued: 3) == .init(due: [], wakeAt: self.t(1_000)))
    #expect(scheduler.isPending("a"))
    // Sustained load: still applied once the default maximum delay has passed.
    scheduler.changed(["a"], at: self.t(999))
    #expect(scheduler.due(now: self.t(1_000), queued: 5).due == ["a"])
  }

  @Test func waitCoalescesUntilQuietOrMax() {
    var scheduler = self.scheduler(["a": .init(wait: WaitSettings(min: .milliseconds(100), max: .milliseconds(400)))])
    scheduler.changed(["a"], at: self.t(0))
    #expect(scheduler.due(now: self.t(0), queued: 0) == .init(due: [], wakeAt: self.t(100)))
    scheduler.changed(["a"], at: self.t(60))
    #expect(scheduler.due(now: self.t(100), queued: 0) == .init(due: [], wakeAt: self.t(160)))
    // Changes every 60 ms never leave 100 ms of quiet: due at first + max.
    for ms in stride(from: 120, through: 390, by: 60) {
      scheduler.changed(["a"], at: self.t(ms))
      #expect(scheduler.due(now: self.t(ms), queued: 0).due.isEmpty)
    }
    #expect(scheduler.due(now: self.t(399), queued: 0) == .init(due: [], wakeAt: self.t(400)))
    #expect(scheduler.due(now: self.t(400), queued: 0).due == ["a"])
    #expect(scheduler.takeApplyingSince("a") == self.t(0))
  }

  /// A scheduler for one mapping, "a", whose first change (at 0 ms) was applied at once in a
  /// batch that ran until 2 ms and ended with watch responses queued: a burst has begun.
  func inABurst() -> ApplyScheduler {
    var scheduler = self.scheduler(["a": .init()])
    scheduler.changed(["a"], at: self.t(0))
    #expect(scheduler.due(now: self.t(0), queued: 0).due == ["a"])
    scheduler.batchEnded(["a"], started: self.t(0), ended: self.t(2), burst: true)
    return scheduler
  }

  @Test func aBurstIsSpacedUnlessItPauses() {
    var scheduler = self.inABurst()
    // A change 2 ms later, nothing queued: not yet (the burst is on) — at last + 4 ms.
    scheduler.changed(["a"], at: self.t(2))
    #expect(scheduler.due(now: self.t(2), queued: 0) == .init(due: [], wakeAt: self.t(6)))
    // Changes keep coming every 3 ms: due at the spacing, 20 ms after the last apply started.
    for ms in stride(from: 5, through: 17, by: 3) {
      scheduler.changed(["a"], at: self.t(ms))
      #expect(scheduler.due(now: self.t(ms), queued: 0).due.isEmpty)
    }
    #expect(scheduler.due(now: self.t(20), queued: 0).due == ["a"])
    // That batch (6 changes) ends with nothing queued: the burst goes on through the lull, so
    // changes that come within the quiet period of its end wait for it.
    scheduler.batchEnded(["a"], started: self.t(20), ended: self.t(20), burst: false)
    scheduler.changed(["a"], at: self.t(20))
    #expect(scheduler.due(now: self.t(20), queued: 0) == .init(due: [], wakeAt: self.t(24)))
    scheduler.changed(["a"], at: self.t(22))
    #expect(scheduler.due(now: self.t(22), queued: 0) == .init(due: [], wakeAt: self.t(26)))
    #expect(scheduler.due(now: self.t(26), queued: 0).due == ["a"])
    // Two changes, nothing queued: the burst still goes on.
    scheduler.batchEnded(["a"], started: self.t(26), ended: self.t(27), burst: false)
    scheduler.changed(["a"], at: self.t(28))
    #expect(scheduler.due(now: self.t(28), queued: 0) == .init(due: [], wakeAt: self.t(32)))
    #expect(scheduler.due(now: self.t(32), queued: 0).due == ["a"])
    scheduler.batchEnded(["a"], started: self.t(32), ended: self.t(33), burst: false)
    // That batch covered one change held back alone and found nothing queued: the burst is
    // over, the next change is applied at once, and so is the one after.
    scheduler.changed(["a"], at: self.t(33))
    #expect(scheduler.due(now: self.t(33), queued: 0).due == ["a"])
    scheduler.batchEnded(["a"], started: self.t(33), ended: self.t(34), burst: false)
    scheduler.changed(["a"], at: self.t(35))
    #expect(scheduler.due(now: self.t(35), queued: 0).due == ["a"])
  }

  /// Once input was queued at a batch's end, the burst goes on while the next change comes
  /// within 20 ms of that end (it was stamped after the batch). A steady trickle of
  /// changes 7 ms apart after a burst, each apply taking 2 ms, is applied change by change at
  /// once: a batch of one change held back alone ends the burst (kept on instead, the 4 ms each
  /// change waited made the next one come within 4 ms of the batch's end, for good).
  @Test func aTrickleAfterABurstIsNotHeldBack() {
    var scheduler = self.inABurst()
    // Queued at the end, stamped 10 ms after it (a slow drain): still the burst.
    scheduler.changed(["a"], at: self.t(12))
    #expect(scheduler.due(now: self.t(12), queued: 0) == .init(due: [], wakeAt: self.t(16)))
    #expect(scheduler.due(now: self.t(16), queued: 0).due == ["a"])
    scheduler.batchEnded(["a"], started: self.t(16), ended: self.t(18), burst: false)
    for ms in stride(from: 19, through: 300, by: 7) {
      scheduler.changed(["a"], at: self.t(ms))
      #expect(scheduler.due(now: self.t(ms), queued: 0).due == ["a"], "a change at \(ms) ms was held back")
      scheduler.batchEnded(["a"], started: self.t(ms), ended: self.t(ms + 2), burst: false)
    }
  }

  /// A batch of many changes that took longer than the quiet period, and ended with nothing
  /// queued, does not end the burst by itself: a change that comes within the quiet period of
  /// its end still belongs to the burst.
  @Test func aLongBatchDoesNotEndTheBurstByItself() {
    var scheduler = self.inABurst()
    for ms in 2...19 {
      scheduler.changed(["a"], at: self.t(ms))
      #expect(scheduler.due(now: self.t(ms), queued: 0).due.isEmpty)
    }
    #expect(scheduler.due(now: self.t(20), queued: 0).due == ["a"])
    // 6 ms long (a `check` command), nothing queued at its end; a change 2 ms later is held…
    var lull = scheduler
    scheduler.batchEnded(["a"], started: self.t(20), ended: self.t(26), burst: false)
    scheduler.changed(["a"], at: self.t(28))
    #expect(scheduler.due(now: self.t(28), queued: 0) == .init(due: [], wakeAt: self.t(32)))
    // …and one 4 ms later is not: the burst is over.
    lull.batchEnded(["a"], started: self.t(20), ended: self.t(26), burst: false)
    lull.changed(["a"], at: self.t(30))
    #expect(lull.due(now: self.t(30), queued: 0).due == ["a"])
  }

  /// A burst one second long is spaced 40 ms apart (1/25 of its length). Input queued at a
  /// batch's end, stamped within 20 ms of it, is still the burst; a change 20 ms or more after
  /// that end is not (what was queued may have been other ranges' responses), however far
  /// the spacing has grown.
  @Test func aGrownSpacingHoldsQueuedInputOnly() {
    var scheduler = self.inABurst()
    // A second on, another batch ends with input queued (the batches between are left out:
    // the burst's length is what counts).
    scheduler.batchEnded(["a"], started: self.t(1_004), ended: self.t(1_006), burst: true)
    #expect(ApplyScheduler.burstSpacing(after: .milliseconds(1_004)) > .milliseconds(40))
    // Stamped 15 ms after the end: held for the quiet period, then applied.
    scheduler.changed(["a"], at: self.t(1_021))
    #expect(scheduler.due(now: self.t(1_021), queued: 0) == .init(due: [], wakeAt: self.t(1_025)))
    // More changes every 2 ms keep it waiting, up to the grown spacing after the batch began.
    for ms in stride(from: 1_023, through: 1_043, by: 2) {
      scheduler.changed(["a"], at: self.t(ms))
      #expect(scheduler.due(now: self.t(ms), queued: 0).due.isEmpty, "at \(ms) ms")
    }
    #expect(scheduler.due(now: self.t(1_045), queued: 0).due == ["a"])
    scheduler.batchEnded(["a"], started: self.t(1_045), ended: self.t(1_047), burst: true)
    // Stamped 25 ms after that end: the burst is over, applied at once.
    scheduler.changed(["a"], at: self.t(1_072))
    #expect(scheduler.due(now: self.t(1_072), queued: 0).due == ["a"])
    // A new burst starts from 20 ms: changes every 2 ms are applied 20 ms after its first batch.
    scheduler.batchEnded(["a"], started: self.t(1_072), ended: self.t(1_074), burst: true)
    for ms in stride(from: 1_075, through: 1_091, by: 2) {
      scheduler.changed(["a"], at: self.t(ms))
      #expect(scheduler.due(now: self.t(ms), queued: 0).due.isEmpty, "at \(ms) ms")
    }
    #expect(scheduler.due(now: self.t(1_092), queued: 0).due == ["a"])
  }

  /// Drives one mapping through a burst: a change every `every` ms from 0 to `length` ms, after
  /// `denseStart` ms in clumps of `clump` (the watch's responses come in clumps), each apply
  /// taking `applyMs`; the
  /// agent's loop is modelled as it runs (a decision at each change and at each wake-up, the
  /// batch's `burst` flag from the changes that came during it). Returns the applies' start
  /// times, the last change, and the longest any change waited for its apply.
  func driveBurst(growing: Bool, length: Int, every: Int = 1, clump: Int = 1, denseStart: Int = 0, applyMs: Int = 2)
    -> (applies: [Int], last: Int, longestWait: Int)
  {
    var scheduler = self.scheduler(["a": .init(coalescesLongBursts: growing)])
    let changes = Array(stride(from: 0, through: length, by: every))
    // After `denseStart`, each change arrives with the last of its clump.
    let period = clump * every
    let arrivals = changes.map { $0 < denseStart ? $0 : min(length, denseStart + ($0 - denseStart) / period * period + period - every) }
    var applies: [Int] = []
    var unapplied: [Int] = []
    var longestWait = 0
    var next = 0
    var now = 0
    var wake: Int?
    var steps = 0
    while next < changes.count || wake != nil, steps < 100_000 {
      steps += 1
      // The next event: an arrival or the scheduler's wake-up, whichever comes first.
      let arrival = next < changes.count ? max(arrivals[next], now) : nil
      if let arrival, wake.map({ arrival <= $0 }) ?? true {
        now = arrival
        while next < changes.count, arrivals[next] <= now {
          scheduler.changed(["a"], at: self.t(now))
          unapplied.append(changes[next])
          next += 1
        }
      } else if let at = wake {
        now = max(at, now)
      }
      let decision = scheduler.due(now: self.t(now), queued: 0)
      wake = decision.wakeAt.map { Int((($0 - self.origin) / .milliseconds(1)).rounded(.up)) }
      guard decision.due == ["a"] else { continue }
      applies.append(now)
      longestWait = max(longestWait, unapplied.map { now - $0 }.max() ?? 0)
      unapplied = []
      // The apply takes `applyMs`; what arrived meanwhile is queued, and stamped when the
      // daemon takes it from the queue, after the batch (Agent+Daemon's `markDirty`).
      let started = now
      now += applyMs
      var queued = false
      while next < changes.count, arrivals[next] <= now {
        scheduler.changed(["a"], at: self.t(now))
        unapplied.append(changes[next])
        next += 1
        queued = true
      }
      scheduler.batchEnded(["a"], started: self.t(started), ended: self.t(now), burst: queued)
      wake = queued ? now : wake
    }
    #expect(unapplied.isEmpty && !scheduler.hasPending, "changes left unapplied: \(unapplied)")
    return (applies, changes.last ?? 0, longestWait)
  }

  /// A long burst of a mapping whose policy grows the spacing: rewritten far less often than
  /// every 20 ms, no change waiting longer than the longest spacing, the last one applied within
  /// the quiet period; an in-place tree's policy keeps the 20 ms spacing.
  @Test func aLongBurstSpacesItsRewritesFurther() {
    let grown = self.driveBurst(growing: true, length: 2_700)
    // 20 ms for its first 500 ms, then 1/25 of its length: 25 + 25 ln(2700/500) ≈ 67.
    #expect(grown.applies.count <= 75, "\(grown.applies.count) rewrites")
    #expect(grown.applies.count >= 55, "\(grown.applies.count) rewrites: spaced further than 1/25 of the burst")
    #expect(grown.longestWait <= 2_700 / ApplyScheduler.burstSpacingShare + 2, "a change waited \(grown.longestWait) ms")
    #expect(grown.applies.last! <= grown.last + 4, "last apply at \(grown.applies.last!) ms, last change at \(grown.last) ms")
    let fixed = self.driveBurst(growing: false, length: 2_700)
    #expect(fixed.applies.count >= 2_700 / 22, "\(fixed.applies.count) rewrites")
    #expect(fixed.longestWait <= 20 + 2, "a change waited \(fixed.longestWait) ms")
    #expect(fixed.applies.last! <= fixed.last + 4)
    // Applies that take longer than the spacing (a `check` command, a large tree): the changes
    // queued meanwhile are stamped after the batch, and still count as the same burst.
    let slow = self.driveBurst(growing: true, length: 2_700, applyMs: 25)
    #expect(slow.applies.count <= 75, "\(slow.applies.count) rewrites with 25 ms applies")
    #expect(slow.applies.last! <= slow.last + 25 + 4)
    // A burst of minutes is rewritten at most every 250 ms (plus the 2 ms apply).
    let long = self.driveBurst(growing: true, length: 20_000, every: 2)
    #expect(long.longestWait <= 250 + 2, "a change waited \(long.longestWait) ms")
    #expect(long.applies.count <= 25 + 25 * 2 + 20_000 / 250, "\(long.applies.count) rewrites")
  }

  /// Which mappings coalesce long bursts: all but an in-place tree (a write-back tree is one).
  @Test func longBurstsAreCoalescedExceptInAnInPlaceTree() {
    let template = Mapping(name: "t", kind: .template, prefixes: ["/a/"], template: "x", dest: "/tmp/x")
    let swapped = Mapping(name: "s", kind: .tree, prefixes: ["/a/"], dest: "/tmp/s", swap: .symlink)
    let inPlace = Mapping(name: "i", kind: .tree, prefixes: ["/a/"], dest: "/tmp/i", swap: .inPlace)
    let writeBack = Mapping(name: "w", kind: .tree, prefixes: ["/a/"], dest: "/tmp/w", writeBack: true)
    #expect(ApplyScheduler.Policy(template).coalescesLongBursts)
    #expect(ApplyScheduler.Policy(swapped).coalescesLongBursts)
    #expect(!ApplyScheduler.Policy(inPlace).coalescesLongBursts)
    #expect(!ApplyScheduler.Policy(writeBack).coalescesLongBursts)
    let waiting = Mapping(name: "w", kind: .template, prefixes: ["/a/"], template: "x", dest: "/tmp/x", wait: WaitSettings(min: .seconds(1)))
    #expect(ApplyScheduler.Policy(waiting).wait == WaitSettings(min: .seconds(1)))
  }

  /// The watch's responses come in clumps with short lulls: a batch that ends with nothing
  /// queued does not start the burst over (which applied the next clump at once, then spaced
  /// the one after from zero again), so its spacing still grows. An in-place tree's does, as
  /// before: there, each clump is applied as it comes.
  @Test func lullsInABurstDoNotStartItOver() {
    // A change every ms for 10 ms (the burst starts: input is queued when an apply ends), then
    // clumps of 3 changes every 3 ms: each apply (2 ms) ends before the next clump comes.
    let clumped = self.driveBurst(growing: true, length: 2_700, every: 1, clump: 3, denseStart: 10)
    #expect(clumped.applies.count <= 75, "\(clumped.applies.count) rewrites")
    #expect(clumped.applies.last! <= clumped.last + 4)
    // An in-place tree's burst ends at each lull, as it always did: each clump applied at once.
    let fixed = self.driveBurst(growing: false, length: 2_700, every: 1, clump: 3, denseStart: 10)
    #expect(fixed.applies.count >= 800, "\(fixed.applies.count) rewrites")
    #expect(fixed.longestWait <= 20 + 2, "a change waited \(fixed.longestWait) ms")
  }

  @Test func retriesDoubleUpToTheCapAndReportOncePerFault() {
    var scheduler = self.scheduler(["a": .init(retry: RetrySettings(min: .seconds(1), max: .seconds(5)))])
    var now = 0
    var delays: [Duration] = []
    var reported: [Bool] = []
    for attempt in 1...6 {
      let outcome = scheduler.outcome("a", failed: true, retryable: true, fault: attempt < 5 ? "ENOSPC" : "EROFS", now: self.t(now))
      guard case .scheduled(let delay, let number, let newFault) = outcome else {
        Issue.record("attempt \(attempt): \(outcome)")
        return
      }
      #expect(number == attempt)
      delays.append(delay)
      reported.append(newFault)
      let at = now + Int(delay / .milliseconds(1))
      // Not before its time, and the wake-up points at it.
      #expect(scheduler.due(now: self.t(at - 1), queued: 0) == .init(due: [], wakeAt: self.t(at)))
      #expect(scheduler.due(now: self.t(at), queued: 0).due == ["a"])
      #expect(scheduler.nextRetry == nil)
      now = at
    }
    #expect(delays == [.seconds(1), .seconds(2), .seconds(4), .seconds(5), .seconds(5), .seconds(5)])
    #expect(reported == [true, false, false, false, true, false])
    #expect(scheduler.outcome("a", failed: false, retryable: false, fault: "", now: self.t(now)) == .recovered(attempts: 6))
    #expect(scheduler.retry("a") == nil)
  }

  @Test func aFinalFailureEndsTheRetries() {
    var scheduler = self.scheduler(["a": .init()])
    _ = scheduler.outcome("a", failed: true, retryable: true, fault: "x", now: self.t(0))
    #expect(scheduler.outcome("a", failed: true, retryable: false, fault: "y", now: self.t(10)) == .none)
    #expect(scheduler.nextRetry == nil)
    #expect(scheduler.due(now: self.t(10_000), queued: 0) == .init(due: [], wakeAt: nil))
  }

  @Test func aHeldMappingWaitsWithoutAWakeUp() {
    var scheduler = self.scheduler(["a": .init(), "b": .init()])
    scheduler.changed(["a", "b"], at: self.t(0))
    #expect(scheduler.due(now: self.t(0), queued: 0, held: ["a"]) == .init(due: ["b"], wakeAt: nil))
    #expect(scheduler.isPending("a"))
    #expect(scheduler.due(now: self.t(5), queued: 0).due == ["a"])
  }

  @Test func dueListsFollowConfigurationOrder() {
    var scheduler = ApplyScheduler([("z", .init()), ("a", .init()), ("m", .init())])
    scheduler.changed(["m", "a", "z"], at: self.t(0))
    #expect(scheduler.due(now: self.t(0), queued: 0).due == ["z", "a", "m"])
  }

  @Test func unknownNamesAreIgnored() {
    var scheduler = self.scheduler(["a": .init()])
    scheduler.changed(["nope"], at: self.t(0))
    #expect(!scheduler.hasPending)
    #expect(scheduler.outcome("nope", failed: true, retryable: true, fault: "", now: self.t(0)) == .none)
  }

  /// Generated event sequences (deterministic, replayable by seed) against the rules'
  /// invariants: nothing is handed out early, every change is applied by its deadline when
  /// the driver follows the wake-ups, and a wake-up is never in the past (no busy loop).
  @Test(arguments: 0..<300) func generatedSequencesKeepTheInvariants(seed: Int) {
    var random = SplitMix64(seed: UInt64(seed))
    let waits: [WaitSettings?] = [nil, WaitSettings(min: .milliseconds(50)), WaitSettings(min: .milliseconds(10), max: .milliseconds(30))]
    var policies: [(name: String, policy: ApplyScheduler.Policy)] = []
    for index in 0..<3 {
      let wait = waits[Int(random.next() % UInt64(waits.count))]
      policies.append(("m\(index)", .init(wait: wait, retry: RetrySettings(min: .milliseconds(100), max: .milliseconds(700)))))
    }
    var scheduler = ApplyScheduler(policies)
    // What the test knows independently: each mapping's first and last unapplied change.
    var first: [String: Int] = [:]
    var last: [String: Int] = [:]
    var retryAt: [String: Int] = [:]
    var now = 0
    var wake: Int?
    /// A retry whose time has come is a change at the moment the scheduler notices it.
    func retriesDue() {
      for (name, at) in retryAt where at <= now {
        if first[name] == nil { (first[name], last[name]) = (now, now) }
        retryAt[name] = nil
      }
    }
    func check(_ decision: ApplyScheduler.Decision, queued: Int) {
      if let at = decision.wakeAt {
        let ms = Int(((at - self.origin) / .milliseconds(1)).rounded(.up))
        #expect(ms > now, "seed \(seed): a wake-up at \(ms) ms is not after now (\(now) ms)")
        wake = ms
      } else {
        wake = nil
      }
      for name in decision.due {
        let policy = policies.first { $0.name == name }!.policy
        guard let f = first[name], let l = last[name] else {
          Issue.record("seed \(seed): \(name) handed out with nothing pending")
          continue
        }
        let minimum = Int((policy.wait?.min ?? .zero) / .milliseconds(1))
        let maximum = Int((policy.wait?.max ?? ApplyScheduler.defaultMaxDelay) / .milliseconds(1))
        #expect((now >= l + minimum && queued == 0) || now >= f + maximum, "seed \(seed): \(name) handed out early at \(now) ms (first \(f), last \(l))")
        first[name] = nil
        last[name] = nil
        retryAt[name] = nil  // the outcome below replaces a retry still pending
        // The apply's outcome: one in five fails for a reason that may pass.
        let failed = random.next() % 5 == 0
        let outcome = scheduler.outcome(name, failed: failed, retryable: true, fault: "f", now: self.t(now))
        if case .scheduled(let delay, _, _) = outcome {
          #expect(delay >= policy.retry.min && delay <= policy.retry.max)
          retryAt[name] = now + Int(delay / .milliseconds(1))
        }
      }
      scheduler.batchEnded(decision.due, started: self.t(now), ended: self.t(now), burst: queued > 0)
      // The agent also wakes for the retries the batch just scheduled.
      if let at = scheduler.nextRetry {
        let ms = Int(((at - self.origin) / .milliseconds(1)).rounded(.up))
        wake = wake.map { min($0, ms) } ?? ms
      }
    }
    for _ in 0..<60 {
      now += Int(random.next() % 40)
      let name = "m\(random.next() % 3)"
      scheduler.changed([name], at: self.t(now))
      first[name] = first[name] ?? now
      last[name] = now
      let queued = Int(random.next() % 3)
      retriesDue()
      check(scheduler.due(now: self.t(now), queued: queued), queued: queued)
    }
    // Input stops: the driver follows the wake-ups only. Everything pending is applied, and
    // no later than its deadline: `wait.min` after its last change (without `wait`, the burst
    // quiet period: a burst's spacing can only make it sooner), or `wait.max` after its first.
    var steps = 0
    while let next = wake, steps < 1_000 {
      steps += 1
      now = next
      retriesDue()
      check(scheduler.due(now: self.t(now), queued: 0), queued: 0)
      for (name, l) in last {
        let wait = policies.first { $0.name == name }!.policy.wait
        let quiet = Int((wait?.min ?? ApplyScheduler.burstQuiet) / .milliseconds(1))
        let maximum = Int((wait?.max ?? ApplyScheduler.defaultMaxDelay) / .milliseconds(1))
        let deadline = min(l + quiet, first[name]! + maximum)
        #expect(now < deadline, "seed \(seed): \(name) still pending at \(now) ms, due by \(deadline) ms")
      }
      // Retries keep failing one time in five; stop feeding once nothing is pending.
      if first.isEmpty && retryAt.isEmpty { break }
    }
    #expect(first.isEmpty, "seed \(seed): never applied: \(first)")
    #expect(!scheduler.hasPending)
  }

  @Test func saveCoalescing() {
    var saves = SaveCoalescer(now: self.t(0))
    // `etcsync sync`: every change saves at once.
    let save1 = saves.recordChanged(writeBack: false, now: self.t(10))
    #expect(save1)
    saves.coalescing = true
    saves.saved(at: self.t(10))
    // The daemon: within the interval a save is owed, not made; write-back saves at once.
    let save2 = saves.recordChanged(writeBack: false, now: self.t(20))
    #expect(!save2)
    #expect(saves.dueAt == self.t(1_010))
    let save3 = saves.recordChanged(writeBack: true, now: self.t(30))
    #expect(save3)
    #expect(!saves.shouldFlush(now: self.t(500)))
    #expect(saves.shouldFlush(now: self.t(500), force: true))
    #expect(saves.shouldFlush(now: self.t(1_010)))
    saves.saved(at: self.t(1_010))
    #expect(saves.dueAt == nil)
    #expect(!saves.shouldFlush(now: self.t(5_000), force: true))
    // After the interval, the next change saves at once.
    let save4 = saves.recordChanged(writeBack: false, now: self.t(2_100))
    #expect(save4)
  }
}
