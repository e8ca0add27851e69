import EtcdClient
import Foundation
import Logging
import Synchronization
import Templates

// The daemon's loop: the watch, the schedule, local edits, the etcd probe.
extension Agent {
  /// The daemon's loop: applies every change from etcd and every local edit until cancelled.
  func watchAndApply(_ inbox: Inbox) async throws {
    self.saves.coalescing = true
    defer {
      self.saves.coalescing = false
      self.flushState(force: true)
    }
    var watchTask = self.startWatch(into: inbox)
    defer { watchTask.cancel() }
    let probe = Task { await self.probeEtcd() }
    defer { probe.cancel() }
    let requests = self.startProgressRequests()
    defer { requests?.cancel() }
    let watchers = self.startLocalWatchers(into: inbox)
    defer { watchers.forEach { $0.stop() } }
    let driftWatchers = self.startDriftWatchers(into: inbox)
    defer { driftWatchers.forEach { $0.stop() } }
    let driftChecks = self.startDriftChecks(into: inbox)
    defer { driftChecks?.cancel() }
    defer { self.cancelDriftChecks() }
    // An edit made after the first sync's scan and before the watchers started raised no
    // event: one full scan of every write-back mapping, now that they watch, finds it. (An
    // unlink in that window used to wait for the next event in the tree, on a loaded machine
    // a test's whole 30 s, and a later burst then counted it as part of a mass deletion.)
    for runner in self.runners where runner.mapping.writeBack { inbox.send(.local(runner.mapping.name, nil)) }
    // One loop for the daemon's whole life: a compaction restarts the watch in place (it
    // used to recurse into a second loop, one stack frame deeper per compaction).
    for await input in inbox.stream {
      inbox.consumed(input)
      switch input {
      case .response(let response, let watcher, let generation): try self.absorb(response, watcher: watcher, generation: generation)
      case .rangesChecked(let result): self.rangesChecked(result)
      case .compacted(let generation):
        // Every watcher of a generation may say so, and a check's read too: once is enough.
        guard generation == self.watchGeneration else { break }
        watchTask.cancel()
        // Nothing moves the snapshot while it is re-read (a status check's `advanceUnchanged`
        // would, during the await, and make a re-read pinned just before look like a
        // cluster gone back).
        let applied = self.keySpace.revision
        self.rereading = true
        defer { self.rereading = false }
        do {
          let fresh = try await self.readSnapshot()
          // The endpoints may lead to another cluster now (a failover to a restored or new
          // one). The watch refuses its responses (`absorb`), but a compaction error carries
          // no header to check: the etcd that served the re-read is asked who it is.
          let status = try await self.client.status()
          if self.clusterID != 0, status.header.clusterID != 0, status.header.clusterID != self.clusterID {
            throw AgentError(.etcd, "the re-read after a compaction talked to etcd cluster \(String(status.header.clusterID, radix: 16)), not \(String(self.clusterID, radix: 16)); refusing its contents")
          }
          if fresh.revision < applied {
            throw AgentError(.etcd, "etcd's revision \(fresh.revision) went back behind the applied revision \(applied) (a restored cluster?); refusing to roll the files back")
          }
          self.logger.warning("watch compacted; re-read everything", metadata: ["etcd.revision": "\(fresh.revision)"])
          self.keySpace = fresh
          self.relevantRevision = fresh.revision
          self.markDirty(self.runners.map(\.mapping.name))
        } catch let refusal as AgentError {
          throw refusal
        } catch {
          self.logger.error("re-read after compaction failed", metadata: ["error": "\(error)"])
        }
        // Watch on from the snapshot's revision + 1 (a re-read that failed: from the old one).
        watchTask = self.startWatch(into: inbox)
      case .failed(let error): throw error
      case .local(let name, let paths): self.noteLocal(name, paths: paths)
      case .reloaded(let name, let result): self.reloadEnded(name, result)
      case .drift(let name, let paths): self.noteDrift(name, paths: paths)
      case .tick: break
      }
      // Watched ranges behind the newest revision hold it back: read whether they changed.
      self.checkLaggingRanges()
      // Also right after a compaction: the re-read snapshot is applied now, not when the
      // next change happens to arrive.
      await self.applyDue(inbox: inbox)
    }
  }

