import EtcdClient
import Foundation
import Logging
import Synchronization
import Templates

/// The etcsync agent: reads every mapping's keys at one revision, brings the files to it,
/// and (in ``run()``) watches from the next revision on.
///
/// All mappings share one snapshot (``KeySpace``), so every render sees exactly one
/// revision across all of its prefixes. The daemon watches the smallest key range that
/// covers every mapping with **one** watcher: etcd delivers each revision whole to a watcher,
/// so a transaction that touches two prefixes is never applied half-way. Keys inside that
/// range but outside every mapping are dropped on arrival.
public actor Agent {
  public let configuration: AgentConfiguration
  let client: EtcdClient
  let logger: Logger
  let runners: [MappingRunner]
  let stateFile: StateFile
  var state: SyncState
  private(set) var keySpace = KeySpace()
  /// When each mapping is applied (pending changes, bursts, retries): the rules live in
  /// ``ApplyScheduler``, a value the agent feeds events and acts on.
  private var schedule: ApplyScheduler
  /// Mappings taken out of ``dirty`` whose files are being written now. Until they are done,
  /// their files do not hold the snapshot's revision, so ``publishProgress()`` (reachable
  /// from the etcd probe while `apply` awaits) must not publish it.
  private var applying: Set<String> = []
  /// The daemon's reloads, each running in a task of its own, by mapping: at most one per
  /// mapping, and whether changes written meanwhile owe one more (see `Agent+Reload.swift`).
  var reloading: [String: ReloadWork] = [:]
  /// Whether `apply` leaves reloads to tasks of their own (the daemon, which sends their
  /// outcome to `inbox`) or runs them inline (`etcsync sync`).
  var reloadsInBackground = false
  var inbox: Inbox?
  /// When the state file is saved (coalesced in the daemon; see ``SaveCoalescer``).
  private var saves = SaveCoalescer(now: .now)
  /// Mappings this process has applied without error: their state record describes what it
  /// wrote (see `MappingRunner.apply(_:state:keep:trustRecord:persist:)`).
  private var verified: Set<String> = []
  /// Write-back work of each write-back mapping (pending local edits, holds, refusals).
  var local: [String: LocalWork] = [:]
  /// What write-back has done so far.
  public internal(set) var writeBackStats = WriteBackStats()
  /// Called after every applied batch and every error change (presence, metrics).
  private var observers: [@Sendable (AgentProgress) -> Void] = []
  var errors: [String: String] = [:]
  private var publishedRevision: Int64 = 0
  /// How far the agent is current, and the status requests it answers (`Agent+Current.swift`).
  var current = CurrentThrough()
  /// The revision of the last change that touched a mapping (or of a snapshot or progress
  /// notification): what the applied revision reports.
  private var relevantRevision: Int64 = 0
  private var lastPublished: AgentProgress?
  /// The latest applied batches (at most ``historyLimit``), for tests and status.
  public internal(set) var history: [MappingResult] = []
  /// How many results ``history`` keeps (the latest).
  static let historyLimit = 1_000

  /// Counters and gauges (swift-metrics; no-ops unless a backend was bootstrapped).
  let metrics: AgentMetrics
  /// What `/readyz` answers from, when the agent serves it.
  public let readiness: Readiness
  /// How often the daemon checks that etcd answers (readiness, `etcsync_watch_connected`).
  static let probeInterval: Duration = .seconds(2)

  public init(configuration: AgentConfiguration, client: EtcdClient, logger: Logger, hook: WriteHook? = nil,
              metrics: AgentMetrics? = nil, readiness: Readiness = Readiness()) throws(AgentError) {
    self.configuration = configuration
    self.client = client
    self.logger = logger
    self.metrics = metrics ?? AgentMetrics(mappings: configuration.mappings.map(\.name))
    self.readiness = readiness
    var runners: [MappingRunner] = []
    for mapping in configuration.mappings {
      runners.append(try MappingRunner(mapping: configuration.effective(mapping), commandTimeout: configuration.commandTimeout,
                                       logger: logger, hook: hook))
    }
    self.runners = runners
    self.schedule = ApplyScheduler(runners.map { (name: $0.mapping.name, policy: .init(wait: $0.mapping.wait, retry: $0.mapping.retry)) })
    // Saved atomically but without fsync: the record is only written after a reload, so
    // losing it to a power cut costs at most one repeated reload (see MappingRunner.apply),
    // and a per-update fsync pair would double the write latency.
    self.stateFile = StateFile(path: configuration.state.dir + "/state.json", logger: logger, fsync: false)
    self.state = SyncState()
  }

  /// The revision whose content every mapping's files now hold (0 before the first sync).
  public var appliedRevision: Int64 { self.keySpace.revision }

  // MARK: Ranges

  /// Every range a mapping reads: its prefixes, or its one key.
  nonisolated var ranges: [KeyRange] {
    self.configuration.mappings.flatMap { mapping -> [KeyRange] in
      if mapping.kind == .file, let key = mapping.key { return [.key(key)] }
      return mapping.prefixes.flatMap { KeyPrefix($0).ranges }
    }
  }

  /// The smallest range holding every mapping's range.
  nonisolated var coveringRange: KeyRange {
    let ranges = self.ranges
    let start = ranges.map(\.key).min { $0.lexicographicallyPrecedes($1) } ?? [0]
    let ends = ranges.map { $0.rangeEnd.isEmpty ? $0.key + [0] : $0.rangeEnd }
    let end = ends.contains([0]) ? [0] : (ends.max { $0.lexicographicallyPrecedes($1) } ?? [0])
    return KeyRange(key: start, rangeEnd: end)
  }

  nonisolated func mappings(touching key: [UInt8]) -> [String] {
    self.configuration.mappings.filter { mapping in
      if mapping.kind == .file { return mapping.key.map { Array($0.utf8) == key } ?? false }
      return mapping.prefixes.contains { KeyPrefix($0).contains(key) }
    }.map(\.name)
  }

  // MARK: One pass

  /// Where `etcsync sync` shows its progress on a terminal (keys read, files written); nil
  /// stays quiet.
  private var progressReporter: (@Sendable (String) -> Void)?

  /// Reports progress to `reporter` from now on (nil: quiet).
  public func reportProgress(to reporter: (@Sendable (String) -> Void)?) {
    self.progressReporter = reporter
  }

  /// Reads every mapping's ranges at one revision: the first range's first page fixes it.
  func readSnapshot() async throws(EtcdError) -> KeySpace {
    var revision: Int64 = 0
    var kvs: [KeyValue] = []
    for range in self.ranges {
      if let report = self.progressReporter {
        // Page by page, so that a big prefix shows its progress.
        revision = try await self.client.forEachPage(range, revision: revision) { page in
          kvs += page
          report("read \(kvs.count) keys")
        }
      } else {
        let snapshot = try await self.client.getAll(range, revision: revision)
        revision = snapshot.revision
        // Taken as it is when it is the only range (no second 100k-entry array).
        if kvs.isEmpty { kvs = snapshot.kvs } else { kvs += snapshot.kvs }
      }
    }
    if revision == 0 { revision = try await self.client.status().revision }
    return KeySpace(revision: revision, kvs: kvs)
  }

  /// One consistent pass over every mapping (`etcsync sync`): returns one result per mapping.
  public func sync() async throws -> [MappingResult] {
    self.state = self.stateFile.load()
    self.cleanTemporaryFiles()
    try await self.checkCluster()
    // Local edits made while the agent was stopped go to etcd first (with their compare),
    // so that the snapshot read next already holds them.
    for runner in self.runners where runner.mapping.writeBack {
      let mappingState = self.state[mapping: runner.mapping.name]
      guard mappingState.appliedRevision != 0 || !mappingState.local.isEmpty else { continue }
      if await !self.pushLocalEdits(runner, candidates: nil) {
        throw EtcdError(.unavailable, "local edits of mapping \(runner.mapping.name) could not be pushed")
      }
    }
    self.keySpace = try await self.readSnapshot()
    self.relevantRevision = self.keySpace.revision
    return await self.apply(self.runners.map(\.mapping.name))
  }

  /// The cluster this agent talks to, from the first answer it gave.
  private(set) var clusterID: UInt64 = 0

  /// Refuses an etcd that is not the one the files came from: another cluster ID, or a
  /// revision behind the applied one (a cluster restored from an older backup, or wiped).
  /// Applying it silently would roll every file back; the operator decides, by removing the
  /// state file.
  func checkCluster() async throws {
    let status = try await self.client.status()
    self.clusterID = status.header.clusterID
    let applied = self.state.appliedRevision
    if let known = self.state.clusterID, known != status.header.clusterID {
      throw AgentError(.etcd, "etcd cluster \(String(status.header.clusterID, radix: 16)) is not the cluster \(String(known, radix: 16)) the files came from (restored or replaced?); refusing to apply it. Remove \(self.stateFile.path) to accept the new cluster")
    }
    if status.header.revision < applied {
      throw AgentError(.etcd, "etcd's revision \(status.header.revision) is behind the applied revision \(applied) (a cluster restored from an older backup, or wiped?); refusing to roll the files back. Remove \(self.stateFile.path) to accept it")
    }
    if self.state.clusterID != status.header.clusterID {
      self.state.clusterID = status.header.clusterID
      self.saveState()
    }
  }

  /// What `sync` would change in every mapping, without writing.
  public func diff() async throws -> [(path: String, old: [UInt8]?, new: [UInt8]?)] {
    self.state = self.stateFile.load()
    self.keySpace = try await self.readSnapshot()
    var changes: [(path: String, old: [UInt8]?, new: [UInt8]?)] = []
    for runner in self.runners {
      changes += try runner.diff(self.keySpace, previous: self.state[mapping: runner.mapping.name].files)
    }
    return changes
  }

  /// Applies the named mappings to the current snapshot.
  func apply(_ names: [String]) async -> [MappingResult] {
    var results: [MappingResult] = []
    // Every named mapping counts as in flight until the batch ends: each `await` below lets
    // other calls into the actor (the etcd probe publishing progress, say) run meanwhile.
    self.applying.formUnion(names)
    defer { self.applying.subtract(names) }
    // Only the daemon's loop (which is awaiting this call) changes the snapshot, so the
    // batch renders one revision across its mappings.
    let snapshot = self.keySpace
    for runner in self.runners where names.contains(runner.mapping.name) {
      let clock = ContinuousClock()
      let started = clock.now
      let name = runner.mapping.name
      var keep: Set<ExactString> = []
      // Planned once for the write-back bookkeeping before and after the render.
      let view = runner.mapping.writeBack ? runner.localView(snapshot) : nil
      if runner.mapping.writeBack {
        // A local edit the render would overwrite is pushed first; while that push travels
        // through the watch (or etcd is unreachable) the mapping waits.
        guard await self.guardLocalEdits(runner, view: view) else {
          self.markDirty([name])
          continue
        }
        keep = Set((self.local[name]?.refused ?? [:]).keys)
      }
      var mappingState = self.state[mapping: runner.mapping.name]
      // A write-back destination that was replaced (or lost most of its files at once) is
      // not written: the mapping fails and reports until the fault is gone.
      let result: MappingResult
      if let stopped = self.writeBackStop(runner, revision: snapshot.revision) {
        result = stopped
      } else {
        result = await self.applyFiles(runner, snapshot, state: &mappingState, keep: keep, trustRecord: self.verified.contains(name))
      }
      if result.failed { self.verified.remove(name) } else { self.verified.insert(name) }
      if runner.mapping.writeBack { self.recordLocal(runner, result, keep: keep, view: view) }
      // An attempt that fails as the previous one did (a retry while the disk is still
      // full, or a change that arrives meanwhile) was already reported.
      let repeated = result.failed && self.schedule.retry(name)?.fault == Self.faultSignature(result.error)
      self.log(result, duration: clock.now - started, repeated: repeated)
      self.progressReporter?("mapping \(name): \(result.written.count) written, \(result.deleted.count) deleted")
      self.notify(result)
      self.scheduleRetry(result, policy: runner.mapping.retry)
      let reloadRan = result.reloaded || result.failureCode == .reloadFailed
      self.metrics.record(result, reloadRan: reloadRan, since: self.schedule.takeApplyingSince(name))
      results.append(result)
      // Recorded as soon as the mapping is done, so history never lags what is on disk.
      self.history.append(result)
      // Bounded: a daemon applies batches for months.
      if self.history.count > Self.historyLimit { self.history.removeFirst(self.history.count - Self.historyLimit) }
    }
    return results
  }

  func save(_ mappingState: MappingState, for name: String) {
    // The runner's copy predates the write-back record kept meanwhile.
    let local = self.state[mapping: name].local
    self.state.mappings[name] = mappingState
    self.state.mappings[name]?.local = local
    // In the daemon, a mapping without write-back is saved at most once a second (see
    // ``SaveCoalescer`` for why).
    let writeBack = self.runners.first { $0.mapping.name == name }?.mapping.writeBack ?? true
    if self.saves.recordChanged(writeBack: writeBack, now: .now) { self.saveState() }
  }

  /// Saves the state now if a coalesced save is due (or `force`).
  func flushState(force: Bool = false) {
    guard self.saves.shouldFlush(now: .now, force: force) else { return }
    self.saveState()
  }

  func saveState() {
    self.saves.saved(at: .now)
    do {
      try self.stateFile.save(self.state)
    } catch {
      self.logger.error("cannot save the state file", metadata: ["file.path": "\(self.stateFile.path)", "error": "\(error)"])
    }
  }

  private func cleanTemporaryFiles() {
    for runner in self.runners {
      if runner.mapping.kind == .tree {
        _ = try? TemporaryFileCleanup.clean(root: runner.mapping.dest)
      } else {
        Self.removeTemporaryFiles(besides: runner.mapping.dest)
      }
    }
  }

  /// Removes the temp files a crash left beside one destination file (`.NAME.etcsync-tmp-`
  /// and 16 hex digits, in its directory) and nothing else. The tree cleanup is meant for a
  /// root the mapping owns: run on a file's directory it walked all of it (all of `/etc` for
  /// `/etc/motd`, the whole file system for `/motd`) and deleted other writers' temp files
  /// and hidden `..N.hex` directories.
  static func removeTemporaryFiles(besides dest: String) {
    let (writer, name) = AtomicWriter.forFile(dest)
    let sample = Array(TemporaryName.make(for: name).utf8)
    let prefix = sample.dropLast(16)
    // Opened like the writers open it (no symlink on the way, nothing another user controls),
    // listed and compared as bytes, removed relative to that descriptor.
    guard let directory = try? RootedDirectory(root: writer.root, create: false, mode: 0o755),
      let entries = try? listDirectory(directory.directory, path: writer.root)
    else { return }
    for entry in entries where entry.bytes.starts(with: prefix) && entry.bytes.count == sample.count
      && entry.bytes.suffix(16).allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) })
    {
      _ = unlinkat(directory.directory.raw, entry.cName, 0)  // never follows a symlink
    }
  }

  func log(_ result: MappingResult, duration: Duration, repeated: Bool = false) {
    // The common case at the default level: nothing to say, and nothing to format.
    if result.error == nil, result.rejected.isEmpty, self.logger.logLevel > (result.changed ? .info : .debug) { return }
    var metadata: Logger.Metadata = [
      "mapping.name": "\(result.mapping)", "etcd.revision": "\(result.revision)",
      "files.written": "\(result.written.count)", "files.deleted": "\(result.deleted.count)",
      "duration": "\(duration)",
    ]
    for rejected in result.rejected {
      self.logger.warning("key rejected", metadata: ["mapping.name": "\(result.mapping)", "etcd.key": "\(rejected.escapedKey)", "reason": "\(rejected)"])
    }
    if let error = result.error {
      // The full text (a template's error can quote values) is logged at debug level only.
      let failure = result.failureCode ?? .failed
      self.logger.debug("mapping failure details", metadata: ["mapping.name": "\(result.mapping)", "error.code": "\(failure)", "error": "\(error)"])
      metadata["error.code"] = "\(failure)"
      metadata["error"] = failure.quotesValues ? "\(failure) (the details are logged at debug level)" : "\(error)"
      // A reload that failed after the files were written must not read as "unchanged".
      // A retry that failed as the previous attempt did was reported then.
      self.logger.log(level: repeated ? .debug : .error,
                      result.changed ? "mapping failed after changing files" : "mapping failed; its files are unchanged",
                      metadata: metadata)
    } else if result.changed {
      metadata["reloaded"] = "\(result.reloaded)"
      self.logger.info("applied", metadata: metadata)
    } else {
      self.logger.debug("unchanged", metadata: metadata)
    }
  }

  // MARK: The daemon

  /// Syncs, then watches from the next revision and applies every change until cancelled.
  /// Stream failures resume from the applied revision + 1 (EtcdClient does that); a
  /// compaction re-reads everything at the current revision and diffs against the snapshot,
  /// deletes included. A watch that fails for good (permission denied, say) ends `run()` with
  /// its error, so that the process exits and its supervisor sees it.
  public func run() async throws {
    _ = try await self.sync()
    self.readiness.synced()
    self.metrics.watchConnected.record(1)
    self.metrics.ready.record(1)
    self.publishProgress()
    let inbox = Inbox()
    // From now on a reload runs in a task of its own: a hanging one does not hold the files
    // back. Stopping kills the reloads still running (their process groups) and waits until
    // they have ended, so that the next generation's reload (a SIGHUP) never overlaps one of
    // this agent's; the state records them as owed, so the next start runs them.
    self.inbox = inbox
    self.reloadsInBackground = true
    do {
      try await self.watchAndApply(inbox)
    } catch {
      await self.stopReloads()
      throw error
    }
    await self.stopReloads()
  }

  /// The daemon's loop: applies every change from etcd and every local edit until cancelled.
  private func watchAndApply(_ inbox: Inbox) async throws {
    self.saves.coalescing = true
    defer {
      self.saves.coalescing = false
      self.flushState(force: true)
    }
    var watchTask = Task { await self.pumpWatch(into: inbox) }
    defer { watchTask.cancel() }
    let probe = Task { await self.probeEtcd() }
    defer { probe.cancel() }
    let requests = self.startProgressRequests()
    defer { requests?.cancel() }
    let watchers = self.startLocalWatchers(into: inbox)
    defer { watchers.forEach { $0.stop() } }
    // One loop for the daemon's whole life: a compaction restarts the watch in place (it
    // used to recurse into a second loop, one stack frame deeper per compaction).
    for await input in inbox.stream {
      inbox.consumed(input)
      switch input {
      case .response(let response): try self.absorb(response)
      case .compacted:
        do {
          let fresh = try await self.readSnapshot()
          if fresh.revision < self.keySpace.revision {
            throw AgentError(.etcd, "etcd's revision \(fresh.revision) went back behind the applied revision \(self.keySpace.revision) (a restored cluster?); refusing to roll the files back")
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
        // The old watch has ended; watch on from the snapshot's revision + 1.
        watchTask = Task { await self.pumpWatch(into: inbox) }
      case .failed(let error): throw error
      case .local(let name, let paths): self.noteLocal(name, paths: paths)
      case .reloaded(let name, let result): self.reloadEnded(name, result)
      case .tick: break
      }
      // Also right after a compaction: the re-read snapshot is applied now, not when the
      // next change happens to arrive.
      await self.applyDue(inbox: inbox)
    }
  }

  /// Feeds watch responses into the inbox, from the applied revision + 1.
  private func pumpWatch(into inbox: Inbox) async {
    let start = self.keySpace.revision + 1
    do {
      for try await response in self.client.watch(self.coveringRange, options: WatchOptions(startRevision: start, progressNotify: true)) {
        inbox.send(.response(response))
      }
    } catch let error as EtcdError where error.code == .compacted {
      inbox.send(.compacted)
    } catch {
      // EtcdClient resumes the stream after transient failures itself; what ends it here is
      // final (permission denied, auth failed, a watch etcd cancelled, the client closed).
      // Only logging it left the daemon running with no watch, silently out of date.
      if !Task.isCancelled {
        self.logger.error("watch ended", metadata: ["error": "\(error)"])
        inbox.send(.failed(error))
      }
    }
  }

  /// Applies a watch response to the snapshot and marks the mappings it touches.
  private func absorb(_ response: WatchResponse) throws {
    // A failover that lands on another cluster (the endpoints now point at a restored or
    // new one) is refused loudly: its revisions mean nothing for these files.
    if self.clusterID != 0, response.header.clusterID != 0, response.header.clusterID != self.clusterID {
      throw AgentError(.etcd, "the watch now talks to etcd cluster \(String(response.header.clusterID, radix: 16)), not \(String(self.clusterID, radix: 16)); refusing its changes")
    }
    guard !response.events.isEmpty else {
      // A progress notification: every revision up to it is applied.
      self.keySpace.advance(to: response.header.revision)
      self.relevantRevision = self.keySpace.revision
      return
    }
    let relevant = response.events.filter { !self.mappings(touching: $0.kv.key).isEmpty }
    let applied = self.keySpace.apply(relevant)
    if let last = response.events.last { self.keySpace.advance(to: last.revision) }
    if let last = relevant.last { self.relevantRevision = last.revision }
    self.markDirty(Array(Set(applied.flatMap { self.mappings(touching: $0.kv.key) })))
  }

  /// Moves the snapshot from `from` to `revision`, which holds the same keys in every range
  /// of the agent (checked at a status request, see `Agent+Current.swift`); no-op if the
  /// snapshot has moved since.
  func advanceUnchanged(from: Int64, to revision: Int64) {
    guard self.keySpace.revision == from else { return }
    self.keySpace.advance(to: revision)
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
  private func applyDue(inbox: Inbox) async {
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
      // rewrite of these mappings is spaced out. An isolated change is applied at once.
      self.schedule.batchEnded(decision.due, started: started, burst: inbox.pendingResponses > 0)
    }
    // A reload that runs longer than expected is reported when it does.
    if let at = self.checkOverdueReloads() { next = next.map { min($0, at) } ?? at }
    // Retries scheduled by the batch just applied.
    if let at = self.schedule.nextRetry { next = next.map { min($0, at) } ?? at }
    // A render that had to wait for a push that failed retries with the push.
    for work in self.local.values where work.hasPending {
      let at = work.retryAt ?? (now + Self.localQuietPeriod)
      next = next.map { min($0, at) } ?? at
    }
    // Files a write-back rate limit held are scanned again once the limit allows them.
    for work in self.local.values { if let at = work.rateRetryAt { next = next.map { min($0, at) } ?? at } }
    self.flushState()
    if let at = self.saves.dueAt { next = next.map { min($0, at) } ?? at }
    if let next { inbox.tick(at: next) }
    self.publishProgress()
  }

  /// A write that failed for a reason that may pass (ENOSPC, EROFS, EBUSY, a failing check)
  /// is tried again after `retry.min`, doubling, at most `retry.max` apart (1 s … 5 s by
  /// default), until it succeeds; the old files stay meanwhile.
  private func scheduleRetry(_ result: MappingResult, policy: RetrySettings) {
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
  private func startLocalWatchers(into inbox: Inbox) -> [DirectoryWatcher] {
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

  /// Checks every ``probeInterval`` that etcd answers a linearizable read (which needs a
  /// leader and a quorum, as the watch's `hasleader` does): the agent is not ready while it
  /// does not, and the last good files stay.
  private func probeEtcd() async {
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

  // MARK: Progress

  /// Registers `observer`, called with the agent's progress after every applied batch.
  public func observe(_ observer: @escaping @Sendable (AgentProgress) -> Void) {
    self.observers.append(observer)
    observer(self.progress)
  }

  /// The revision every file holds and the mappings now failing.
  public var progress: AgentProgress {
    var progress = AgentProgress(appliedRevision: self.publishedRevision, errors: self.errors, ready: self.readiness.isReady)
    progress.currentRevision = self.current.published
    progress.requestedRevision = self.current.requested
    progress.overdueReloads = self.overdueReloads
    return progress
  }

  private func notify(_ result: MappingResult) {
    self.errors[result.mapping] = result.failureCode?.rawValue
  }

  /// Tells observers when the applied revision or the errors changed. The revision is the
  /// snapshot's only once no mapping waits to be applied: until then some file still holds
  /// an older one.
  func publishProgress() {
    // Also called while `apply` awaits (the etcd probe's readiness change): a mapping taken
    // out of `dirty` but still being written holds an older revision until it is done.
    // A reload still running (or owed) means its files' revision has not reached the
    // service yet either.
    // A failing mapping (a render error, a missing key, a held write-back, a reload that
    // failed) holds an older revision too, until it applies: a deploy that waits on `status`
    // must not pass while its files are old.
    if !self.schedule.hasPending && self.applying.isEmpty && self.reloading.isEmpty && self.errors.isEmpty {
      // Not the snapshot's revision: keys inside the watched range but outside every mapping
      // (a presence key under it, say) move that, and publishing it would make a presence put
      // advance every agent's revision, whose presence put advances it again, for ever.
      self.publishedRevision = max(self.publishedRevision, self.relevantRevision)
      // Every revision up to the snapshot's is in the files: the agent is current through it
      // (its watch, or a check at a status request, delivered everything up to it).
      self.current.published = max(self.current.published, self.keySpace.revision)
      self.metrics.appliedRevision.record(self.publishedRevision)
    }
    let progress = self.progress
    guard progress != self.lastPublished else { return }
    self.lastPublished = progress
    for observer in self.observers { observer(progress) }
  }

  /// The longest a change waits under sustained load when a mapping sets no `wait`.
  static let defaultMaxDelay = ApplyScheduler.defaultMaxDelay
}

/// Where an agent is: the revision all of its files hold, and the mappings failing now.
public struct AgentProgress: Sendable, Hashable {
  /// The revision whose content every mapping's files hold.
  public var appliedRevision: Int64
  /// The failure code (a ``MappingFailure`` raw value) of each failing mapping, by name:
  /// never the error's text, which can quote a command's output or a value from etcd.
  public var errors: [String: String]
  /// Whether the agent is ready: first sync done and etcd answering (see ``Readiness``).
  public var ready: Bool = true
  /// The revision the agent is current through: every change of its ranges up to it is in
  /// its files (written, reloaded, no mapping failing), whether or not one touched them.
  public var currentRevision: Int64 = 0
  /// The latest status request the agent saw (``ProgressRequest``): the revision it asks the
  /// agent to be current through (0: none).
  public var requestedRevision: Int64 = 0
  /// Reloads running longer than expected (see ``Agent/overdueReloadThreshold(timeout:)``):
  /// when each started, by mapping.
  public var overdueReloads: [String: Date] = [:]

  /// The first failing mapping by name with its code, such as `mapping app: check_failed`
  /// (nil when none is failing).
  public var lastError: String? {
    self.errors.sorted { $0.key < $1.key }.first.map { "mapping \($0.key): \($0.value)" }
  }
}

/// The daemon's single input queue: watch responses, compaction, and timer ticks. It counts
/// what is queued, so the loop can coalesce a burst before rendering.
final class Inbox: Sendable {
  enum Input: Sendable {
    case response(WatchResponse), compacted, failed(any Error), local(String, Set<ExactString>?), tick
    /// A mapping's reload ended (its outcome in the result).
    case reloaded(String, MappingResult)
  }
  let stream: AsyncStream<Input>
  private let continuation: AsyncStream<Input>.Continuation
  private let queued = Atomic<Int>(0)
  private let queuedResponses = Atomic<Int>(0)

  init() {
    (self.stream, self.continuation) = AsyncStream.makeStream(of: Input.self)
  }

  var pending: Int { self.queued.load(ordering: .relaxed) }
  /// Watch responses queued and not yet consumed.
  var pendingResponses: Int { self.queuedResponses.load(ordering: .relaxed) }

  func send(_ input: Input) {
    self.queued.add(1, ordering: .relaxed)
    if case .response = input { self.queuedResponses.add(1, ordering: .relaxed) }
    self.continuation.yield(input)
  }

  func consumed(_ input: Input) {
    self.queued.subtract(1, ordering: .relaxed)
    if case .response = input { self.queuedResponses.subtract(1, ordering: .relaxed) }
  }

  /// The earliest tick already armed; a later one is not armed beside it (applying due
  /// mappings at that tick re-arms whatever is still waiting), so a burst arms one timer, not
  /// one per input.
  private let armed = Mutex<ContinuousClock.Instant?>(nil)

  func tick(at deadline: ContinuousClock.Instant) {
    let arm = self.armed.withLock { current -> Bool in
      if let current, current <= deadline { return false }
      current = deadline
      return true
    }
    guard arm else { return }
    Task {
      try? await Task.sleep(until: deadline)
      self.armed.withLock { if $0 == deadline { $0 = nil } }
      self.send(.tick)
    }
  }
}
