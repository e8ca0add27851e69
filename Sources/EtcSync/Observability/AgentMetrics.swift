import CoreMetrics
import Foundation
import Metrics
import Synchronization

/// The agent's metrics, through swift-metrics: whatever backend the process bootstrapped
/// (Prometheus in `etcsync run`), or the factory given (tests). `docs/metrics.md` lists them.
public struct AgentMetrics: Sendable {
  let factory: any MetricsFactory
  let appliedRevision: Gauge
  let watchConnected: Gauge
  let ready: Gauge
  let lastSuccess: Gauge
  let conflicts: Counter
  /// Watch responses that made no sense (the client restarted its stream over each).
  let watchProtocolViolations: Counter
  let propagation: Metrics.Timer
  /// `etcsync_apply_stage_seconds{stage}`: from a batch's arrival to each ``ApplyStage``.
  let stages: [ApplyStage: Metrics.Timer]
  private let perMapping: [String: MappingMetrics]

  /// The counters of one mapping, created once (label values are the mapping's name).
  struct MappingMetrics: Sendable {
    let rendersChanged: Counter
    let rendersUnchanged: Counter
    let rendersFailed: Counter
    let reloadsOK: Counter
    let reloadsFailed: Counter
    /// 1 while a reload of the mapping runs (the daemon runs it in a task of its own).
    let reloadRunning: Gauge
    /// 1 while that reload has run longer than expected.
    let reloadOverdue: Gauge
    let writeBack: [String: Counter]
    /// Files put back after a local change (drift repair), by mapping; the paths are in the log.
    let driftRepairs: Counter
  }

  static let stageLabel = "etcsync_apply_stage_seconds"

  /// The write-back outcomes counted by `etcsync_writeback_total{result}`.
  static let writeBackResults = ["pushed", "conflict", "refused", "error"]

  /// Metrics for an agent with `mappings`, created in `factory` (default: the bootstrapped one).
  public init(mappings: [String], factory: (any MetricsFactory)? = nil) {
    let factory = factory ?? MetricsSystem.factory
    self.factory = factory
    self.appliedRevision = Gauge(label: "etcsync_applied_revision", factory: factory)
    self.watchConnected = Gauge(label: "etcsync_watch_connected", factory: factory)
    self.ready = Gauge(label: "etcsync_ready", factory: factory)
    self.lastSuccess = Gauge(label: "etcsync_last_success_timestamp_seconds", factory: factory)
    self.conflicts = Counter(label: "etcsync_conflicts_total", factory: factory)
    self.watchProtocolViolations = Counter(label: "etcsync_watch_protocol_violations_total", factory: factory)
    self.propagation = Metrics.Timer(label: "etcsync_propagation_seconds", factory: factory)
    self.stages = Dictionary(uniqueKeysWithValues: ApplyStage.allCases.map {
      ($0, Metrics.Timer(label: Self.stageLabel, dimensions: [("stage", $0.rawValue)], factory: factory))
    })
    var perMapping: [String: MappingMetrics] = [:]
    for name in mappings {
      func counter(_ label: String, _ result: String) -> Counter {
        Counter(label: label, dimensions: [("mapping", name), ("result", result)], factory: factory)
      }
      perMapping[name] = MappingMetrics(
        rendersChanged: counter("etcsync_renders_total", "changed"),
        rendersUnchanged: counter("etcsync_renders_total", "unchanged"),
        rendersFailed: counter("etcsync_renders_total", "error"),
        reloadsOK: counter("etcsync_reloads_total", "ok"),
        reloadsFailed: counter("etcsync_reloads_total", "error"),
        reloadRunning: Gauge(label: "etcsync_reload_running", dimensions: [("mapping", name)], factory: factory),
        reloadOverdue: Gauge(label: "etcsync_reload_overdue", dimensions: [("mapping", name)], factory: factory),
        writeBack: Dictionary(uniqueKeysWithValues: Self.writeBackResults.map { ($0, counter("etcsync_writeback_total", $0)) }),
        driftRepairs: Counter(label: "etcsync_drift_repairs_total", dimensions: [("mapping", name)], factory: factory))
    }
    self.perMapping = perMapping
  }

  /// Counts `files` files of `mapping` put back to what the agent wrote (drift repair).
  func driftRepaired(_ mapping: String, files: Int) {
    guard files > 0 else { return }
    self.perMapping[mapping]?.driftRepairs.increment(by: files)
  }

  /// Counts one applied batch of a mapping; `since` is when its first change arrived.
  func record(_ result: MappingResult, reloadRan: Bool, since: ContinuousClock.Instant?) {
    guard let mapping = self.perMapping[result.mapping] else { return }
    if result.failed && !result.changed {
      mapping.rendersFailed.increment()
    } else if result.changed {
      mapping.rendersChanged.increment()
      if let since { self.propagation.recordInterval(since: since) }
      self.recordStages(result.stages)
    } else {
      mapping.rendersUnchanged.increment()
    }
    if reloadRan {
      if result.reloaded { mapping.reloadsOK.increment() } else { mapping.reloadsFailed.increment() }
    }
    if !result.failed { self.lastSuccess.record(Date().timeIntervalSince1970) }
  }

  /// A reload of `mapping` started in a task of its own.
  func reloadStarted(_ mapping: String) {
    self.perMapping[mapping]?.reloadRunning.record(1)
  }

  /// That reload has run longer than expected (or ended: `false`).
  func reloadOverdue(_ mapping: String, _ overdue: Bool) {
    self.perMapping[mapping]?.reloadOverdue.record(overdue ? 1 : 0)
  }

  /// Records the time from the batch's arrival to each stage it reached (a batch of watched
  /// changes only: ``ApplyStages/arrival`` is nil otherwise).
  func recordStages(_ stages: ApplyStages) {
    for (stage, elapsed) in stages.sinceArrival { self.stages[stage]?.record(elapsed) }
  }

  /// That reload ended: counted as `ok` or `error` in `etcsync_reloads_total` (nil: killed
  /// because the daemon stops, not counted), its `reload` stage timed from the earliest
  /// change it covered.
  func reloadEnded(_ mapping: String, succeeded: Bool?, stages: ApplyStages = ApplyStages()) {
    guard let metrics = self.perMapping[mapping] else { return }
    metrics.reloadRunning.record(0)
    metrics.reloadOverdue.record(0)
    guard let succeeded else { return }
    self.recordStages(stages)
    if succeeded { metrics.reloadsOK.increment() } else { metrics.reloadsFailed.increment() }
    if succeeded { self.lastSuccess.record(Date().timeIntervalSince1970) }
  }

  /// Counts write-back outcomes (`pushed`, `conflict`, `refused`, `error`).
  func writeBack(_ mapping: String, _ result: String, count: Int = 1) {
    guard count > 0 else { return }
    self.perMapping[mapping]?.writeBack[result]?.increment(by: count)
    if result == "conflict" { self.conflicts.increment(by: count) }
  }
}

extension Metrics.Timer {
  /// Records the time from `start` to now.
  func recordInterval(since start: ContinuousClock.Instant) {
    self.record(ContinuousClock.now - start)
  }

  /// Records `elapsed`.
  func record(_ elapsed: Duration) {
    let (seconds, attoseconds) = elapsed.components
    self.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
  }
}