  /// Moves the snapshot from `from` to `revision`, which holds the same keys in every range
  /// of the agent (checked at a status request, see `Agent+Current.swift`); no-op if the
  /// snapshot has moved since.
  func advanceUnchanged(from: Int64, to revision: Int64) {
    guard self.keySpace.revision == from, !self.rereading else { return }
    guard !self.barrier.ranges.isEmpty else {
      // No mapping, so no watcher: nothing to hold back.
      self.keySpace.advance(to: revision)
      return
    }
    // Every watcher is known through `revision` now; what they hold beyond it stays held.
    self.barrier.confirmAll(unchangedFrom: from, through: revision)
    self.advanceWatches()
    self.releaseWholeRevisions(countingProgress: false)
    if self.schedule.hasPending { self.inbox?.send(.tick) }
  }

  func markDirty(_ names: [String]) {
    self.schedule.changed(names, at: .now)
  }

  /// Applies the mappings whose quiet period is over, and arms a tick for the next one.
  ///
  /// With `wait: {min, max}`, a mapping is due once no change came for `min`, or `max` after
  /// its first pending change. Without `wait`, it is due as soon as the queued input has been
  /// absorbed, so a burst that arrives faster than files are written is coalesced; under
  /// sustained load it is still applied at least every ``Agent/defaultMaxDelay``.
  func applyDue(inbox: Inbox) async {
    var next = await self.flushLocalEdits(now: .now)
    // Read after the pushes (which wait for etcd), and once: ticks are sent from other tasks,
    // and mappings dirtied together should be judged against the same queue.
    // A push of ours (or a conflict's winner) on its way through the watch holds its mapping:
    // its response re-checks it.
    let now = ContinuousClock.now
    let held = Set(self.local.compactMap { name, work in work.holdUntil > self.keySpace.revision ? name : nil })
    let decision = self.schedule.due(now: now, queued: inbox.pending, held: held)
    if let at = decision.wakeAt { next = next.map { min($0, at) } ?? at }
    if !decision.due.isEmpty {
      let started = ContinuousClock.now
      _ = await self.apply(decision.due)
      // Watch responses that came in while the files were written mean a burst: the next
      // rewrite of these mappings is spaced out (ApplyScheduler.batchEnded says when a burst
      // is over). An isolated change is applied at once.
      self.schedule.batchEnded(decision.due, started: started, ended: .now, burst: inbox.pendingResponses > 0)
    }
    // After the applies, so a repair never races one; a mapping still waiting keeps its check.
    if !self.drift.isEmpty { await self.repairDrift() }
    // A reload that runs longer than expected is reported when it does.
    if let at = self.checkOverdueReloads() { next = next.map { min($0, at) } ?? at }
    // Retries scheduled by the batch just applied.
    if let at = self.schedule.nextRetry { next = next.map { min($0, at) } ?? at }
    // A render that had to wait for a push that failed retries with the push.
    for work in self.local.values where work.hasPending {
      let at = work.retryAt ?? (now + Self.localQuietPeriod)
      next = next.map { min($0, at) } ?? at
    }
    self.flushState()
    if let at = self.saves.dueAt { next = next.map { min($0, at) } ?? at }
    if let next { inbox.tick(at: next) }
    // Also after a reload ended (a `.reloaded` input leads here too).
    self.announceChanges()
    self.publishProgress()
  }

  /// A write that failed for a reason that may pass (ENOSPC, EROFS, EBUSY, a failing check)
  /// is tried again after `retry.min`, doubling, at most `retry.max` apart (1 s … 5 s by
  /// default), until it succeeds; the old files stay meanwhile.
  func scheduleRetry(_ result: MappingResult, policy: RetrySettings) {
    let name = result.mapping
    let outcome = self.schedule.outcome(name, failed: result.failed, retryable: result.retryable,
                                        fault: Self.faultSignature(result.error), now: .now)
    switch outcome {
    case .none: break
    case .recovered(let attempts):
      self.logger.notice("mapping recovered", metadata: ["mapping.name": "\(name)", "retry.attempts": "\(attempts)"])
    case .scheduled(let delay, let attempt, let newFault):
      // Once per state change (a new fault, or another one), not on every attempt: a disk
      // full for an hour is retried every `retry.max`, 720 times.
      let metadata: Logger.Metadata = ["mapping.name": "\(name)", "retry.in": "\(delay)", "retry.attempt": "\(attempt)", "retry.max": "\(policy.max)"]
      self.logger.log(level: newFault ? .warning : .debug,
                      newFault ? "mapping will be retried until it succeeds" : "mapping will be retried", metadata: metadata)
    }
  }

