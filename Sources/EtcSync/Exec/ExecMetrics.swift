import CoreMetrics
import Metrics

/// Exec mode's metrics (`docs/metrics.md` lists them), through swift-metrics.
struct ExecMetrics: Sendable {
  let factory: any MetricsFactory
  /// `etcsync_exec_child_starts_total`: children started (the first one and every restart).
  let starts: Counter
  /// `etcsync_exec_child_running`: 1 while a child runs.
  let running: Gauge
  /// `etcsync_exec_child_restarts_total{reason}`: restarts after a change or after the child
  /// exited on its own.
  let restartsOnChange: Counter
  let restartsOnExit: Counter

  init(factory: (any MetricsFactory)? = nil) {
    let factory = factory ?? MetricsSystem.factory
    self.factory = factory
    self.starts = Counter(label: "etcsync_exec_child_starts_total", factory: factory)
    self.running = Gauge(label: "etcsync_exec_child_running", factory: factory)
    self.restartsOnChange = Counter(label: "etcsync_exec_child_restarts_total", dimensions: [("reason", "change")], factory: factory)
    self.restartsOnExit = Counter(label: "etcsync_exec_child_restarts_total", dimensions: [("reason", "exit")], factory: factory)
  }

  /// `etcsync_exec_child_exits_total{status}`: children that ended, by exit status (`0`…`255`)
  /// or signal (`SIGTERM`).
  func exited(_ status: String) {
    Counter(label: "etcsync_exec_child_exits_total", dimensions: [("status", status)], factory: self.factory).increment()
  }

  /// `etcsync_exec_signals_total{signal, reason}`: signals sent to the child, for a change
  /// (`change`), forwarded (`forward`) or at the kill timeout (`kill`).
  func signalled(_ signal: Int32, reason: String) {
    Counter(label: "etcsync_exec_signals_total", dimensions: [("signal", ExecSettings.signalName(signal)), ("reason", reason)],
            factory: self.factory).increment()
  }
}
