/// When the daemon applies each mapping: quiescence (`wait: {min, max}`), burst coalescing,
/// retries of failed writes, and state-save coalescing, as a value that takes events and
/// returns decisions.
///
/// It never reads a clock and never awaits: every call gets `now`, so the rules are tested as
/// plain functions with a fake clock (`ApplySchedulerTests`), and the agent acts on the
/// decisions outside. Mapping names are configuration names, unique as Swift strings
/// (validation refuses two that compare equal), so they key its table as they are.
struct ApplyScheduler: Sendable {
  typealias Instant = ContinuousClock.Instant

  /// How one mapping is scheduled, from its configuration.
  struct Policy: Sendable, Equatable {
    /// Quiescence; nil applies as soon as the queued input is absorbed (see ``ApplyScheduler/burstSpacing``).
    var wait: WaitSettings?
    /// How a failed write that may pass is retried.
    var retry: RetrySettings
    /// Whether a burst is kept through the lulls between the watch's clumps and its rewrites
    /// spaced further apart as it goes on (see ``ApplyScheduler/batchEnded(_:started:ended:burst:)``
    /// and ``ApplyScheduler/burstSpacing(after:)``): true where one apply costs about the same
    /// whatever it covers (a template, a file, a swapped tree); false for an in-place tree,
    /// which writes one file per changed key whatever the batching, so longer batches would
    /// mostly delay the burst's final state (its burst ends at a batch that found nothing
    /// queued, and keeps 20 ms).
    var coalescesLongBursts: Bool

    init(wait: WaitSettings? = nil, retry: RetrySettings = .standard, coalescesLongBursts: Bool = true) {
      self.wait = wait
      self.retry = retry
      self.coalescesLongBursts = coalescesLongBursts
    }

    /// The policy of a configured mapping.
    init(_ mapping: Mapping) {
      let inPlaceTree = mapping.kind == .tree && mapping.swap == .inPlace
      self.init(wait: mapping.wait, retry: mapping.retry, coalescesLongBursts: !inPlaceTree)
    }
  }

  /// A failed write being retried.
  struct Retry: Sendable, Equatable {
    /// Failed attempts so far.
    var attempts: Int
    /// When the next attempt is due; nil once it has been handed out (the attempt's outcome
    /// re-arms it).
    var at: Instant?
    /// The failure as ``Agent/faultSignature(_:)`` gives it: an attempt that fails the same
    /// way is not reported again.
    var fault: String
  }

  /// Where one mapping stands.
  struct MappingSchedule: Sendable {
    let policy: Policy
    /// The first and the latest change not yet applied.
    var pending: (first: Instant, last: Instant)?
    /// How many changes arrived (calls of ``ApplyScheduler/changed(_:at:)``) since ``pending``
    /// was set.
    var pendingChanges = 0
    /// The burst the mapping is in; nil when none is on (a burst found over is cleared by the
    /// check of the next change, which always comes first).
    var burst: Burst?
    /// How many changes the apply handed out by ``ApplyScheduler/due(now:queued:held:)``
    /// covers, until its batch ends.
    var applyingChanges = 0
    /// A failed write waiting for its next attempt.
    var retry: Retry?
    /// The first pending change of the apply handed out by ``ApplyScheduler/due(now:queued:held:)``
    /// (where the propagation histogram starts).
    var applyingSince: Instant?
  }

  /// A mapping's burst (see ``ApplyScheduler/batchEnded(_:started:ended:burst:)``).
  struct Burst: Sendable {
    /// The start of the first batch that ended with watch responses queued.
    var since: Instant
    /// The mapping's last batch: when it started and ended, and whether watch responses were
    /// queued at its end.
    var lastApply: Instant
    var lastEnd: Instant
    var queued: Bool
  }

  /// What to do now: the mappings to apply (in configuration order), and when to look again
  /// (nil: only when new input arrives).
  struct Decision: Sendable, Equatable {
    var due: [String]
    var wakeAt: Instant?
  }

  /// What an apply's outcome did to the mapping's retries (for the log).
  enum RetryOutcome: Sendable, Equatable {
    /// Nothing to say: it succeeded without a retry pending, or failed for good.
    case none
    /// It succeeded after `attempts` failed ones.
    case recovered(attempts: Int)
    /// It failed and is tried again after `delay`; `newFault` when it failed otherwise than
    /// the attempt before (reported once per state change, not per attempt).
    case scheduled(delay: Duration, attempt: Int, newFault: Bool)
  }

  /// Without `wait`, a mapping applied while changes kept arriving is rewritten at most this
  /// often until they stop (not once per watch response)…
  static let burstSpacing: Duration = .milliseconds(20)
  /// …and, where the policy ``Policy/coalescesLongBursts``, at most as often as this share of
  /// the burst's length so far (a burst of 5,000 puts in 2.7 s: about 70 rewrites, not 135;
  /// in 1.6 s about 55)…
  static let burstSpacingShare = 25
  /// …up to this spacing (a burst that lasts minutes is rewritten about 4 times a second)…
  static let longestBurstSpacing: Duration = .milliseconds(250)
  /// …or as soon as no change has come for this long, so that a burst's last change is on
  /// disk a few milliseconds after it was made, however long the spacing has grown.
  static let burstQuiet: Duration = .milliseconds(4)