  /// A failure's text without what changes from one attempt to the next (a temporary file's
  /// random name): two attempts with the same signature failed the same way.
  static func faultSignature(_ error: String?) -> String {
    guard let error else { return "" }
    var signature: [UInt8] = []
    var hexRun: [UInt8] = []
    func flush() {
      signature += hexRun.count >= 8 ? Array("#".utf8) : hexRun
      hexRun = []
    }
    for byte in error.utf8 {
      let hex = (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
      if hex { hexRun.append(byte) } else { flush(); signature.append(byte) }
    }
    flush()
    return String(decoding: signature, as: UTF8.self)
  }

  /// Starts one inotify watcher per write-back mapping, feeding changed paths into the inbox.
  func startLocalWatchers(into inbox: Inbox) -> [DirectoryWatcher] {
    var watchers: [DirectoryWatcher] = []
    for runner in self.runners where runner.mapping.writeBack {
      let scanner = LocalScanner(mapping: runner.mapping)
      let name = runner.mapping.name
      let watcher: DirectoryWatcher
      do {
        watcher = try DirectoryWatcher(root: scanner.watchedDirectory, recursive: runner.mapping.kind == .tree)
      } catch {
        self.logger.error("local edits cannot be watched; write-back is off for this mapping", metadata: [
          "mapping.name": "\(name)", "file.path": "\(scanner.watchedDirectory)", "error": "\(error)",
        ])
        continue
      }
      watchers.append(watcher)
      Task {
        for await batch in watcher.changes {
          if batch.contains(where: { $0.kind == .overflow }) {
            inbox.send(.local(name, nil))
            continue
          }
          let paths = Set(batch.compactMap { scanner.recordPath(forChanged: $0.path) })
          if !paths.isEmpty { inbox.send(.local(name, paths)) }
        }
      }
      // Edits between the first sync's scan and the watch's start are not missed.
      self.noteLocal(name, paths: nil)
    }
    return watchers
  }

  /// Adds the watch responses that made no sense since the last count to
  /// `etcsync_watch_protocol_violations_total`, with a warning (the client restarted its
  /// stream over each and resumed; a count that keeps growing means a proxy or member that
  /// answers watches wrongly).
  func countWatchProtocolViolations() {
    let total = self.client.watchProtocolViolations
    guard total > self.countedViolations else { return }
    let new = total - self.countedViolations
    self.countedViolations = total
    self.metrics.watchProtocolViolations.increment(by: new)
    self.logger.warning("etcd's watch stream sent responses that made no sense; it was re-created and resumed",
                        metadata: ["count": "\(new)", "total": "\(total)"])
  }

  /// Checks every ``probeInterval`` that etcd answers a linearizable read (which needs a
  /// leader and a quorum, as the watch's `hasleader` does): the agent is not ready while it
  /// does not, and the last good files stay.
  func probeEtcd() async {
    while !Task.isCancelled {
      try? await Task.sleep(for: Self.probeInterval)
      if Task.isCancelled { return }
      let client = self.client
      // A key the agent may read anyway (its first mapping's range): a user whose role grants
      // only the mapped prefixes must still be able to become ready.
      let probe = self.ranges.first ?? KeyRange(key: [0])
      let failure: String? = await withTaskGroup(of: String?.self) { group in
        group.addTask {
          do {
            _ = try await client.get(probe, options: GetOptions(limit: 1, countOnly: true))
            return nil
          } catch {
            return "\(error)"
          }
        }
        group.addTask {
          try? await Task.sleep(for: Self.probeInterval)
          return "no answer within \(Self.probeInterval)"
        }
        let first = await group.next() ?? nil
        group.cancelAll()
        return first
      }
      if Task.isCancelled { return }
      self.countWatchProtocolViolations()
      let changed = self.readiness.connected(failure == nil, reason: "etcd does not answer: \(failure ?? "")")
      self.metrics.watchConnected.record(failure == nil ? 1 : 0)
      self.metrics.ready.record(self.readiness.isReady ? 1 : 0)
      guard changed else { continue }
      self.publishProgress()
      if let failure {
        self.logger.warning("etcd does not answer; not ready, the files stay as they are", metadata: ["error": "\(failure)"])
      } else {
        self.logger.info("etcd answers again; ready")
      }
    }
  }
}
