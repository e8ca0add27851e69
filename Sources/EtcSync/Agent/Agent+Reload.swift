import Foundation
import Logging
import Templates

/// A mapping's reload that the daemon runs in a task of its own, so that the mapping's files
/// keep following etcd while it runs (a reload can hang until its command timeout).
struct ReloadWork: Sendable {
  /// The task running the command; it sends the outcome to the daemon's inbox.
  let task: Task<Void, Never>
  let started: ContinuousClock.Instant
  /// When it started, by the wall clock (for `status`).
  let startedAt: Date
  /// The files it covers: the paths and revision of the writes since the previous reload
  /// (what the log and ``Agent/history`` say of it when it ends).
  let covers: MappingResult
  /// Files changed while it ran: they owe exactly one more reload, run when this one ends.
  var owed: MappingResult?
  /// Whether it has been reported as running longer than expected.
  var overdue = false
}

extension Agent {
  /// How long a reload may run before it is reported (`/readyz`, metrics, `status`): half its
  /// command timeout, at most 10 s.
  static func overdueReloadThreshold(timeout: Duration) -> Duration {
    min(.seconds(10), timeout / 2)
  }

  /// Writes the mapping's files and, when they owe a reload, runs it: inline for
  /// `etcsync sync`, in a task of its own in the daemon. There, at most one reload per mapping
  /// runs; files written meanwhile owe exactly one more, started when it ends.
  func applyFiles(_ runner: MappingRunner, _ snapshot: KeySpace, state: inout MappingState, keep: Set<ExactString>,
                  expected: [ExactString: ExpectedFile]? = nil, trustRecord: Bool, arrival: ContinuousClock.Instant?) async -> MappingResult {
    let name = runner.mapping.name
    guard self.reloadsInBackground else {
      return await runner.apply(snapshot, state: &state, keep: keep, expected: expected, trustRecord: trustRecord,
                                arrival: arrival) { saved in
        await self.save(saved, for: name)
      }
    }
    let (result, reloadOwed) = await runner.write(snapshot, state: &state, keep: keep, expected: expected, trustRecord: trustRecord,
                                                  arrival: arrival) {
      saved in await self.save(saved, for: name)
    }
    guard reloadOwed else { return result }
    // Saved before the reload runs (`pendingReload`): a crash meanwhile runs it at the next
    // start. The state is the agent's again: re-read by `save`, nothing awaited since.
    self.save(state, for: name)
    if var work = self.reloading[name] {
      // The running reload may have read the files before this write: one more is owed. An
      // unchanged write (a reload still owed from before) is covered by the running one.
      if result.changed {
        work.owed = Self.merged(work.owed, result)
        self.reloading[name] = work
      }
    } else {
      self.startReload(runner, covering: result)
    }
    return result
  }

  /// The files two writes touched, at the later one's revision.
  static func merged(_ earlier: MappingResult?, _ later: MappingResult) -> MappingResult {
    var covers = MappingResult(mapping: later.mapping, revision: later.revision)
    // As bytes: canonically equivalent paths are two files.
    covers.written = Set(((earlier?.written ?? []) + later.written).map { ExactString($0) }).sorted().map(\.string)
    covers.deleted = Set(((earlier?.deleted ?? []) + later.deleted).map { ExactString($0) }).sorted().map(\.string)
    // Its reload stage is timed from the earliest change it covers.
    covers.stages = ApplyStages(arrival: later.stages.coveringArrival(earlier?.stages))
    return covers
  }

  /// Starts `runner`'s reload in a task of its own; its outcome comes back through the inbox
  /// (``reloadEnded(_:_:)``).
  func startReload(_ runner: MappingRunner, covering result: MappingResult) {
    let name = runner.mapping.name
    let covers = Self.merged(nil, result)
    let inbox = self.inbox
    // Detached: the command runs off the actor, which goes on writing files meanwhile.
    let task = Task.detached {
      var outcome = covers
      await runner.reload(into: &outcome)
      outcome.stages.mark(.reload)
      inbox?.send(.reloaded(name, outcome))
    }
    self.reloading[name] = ReloadWork(task: task, started: .now, startedAt: Date(), covers: covers)
    self.metrics.reloadStarted(name)
  }