  /// The spacing of a burst's rewrites `length` after it began, for a policy that grows it.
  static func burstSpacing(after length: Duration) -> Duration {
    min(max(Self.burstSpacing, length / Self.burstSpacingShare), Self.longestBurstSpacing)
  }
  /// The longest a change waits under sustained load when a mapping sets no `wait`.
  static let defaultMaxDelay: Duration = .seconds(1)

  private(set) var schedules: [String: MappingSchedule]
  /// Mapping names in configuration order.
  let order: [String]

  init(_ policies: [(name: String, policy: Policy)]) {
    self.order = policies.map(\.name)
    var schedules: [String: MappingSchedule] = [:]
    for (name, policy) in policies { schedules[name] = MappingSchedule(policy: policy) }
    self.schedules = schedules
  }

  // MARK: Events

  /// Changes for `names` arrived at `now` (a watch response, a re-read after compaction, a
  /// local edit that needs the mapping re-rendered).
  mutating func changed(_ names: some Sequence<String>, at now: Instant) {
    for name in names {
      guard var schedule = self.schedules[name] else { continue }
      schedule.pending = (schedule.pending?.first ?? now, now)
      schedule.pendingChanges += 1
      self.schedules[name] = schedule
    }
  }

  /// Whether `name` has changes not yet applied.
  func isPending(_ name: String) -> Bool { self.schedules[name]?.pending != nil }

  /// Whether any mapping has changes not yet applied.
  var hasPending: Bool { self.schedules.values.contains { $0.pending != nil } }

  /// The mappings to apply at `now`, taken out of the pending set, and when to look again.
  ///
  /// A mapping is due once no change came for `wait.min` and no input is `queued` (the
  /// inbox still holds input that may change it), or `wait.max` after its first pending
  /// change whatever comes. Without `wait`, `min` is zero and `max` ``defaultMaxDelay``; while
  /// a burst is on, rewrites are spaced ``burstSpacing`` apart (or further, see
  /// ``burstSpacing(after:)``) unless changes pause for ``burstQuiet``. A retry whose time has
  /// come makes its mapping pending. `held` mappings (a write-back push travelling through
  /// the watch) wait, with no wake-up of their own: the push's watch response re-checks them.
  mutating func due(now: Instant, queued: Int, held: Set<String> = []) -> Decision {
    var wake: Instant?
    func wakeAt(_ at: Instant) { wake = wake.map { min($0, at) } ?? at }
    var due: [String] = []
    for name in self.order {
      guard var schedule = self.schedules[name] else { continue }
      defer { self.schedules[name] = schedule }
      if let at = schedule.retry?.at {
        if now >= at {
          schedule.retry?.at = nil  // re-armed by the attempt's outcome
          if schedule.pending == nil { schedule.pending = (now, now) }
        } else {
          wakeAt(at)
        }
      }
      guard let pending = schedule.pending, !held.contains(name) else { continue }
      let wait = schedule.policy.wait
      var quietAt = pending.last + (wait?.min ?? .zero)
      if wait == nil, let burst = schedule.burst {
        let spacing = schedule.policy.coalescesLongBursts ? Self.burstSpacing(after: burst.lastApply - burst.since) : Self.burstSpacing
        // From the last batch's end, not its start: input queued meanwhile is stamped once the
        // batch has ended, and a batch (a `check` command, a large tree, several mappings) can
        // outlast the spacing. Queued input is stamped just after that end, so 20 ms covers it
        // whatever the spacing has grown to (the responses queued may be other ranges': a change
        // of this mapping's own 100 ms later is not part of the burst).
        let over = pending.first >= burst.lastEnd + (burst.queued ? Self.burstSpacing : Self.burstQuiet)
        if over {
          // The burst is over, and this change is applied at once (if nothing is queued).
          schedule.burst = nil
        } else if now < burst.lastApply + spacing {
          quietAt = min(pending.last + Self.burstQuiet, burst.lastApply + spacing)
        }
      }
      let latest = pending.first + (wait?.max ?? Self.defaultMaxDelay)
      if (now >= quietAt && queued == 0) || now >= latest {
        due.append(name)
        schedule.applyingSince = pending.first
        schedule.applyingChanges = schedule.pendingChanges
        schedule.pending = nil
        schedule.pendingChanges = 0
      } else {
        // New input re-checks sooner; otherwise when the quiet period ends, or at the latest.
        wakeAt(now >= quietAt ? latest : min(quietAt, latest))
      }
    }
    return Decision(due: due, wakeAt: wake)
  }

