import EtcdClient
import Foundation
import Logging
import Synchronization
import Templates

/// The etcsync agent: reads every mapping's keys at one revision, brings the files to it,
/// and (in ``run()``) watches from the next revision on.
///
/// All mappings share one snapshot (``KeySpace``), so every render sees exactly one
/// revision across all of its prefixes. The daemon watches each disjoint mapped range with a
/// watcher of its own, on one stream, and applies a revision only once every watcher is known
/// to have delivered everything up to it (``RevisionBarrier``), so a transaction that touches
/// two prefixes is never applied half-way. With `etcd.watch: covering` it watches the one
/// range covering every mapping instead, and drops the keys in between on arrival.
public actor Agent {
  public let configuration: AgentConfiguration
  /// etcd, or a stand-in for it in tests (``EtcdStore``).
  let client: any EtcdStore
  let logger: Logger
  let runners: [MappingRunner]
  let stateFile: StateFile
  var state: SyncState
  var keySpace = KeySpace()
  /// When each mapping is applied (pending changes, bursts, retries): the rules live in
  /// ``ApplyScheduler``, a value the agent feeds events and acts on.
  var schedule: ApplyScheduler
  /// Mappings taken out of ``dirty`` whose files are being written now. Until they are done,
  /// their files do not hold the snapshot's revision, so ``publishProgress()`` (reachable
  /// from the etcd probe while `apply` awaits) must not publish it.
  var applying: Set<String> = []
  /// The daemon's reloads, each running in a task of its own, by mapping: at most one per
  /// mapping, and whether changes written meanwhile owe one more (see `Agent+Reload.swift`).
  var reloading: [String: ReloadWork] = [:]
  /// Whether `apply` leaves reloads to tasks of their own (the daemon, which sends their
  /// outcome to `inbox`) or runs them inline (`etcsync sync`).
  var reloadsInBackground = false
  var inbox: Inbox?
  /// When the state file is saved (coalesced in the daemon; see ``SaveCoalescer``).
  var saves = SaveCoalescer(now: .now)
  /// Mappings this process has applied without error: their state record describes what it
  /// wrote (see `MappingRunner.apply(_:state:keep:trustRecord:persist:)`).
  var verified: Set<String> = []
  /// Write-back work of each write-back mapping (pending local edits, holds, refusals).
  var local: [String: LocalWork] = [:]
  /// Drift checks queued for mappings without write-back (`Agent+Drift.swift`).
  var drift: [String: DriftCheck] = [:]
  /// Drift checks under way, their results and repair spacing, by mapping (`Agent+Drift.swift`).
  var driftWork: [String: DriftWork] = [:]
  /// What write-back has done so far.
  public internal(set) var writeBackStats = WriteBackStats()
  /// Called after every applied batch and every error change (presence, metrics).
  var observers: [@Sendable (AgentProgress) -> Void] = []
  /// Called once an applied batch changed files and no reload runs any more (exec mode).
  var changeObservers: [@Sendable () -> Void] = []
  /// Whether files changed since the change observers were last called.
  var changesUnannounced = false
  var errors: [String: String] = [:]
  /// Mappings whose `errors` entry is a drift repair's that failed (their files drifted and
  /// could not be put back), with the entry it replaced (`reload_failed`, or "" for none),
  /// which comes back once every file is etcd's again; an apply's result replaces both.
  /// Later repairs may still run.
  var failedRepairs: [String: String] = [:]
  var publishedRevision: Int64 = 0
  /// How far the agent is current, and the status requests it answers (`Agent+Current.swift`).
  var current = CurrentThrough()
  /// The revision of the last change that touched a mapping (or of a snapshot or progress
  /// notification): what the applied revision reports.
  var relevantRevision: Int64 = 0
  var lastPublished: AgentProgress?
  /// The latest applied batches (at most ``historyLimit``), for tests and status.
  public internal(set) var history: [MappingResult] = []
  /// How many results ``history`` keeps (the latest).
  static let historyLimit = 1_000
  /// Where `etcsync sync` shows its progress on a terminal (keys read, files written); nil
  /// stays quiet.
  var progressReporter: (@Sendable (String) -> Void)?
  /// The cluster this agent talks to, from the first answer it gave.
  var clusterID: UInt64 = 0
  /// Joins the daemon's watchers into whole revisions (`Agent+Watch.swift`); no ranges
  /// outside the daemon.
  var barrier = RevisionBarrier(ranges: [], revision: 0)
  /// The reads that bring idle watchers up to the newest revision.
  var rangeChecks = RangeChecks()
  /// Which watch the daemon runs now: a compaction starts the next.
  var watchGeneration = 0
  /// While the daemon re-reads everything after a compaction.
  var rereading = false
  /// The client's IDs of the current generation's watchers, by watched range.
  var watchIDs: [Int64] = []

  /// Counters and gauges (swift-metrics; no-ops unless a backend was bootstrapped).
  let metrics: AgentMetrics
  /// What `/readyz` answers from, when the agent serves it.
  public let readiness: Readiness
  /// The store's ``EtcdStore/watchProtocolViolations`` already counted in the metric.
  var countedViolations = 0
  /// How often the daemon checks that etcd answers (readiness, `etcsync_watch_connected`,
  /// `etcsync_watch_protocol_violations_total`).
  static let probeInterval: Duration = .seconds(2)

  public init(configuration: AgentConfiguration, client: EtcdClient, logger: Logger, hook: WriteHook? = nil,
              metrics: AgentMetrics? = nil, readiness: Readiness = Readiness()) throws(AgentError) {
    try self.init(configuration: configuration, store: client, logger: logger, hook: hook, metrics: metrics, readiness: readiness)
  }

  /// An agent that reads and watches `store`: an ``EtcdClient``, or an in-memory etcd in tests.
  public init(configuration: AgentConfiguration, store: any EtcdStore, logger: Logger, hook: WriteHook? = nil,
              metrics: AgentMetrics? = nil, readiness: Readiness = Readiness()) throws(AgentError) {
    self.configuration = configuration
    self.client = store
    self.logger = logger
    self.metrics = metrics ?? AgentMetrics(mappings: configuration.mappings.map(\.name))
    self.readiness = readiness
    var runners: [MappingRunner] = []
    for mapping in configuration.mappings {
      runners.append(try MappingRunner(mapping: configuration.effective(mapping), commandTimeout: configuration.commandTimeout,
                                       logger: logger, hook: hook))
    }
    self.runners = runners
    self.schedule = ApplyScheduler(runners.map { (name: $0.mapping.name, policy: .init($0.mapping)) })
    // Saved atomically but without fsync: the record is only written after a reload, so
    // losing it to a power cut costs at most one repeated reload (see MappingRunner.apply),
    // and a per-update fsync pair would double the write latency.
    self.stateFile = StateFile(path: configuration.state.dir + "/state.json", logger: logger, fsync: false)
    self.state = SyncState()
  }

  /// The revision of the snapshot the agent holds (0 before the first sync). After `sync()`
  /// every mapping's files hold it; in the daemon, mappings it changed may still be waiting to
  /// be written: the revision published once they are is ``AgentProgress/appliedRevision``.
  public var appliedRevision: Int64 { self.keySpace.revision }

  // MARK: One pass

  /// One consistent pass over every mapping (`etcsync sync`): returns one result per mapping.
  public func sync() async throws -> [MappingResult] {
    self.state = self.stateFile.load()
    // The record just read is trusted by no mapping yet (a save of an earlier pass may have failed).
    self.verified = []
    self.cleanTemporaryFiles()
    try await self.checkCluster()
    // Local edits made while the agent was stopped go to etcd first (with their compare),
    // so that the snapshot read next already holds them.
    for runner in self.runners where runner.mapping.writeBack {
      let mappingState = self.state[mapping: runner.mapping.name]
      guard mappingState.appliedRevision != 0 || !mappingState.local.isEmpty else { continue }
      // One pass waits for no later scan: a directory that cannot be verified fails the
      // mapping at once (``writeBackStop``), and the others are synced.
      if await !self.pushLocalEdits(runner, candidates: nil, unverifiedLimit: 1) {
        throw EtcdError(.unavailable, "local edits of mapping \(runner.mapping.name) could not be pushed")
      }
    }
    let names = self.runners.map(\.mapping.name)
    // A write-back mapping whose render found (and pushed) one more local edit waits for that
    // push's revision, and one whose render left a file saved during it owes that file's scan:
    // the pass is made again at a snapshot that holds it, every mapping at that one revision,
    // a few times at most (a kept edit takes two more: its push, then the render).
    for _ in 0..<5 {
      self.keySpace = try await self.readSnapshot()
      self.relevantRevision = self.keySpace.revision
      let results = await self.apply(names)
      let waiting = names.filter { name in !results.contains { $0.mapping == name && $0.keptEdits.isEmpty } }
      if waiting.isEmpty { return results }
    }
    throw AgentError(.etcd, "local edits kept being pushed (or saved during the render) while this pass ran; the files they touched may not hold etcd's latest values yet. Run it again")
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
      var expected: [ExactString: ExpectedFile]?
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
        // One made after that scan is not overwritten either: the writer leaves it for the next.
        expected = self.expectations(runner)
      }
      var mappingState = self.state[mapping: runner.mapping.name]
      // A write-back destination that was replaced (or lost most of its files at once) is
      // not written: the mapping fails and reports until the fault is gone.
      let result: MappingResult
      if let stopped = self.writeBackStop(runner, revision: snapshot.revision) {
        result = stopped
      } else {
        result = await self.applyFiles(runner, snapshot, state: &mappingState, keep: keep, expected: expected,
                                       trustRecord: self.verified.contains(name), arrival: self.schedule.applyingSince(name))
      }
      // Trusted only when its record says what every file holds (see `MappingResult.leftUntouched`).
      if result.failed || result.leftUntouched { self.verified.remove(name) } else { self.verified.insert(name) }
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
      if result.changed { self.changesUnannounced = true }
      results.append(result)
      // Recorded as soon as the mapping is done, so history never lags what is on disk.
      self.history.append(result)
      // Bounded: a daemon applies batches for months.
      if self.history.count > Self.historyLimit { self.history.removeFirst(self.history.count - Self.historyLimit) }
    }
    return results
  }

  // MARK: The daemon

  /// Syncs, then watches from the next revision and applies every change until cancelled.
  /// Stream failures resume from the applied revision + 1 (EtcdClient does that); a
  /// compaction re-reads everything at the current revision and diffs against the snapshot,
  /// deletes included. A watch that fails for good (permission denied, say) ends `run()` with
  /// its error, so that the process exits and its supervisor sees it.
  public func run() async throws {
    _ = try await self.sync()
    // Before the progress that says every mapping is rendered: exec mode's first child starts
    // on that, and must not be signalled for files it has not read yet.
    self.announceChanges()
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

  /// The longest a change waits under sustained load when a mapping sets no `wait`.
  static let defaultMaxDelay = ApplyScheduler.defaultMaxDelay
}