  /// A reload ended (it succeeded, failed, or was killed at its timeout): records it, and
  /// starts the one owed by changes written meanwhile.
  func reloadEnded(_ name: String, _ result: MappingResult) {
    guard let work = self.reloading.removeValue(forKey: name) else { return }
    let duration = ContinuousClock.now - work.started
    self.metrics.reloadEnded(name, succeeded: result.reloaded, stages: result.stages)
    if work.overdue {
      self.logger.notice("a reload that ran longer than expected ended", metadata: [
        "mapping.name": "\(name)", "duration": "\(duration)", "reloaded": "\(result.reloaded)",
      ])
      self.reportOverdueReloads()
    }
    // Only a reload that covered the files now on disk clears the owed reload: with changes
    // written since, the next one does.
    if result.reloaded, work.owed == nil, self.state[mapping: name].pendingReload {
      var mappingState = self.state[mapping: name]
      mappingState.pendingReload = false
      self.save(mappingState, for: name)
    }
    if result.failed {
      self.log(result, duration: duration)
      self.errors[name] = result.failureCode?.rawValue
      self.failedRepairs[name] = nil
    } else {
      self.logger.debug("reloaded", metadata: ["mapping.name": "\(name)", "etcd.revision": "\(result.revision)", "duration": "\(duration)"])
      if self.errors[name] == MappingFailure.reloadFailed.rawValue { self.errors[name] = nil }
    }
    // The batch this reload covered says how its reload went.
    if let index = self.history.lastIndex(where: { $0.mapping == name }), self.history[index].revision == result.revision,
       !self.history[index].failed
    {
      self.history[index].reloaded = result.reloaded
      self.history[index].failure = result.failure
    }
    if let owed = work.owed, self.reloadsInBackground, let runner = self.runners.first(where: { $0.mapping.name == name }) {
      self.startReload(runner, covering: owed)
    }
  }

  /// Marks the reloads that have run longer than expected, and returns when the next one
  /// will have (nil: none running).
  func checkOverdueReloads() -> ContinuousClock.Instant? {
    let now = ContinuousClock.now
    var next: ContinuousClock.Instant?
    var changed = false
    for (name, work) in self.reloading where !work.overdue {
      let timeout = self.runners.first { $0.mapping.name == name }?.commandTimeout ?? self.configuration.commandTimeout
      let at = work.started + Self.overdueReloadThreshold(timeout: timeout)
      guard now >= at else {
        next = next.map { min($0, at) } ?? at
        continue
      }
      self.reloading[name]?.overdue = true
      changed = true
      self.logger.warning("a reload is running longer than expected; the files keep following etcd meanwhile", metadata: [
        "mapping.name": "\(name)", "running": "\(now - work.started)", "command.timeout": "\(timeout)",
      ])
    }
    if changed { self.reportOverdueReloads() }
    return next
  }

  /// Tells readiness and metrics which reloads have run longer than expected.
  func reportOverdueReloads() {
    for (name, work) in self.reloading { self.metrics.reloadOverdue(name, work.overdue) }
    self.readiness.reloadsOverdue(self.reloading.filter(\.value.overdue).map(\.key))
    self.metrics.ready.record(self.readiness.isReady ? 1 : 0)
  }

  /// The reloads running longer than expected: when each started.
  var overdueReloads: [String: Date] {
    self.reloading.filter(\.value.overdue).mapValues(\.startedAt)
  }

  /// When the daemon stops: its reloads are killed (their process groups: SIGTERM, then
  /// SIGKILL after ``CommandRunner/Options/killGracePeriod``) and stay owed in the state, so
  /// the next start runs them. Returns once every one has ended: the next agent (a SIGHUP's
  /// new generation) starts only then, and its reload never overlaps one of these.
  func stopReloads() async {
    self.reloadsInBackground = false
    self.inbox = nil
    let stopping = self.reloading
    self.reloading = [:]
    for work in stopping.values { work.task.cancel() }
    for name in stopping.keys { self.metrics.reloadEnded(name, succeeded: nil) }
    self.readiness.reloadsOverdue([])
    for (name, work) in stopping {
      await work.task.value
      self.logger.debug("a reload was stopped with the agent; it stays owed", metadata: [
        "mapping.name": "\(name)", "duration": "\(ContinuousClock.now - work.started)",
      ])
    }
  }
}
