import EtcdClient
import Logging

/// What one round of reads found of the watched ranges behind the newest revision.
struct RangeCheckResult: Sendable {
  enum Outcome: Sendable, Equatable {
    /// Nothing modified after `from` and as many keys at the target as the agent holds: the
    /// watcher is known through the target.
    case unchanged
    /// The range changed after `from`: the changes are on their way through the watch.
    case changed
    /// The read failed; tried again after a pause.
    case failed
  }
  var generation: Int
  var target: Int64
  var outcomes: [(lag: RevisionBarrier.Lag, outcome: Outcome)]
}

/// The state of the reads that bring idle watchers up to the newest revision.
struct RangeChecks: Sendable {
  /// Whether a round of reads is under way (one at a time).
  var inFlight = false
  /// The round that found changes, with the ranges it found changed as they were read: not
  /// repeated for them until their watcher moves or a newer revision comes, since the watch
  /// is bringing those changes.
  var found: (target: Int64, lags: [RevisionBarrier.Lag])?
  /// Rounds that failed in a row (the pause before the next doubles, up to 2 s).
  var failures = 0
  /// After a failed round: no other before this.
  var retryAt: ContinuousClock.Instant?
  /// How many rounds of reads were made (for tests and the latency figures).
  var rounds = 0

  /// Whether to start a round of reads for `lags`, the watchers behind `target`, at `now`;
  /// if so, it is under way from here on.
  mutating func start(_ lags: [RevisionBarrier.Lag], target: Int64, now: ContinuousClock.Instant) -> Bool {
    guard !self.inFlight else { return false }
    if let retryAt = self.retryAt {
      guard now >= retryAt else { return false }
      self.retryAt = nil
    }
    guard !lags.isEmpty else {
      self.found = nil
      return false
    }
    // Every range behind is one the last round read, from where its watcher still is, and
    // found changed: its changes are on their way through the watch.
    if let found = self.found, found.target == target, lags.allSatisfy({ found.lags.contains($0) }) { return false }
    self.inFlight = true
    self.rounds += 1
    return true
  }

  /// Takes the outcomes of the round under way; returns when to try again after a failed read.
  mutating func ended(_ result: RangeCheckResult, now: ContinuousClock.Instant) -> ContinuousClock.Instant? {
    self.inFlight = false
    if result.outcomes.contains(where: { $0.outcome == .failed }) {
      self.found = nil
      self.failures += 1
      let at = now + min(Duration.milliseconds(50) * (1 << min(self.failures, 6)), .seconds(2))
      self.retryAt = at
      return at
    }
    self.failures = 0
    // The ranges as they were read: a watcher that moved while the read was under way is
    // behind from another revision now, which no read has looked at yet.
    self.found = (result.target, result.outcomes.filter { $0.outcome == .changed }.map(\.lag))
    return nil
  }
}

// The daemon's watch: one watcher per watched range on the one stream, joined into whole
// revisions by a `RevisionBarrier`.
extension Agent {
  /// The ranges the daemon watches, one watcher each: with `etcd.watch: ranges` the disjoint
  /// mapped ranges, with `covering` the one range that covers them all.
  nonisolated var watchedRanges: [KeyRange] {
    switch self.configuration.etcd.watch {
    case .covering: [self.coveringRange]
    case .ranges: disjointRanges(self.ranges)
    }
  }

  /// Starts a new generation of the watch from the snapshot's revision + 1; responses of an
  /// older generation are dropped on arrival.
  func startWatch(into inbox: Inbox) -> Task<Void, Never> {
    self.watchGeneration += 1
    self.watchIDs = []
    self.barrier = RevisionBarrier(ranges: self.watchedRanges, revision: self.keySpace.revision)
    self.rangeChecks = RangeChecks(rounds: self.rangeChecks.rounds)
    let generation = self.watchGeneration
    let ranges = self.barrier.ranges
    let start = self.keySpace.revision + 1
    return Task { await self.pumpWatch(ranges, from: start, generation: generation, into: inbox) }
  }

  /// Feeds every watcher's responses into the inbox, until one ends.
  private func pumpWatch(_ ranges: [KeyRange], from start: Int64, generation: Int, into inbox: Inbox) async {
    let client = self.client
    let logger = self.logger
    let streams = ranges.map { client.watch($0, options: WatchOptions(startRevision: start, progressNotify: true)) }
    if generation == self.watchGeneration { self.watchIDs = streams.map(\.watchID) }
    await withTaskGroup(of: Void.self) { group in
      for (index, (range, stream)) in zip(ranges, streams).enumerated() {
        group.addTask {
          do {
            for try await response in stream {
              inbox.send(.response(response, watcher: index, generation: generation))
            }
            // A watch that ends without an error (not one the client ends today) must not
            // leave the daemon running without it.
            if !Task.isCancelled {
              inbox.send(.failed(EtcdError(.watchCanceled, "the watch of \(range) ended")))
            }
          } catch let error as EtcdError where error.code == .compacted {
            inbox.send(.compacted(generation: generation))
          } catch {
            // EtcdClient resumes the stream after transient failures itself; what ends it
            // here is final (permission denied, auth failed, a watch etcd cancelled, the
            // client closed). Only logging it left the daemon running with no watch,
            // silently out of date.
            if !Task.isCancelled {
              logger.error("watch ended", metadata: ["error": "\(error)", "etcd.range": "\(range)"])
              inbox.send(.failed(error))
            }
          }
        }
      }
      // One watcher ending ends them all: the daemon restarts or stops the whole watch.
      await group.next()
      group.cancelAll()
    }
  }