  /// A batch handed out by ``due(now:queued:held:)`` that ran from `started` to `ended` has
  /// been applied; `burst` when watch responses (of any range) were queued by its end. That
  /// starts a burst, or goes on with one: the next rewrite of these mappings is spaced out.
  /// Where the policy ``Policy/coalescesLongBursts``, a burst also goes on through a batch that
  /// found nothing queued if that batch covered more than one change (the watch's responses
  /// come in clumps, with lulls between them; counting from zero again at every lull spaced
  /// the rewrites as if each clump began a burst); it ends with a batch that covered one
  /// change or none and found nothing queued (a change held back alone: a trickle, not a
  /// burst). In ``due(now:queued:held:)`` a burst is also over at the first change that comes
  /// ``burstQuiet`` after the last batch's end (``burstSpacing`` after it, if input was queued
  /// then). A change after a burst, like any isolated one, is applied as soon as nothing is
  /// queued. A "change" is one call of ``changed(_:at:)`` (a watch response, however many keys
  /// it carries). A stream of changes closer together than ``burstQuiet`` stays a burst; so can
  /// a periodic one whose changes come in pairs, or a few milliseconds more than an apply apart
  /// (a change held back makes the next come within the quiet period of the batch's end, or
  /// during the batch): each of its changes then waits up to about an apply's time plus the
  /// period plus ``burstQuiet``, as when a burst ends.
  mutating func batchEnded(_ names: [String], started: Instant, ended: Instant, burst: Bool) {
    for name in names {
      guard var schedule = self.schedules[name] else { continue }
      let changes = schedule.applyingChanges
      schedule.applyingChanges = 0
      if let since = schedule.burst?.since, burst || (changes > 1 && schedule.policy.coalescesLongBursts) {
        schedule.burst = Burst(since: since, lastApply: started, lastEnd: ended, queued: burst)
      } else if burst {
        schedule.burst = Burst(since: started, lastApply: started, lastEnd: ended, queued: true)
      } else {
        schedule.burst = nil
      }
      self.schedules[name] = schedule
    }
  }

  /// The first pending change of the apply of `name` now ending, for the propagation
  /// histogram; nil when the apply was not handed out by ``due(now:queued:held:)`` (the
  /// first sync).
  mutating func takeApplyingSince(_ name: String) -> Instant? {
    defer { self.schedules[name]?.applyingSince = nil }
    return self.applyingSince(name)
  }

  /// ``takeApplyingSince(_:)`` without taking it: the arrival the apply's stages are timed from.
  func applyingSince(_ name: String) -> Instant? {
    self.schedules[name]?.applyingSince
  }

  /// An apply of `name` ended at `now`: a failure that may pass (`retryable`) is retried
  /// after the policy's delay, doubling; success or a final failure ends the retries.
  mutating func outcome(_ name: String, failed: Bool, retryable: Bool, fault: String, now: Instant) -> RetryOutcome {
    guard var schedule = self.schedules[name] else { return .none }
    defer { self.schedules[name] = schedule }
    guard failed, retryable else {
      let previous = schedule.retry
      schedule.retry = nil
      if let previous, !failed { return .recovered(attempts: previous.attempts) }
      return .none
    }
    let previous = schedule.retry
    let attempts = (previous?.attempts ?? 0) + 1
    let delay = schedule.policy.retry.delay(afterFailures: attempts)
    schedule.retry = Retry(attempts: attempts, at: now + delay, fault: fault)
    return .scheduled(delay: delay, attempt: attempts, newFault: previous?.fault != fault)
  }

  /// The failure being retried for `name`, if any.
  func retry(_ name: String) -> Retry? { self.schedules[name]?.retry }

  /// The earliest retry still to hand out, if any.
  var nextRetry: Instant? { self.schedules.values.compactMap { $0.retry?.at }.min() }
}

/// When the daemon saves its state file: a mapping with write-back saves at once (its record
/// guards local edits), others at most once per ``interval``, and whatever is owed when the
/// daemon stops. A record that lags after a crash costs at most one repeated reload at the
/// next start, the same as one lost to a power cut; saved on every update, it cost about an
/// eighth of the daemon's CPU per update.
struct SaveCoalescer: Sendable {
  typealias Instant = ContinuousClock.Instant

  /// The longest the daemon's state file lags what it applied.
  static let interval: Duration = .seconds(1)

  /// Whether saves are coalesced (the daemon) or made at once (`etcsync sync`).
  var coalescing = false
  /// Whether a save is owed.
  private(set) var owed = false
  /// When the last save was made.
  private(set) var lastSave: Instant

  init(now: Instant) { self.lastSave = now }

  /// A mapping's record changed at `now`: true when the state file must be saved now,
  /// false when the save is owed (see ``dueAt``).
  mutating func recordChanged(writeBack: Bool, now: Instant) -> Bool {
    if self.coalescing, !writeBack, now < self.lastSave + Self.interval {
      self.owed = true
      return false
    }
    return true
  }

  /// Whether an owed save is due at `now` (or at once, with `force`).
  func shouldFlush(now: Instant, force: Bool = false) -> Bool {
    self.owed && (force || now >= self.lastSave + Self.interval)
  }

  /// The state file was saved at `now`.
  mutating func saved(at now: Instant) {
    self.owed = false
    self.lastSave = now
  }

  /// When the owed save is due; nil when none is owed.
  var dueAt: Instant? { self.owed ? self.lastSave + Self.interval : nil }
}