  /// Takes one watcher's response, and applies the whole revisions it completes.
  func absorb(_ response: WatchResponse, watcher: Int, generation: Int) throws {
    guard generation == self.watchGeneration else { return }
    // A failover that lands on another cluster (the endpoints now point at a restored or
    // new one) is refused loudly: its revisions mean nothing for these files.
    if self.clusterID != 0, response.header.clusterID != 0, response.header.clusterID != self.clusterID {
      throw AgentError(.etcd, "the watch now talks to etcd cluster \(String(response.header.clusterID, radix: 16)), not \(String(self.clusterID, radix: 16)); refusing its changes")
    }
    self.barrier.receive(response, from: watcher)
    self.releaseWholeRevisions()
  }

  /// Applies to the snapshot every revision the barrier has let through, and marks the
  /// mappings it touches.
  ///
  /// A revision reached without events counts as applied (`relevantRevision`) when a watcher's
  /// stream said so (progress), but not when `checkCurrent`'s reads did: those say only that
  /// the agent is current through it (`advanceUnchanged`).
  func releaseWholeRevisions(countingProgress: Bool = true) {
    let (events, revision) = self.barrier.release()
    guard revision > self.keySpace.revision else { return }
    let relevant = events.filter { !self.mappings(touching: $0.kv.key).isEmpty }
    let applied = self.keySpace.apply(relevant)
    self.keySpace.advance(to: revision)
    if events.isEmpty {
      guard countingProgress else { return }
      // Progress only: every revision up to it is applied.
      self.relevantRevision = self.keySpace.revision
    } else if let last = relevant.last {
      self.relevantRevision = last.revision
    }
    self.markDirty(Array(Set(applied.flatMap { self.mappings(touching: $0.kv.key) })))
  }

  /// Starts a round of reads for the watchers behind the newest revision, unless one is under
  /// way or the last one found changes that the watch has not yet brought.
  ///
  /// Each read asks etcd for the lagging range at the newest revision, keys modified after
  /// the revision the watcher is known through (at most one) and the count: nothing modified
  /// and as many keys as the agent holds means the range did not change in between.
  func checkLaggingRanges() {
    guard let inbox = self.inbox else { return }
    let lags = self.barrier.lagging()
    let target = self.barrier.newest
    guard self.rangeChecks.start(lags, target: target, now: .now) else { return }
    let generation = self.watchGeneration
    let expected = lags.map { self.keySpace.count(in: $0.range) + $0.heldCountDelta }
    let client = self.client
    let logger = self.logger
    Task {
      let outcomes = await withTaskGroup(of: (Int, RangeCheckResult.Outcome).self) { group in
        for (index, lag) in lags.enumerated() {
          group.addTask {
            // Serializable: a read pinned to a revision is the same on every member that has
            // applied it (one that has not answers "future revision", tried again), and it
            // spares etcd a ReadIndex round per change.
            var options = GetOptions(limit: 1, revision: target, keysOnly: true, serializable: true)
            options.minModRevision = lag.from + 1
            do throws(EtcdError) {
              let response = try await client.get(lag.range, options: options)
              // etcd counts the range before the filter: the count is every key at `target`.
              let same = response.kvs.isEmpty && response.count == Int64(expected[index])
              return (index, same ? .unchanged : .changed)
            } catch {
              if error.code == .compacted {
                // Only a full re-read can tell now: the same path as a compacted watch.
                inbox.send(.compacted(generation: generation))
              } else {
                logger.debug("a watched range could not be checked", metadata: ["etcd.range": "\(lag.range)", "error": "\(error)"])
              }
              return (index, .failed)
            }
          }
        }
        var outcomes = Array(repeating: RangeCheckResult.Outcome.failed, count: lags.count)
        for await (index, outcome) in group { outcomes[index] = outcome }
        return outcomes
      }
      inbox.send(.rangesChecked(RangeCheckResult(generation: generation, target: target,
                                                 outcomes: Array(zip(lags, outcomes)).map { (lag: $0.0, outcome: $0.1) })))
    }
  }

  /// Tells the client how far each watcher's range is known, so that a re-created stream
  /// resumes an idle range from there rather than from its last event (long since compacted,
  /// perhaps: a full re-read for nothing).
  func advanceWatches() {
    for (index, id) in self.watchIDs.enumerated() where index < self.barrier.through.count {
      self.client.advanceWatch(id, through: self.barrier.through[index])
    }
  }

  /// Takes what a round of reads found: confirmed ranges move their watchers, a failed read
  /// is tried again after a pause.
  func rangesChecked(_ result: RangeCheckResult) {
    guard result.generation == self.watchGeneration else { return }
    for (lag, outcome) in result.outcomes where outcome == .unchanged {
      self.barrier.confirm(lag.watcher, unchangedFrom: lag.from, through: result.target)
    }
    self.advanceWatches()
    if let retryAt = self.rangeChecks.ended(result, now: .now) {
      self.inbox?.tick(at: retryAt)
      // Said once a while: the files stay at the last whole revision meanwhile.
      if self.rangeChecks.failures == 5 || self.rangeChecks.failures % 100 == 0 {
        self.logger.warning("watched ranges behind the newest revision cannot be read; changes wait", metadata: [
          "attempts": "\(self.rangeChecks.failures)", "etcd.revision": "\(result.target)",
        ])
      }
    }
    self.releaseWholeRevisions()
  }
}
