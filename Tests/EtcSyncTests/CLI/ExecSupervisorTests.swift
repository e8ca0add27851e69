import EtcSync
import Foundation
import Glibc
import Logging
import Prometheus
import Testing

/// ``ExecSupervisor`` in the test process, with a real `sh` child and its metrics in a
/// Prometheus registry of its own: the splay, the wait notice and the exec metrics.
@Suite("Exec supervisor")
struct ExecSupervisorTests {
  /// A child that records its start, each SIGHUP it handles, and exits 0 on SIGTERM (its
  /// traps are set before it writes "start").
  static func childScript(_ dir: TemporaryDirectory) throws -> (script: String, log: String) {
    let log = dir("child.log")
    let script = dir("child.sh")
    try Disk.write(script, """
      trap 'echo hup >> "\(log)"' HUP
      trap 'echo term >> "\(log)"; exit 0' TERM
      echo start >> "\(log)"
      while :; do sleep 0.05; done

      """)
    return (script, log)
  }

  static func lines(_ path: String) -> [String] {
    (Disk.read(path) ?? "").split(separator: "\n").map(String.init)
  }

  static func scrape(_ registry: PrometheusCollectorRegistry) -> String {
    String(decoding: registry.emitToBuffer(), as: UTF8.self)
  }

  /// The value of the sample `name` (labels as written) in `registry`, nil when absent.
  static func sample(_ registry: PrometheusCollectorRegistry, _ name: String) -> Double? {
    OperationsTests.sample(self.scrape(registry), name)
  }

  static let changeSignals = #"etcsync_exec_signals_total{signal="SIGHUP",reason="change"}"#

  @Test("splay: three changes back to back during one splay send the child one SIGHUP; a later change sends a second; the exec metrics count starts, signals and exits")
  func splayMergesChanges() async throws {
    let dir = TemporaryDirectory("etcsync-exec-splay")
    let (script, log) = try Self.childScript(dir)
    let registry = PrometheusCollectorRegistry()
    let (logger, logs) = RecordingLogHandler.logger()
    let supervisor = ExecSupervisor(settings: ExecSettings(command: ["sh", script], splay: .seconds(1)), logger: logger,
                                    metricsFactory: PrometheusMetricsFactory(registry: registry))
    let run = Task { await supervisor.run() }
    // Clean-up of a failing test: the child exits on the SIGTERM (ignored once run() ended).
    defer { supervisor.shutdown() }

    // Before the files are ready, a change is ignored: no child to tell.
    supervisor.filesChanged()
    supervisor.filesReady()
    #expect(await eventually { Self.lines(log) == ["start"] }, "\(Self.lines(log))")
    #expect(Self.sample(registry, "etcsync_exec_child_starts_total") == 1)
    #expect(Self.sample(registry, "etcsync_exec_child_running") == 1)
    #expect(Self.sample(registry, Self.changeSignals) == nil, "\(Self.scrape(registry))")

    // Three changes within one splay: one SIGHUP, counted once (the metric, not the child's
    // trap, counts what was sent: two SIGHUPs pending at once would merge in the kernel).
    supervisor.filesChanged()
    supervisor.filesChanged()
    supervisor.filesChanged()
    #expect(await eventually { Self.sample(registry, Self.changeSignals) == 1 }, "\(Self.scrape(registry))")
    #expect(await eventually { Self.lines(log) == ["start", "hup"] }, "\(Self.lines(log))")
    #expect(logs.metadata(of: "exec: change signalled after the splay").count == 1)

    // A later change: a new splay, a second SIGHUP.
    supervisor.filesChanged()
    #expect(await eventually { Self.sample(registry, Self.changeSignals) == 2 }, "\(Self.scrape(registry))")
    #expect(await eventually { Self.lines(log) == ["start", "hup", "hup"] }, "\(Self.lines(log))")

    // Stopped: SIGTERM forwarded, the child exits 0, which run() returns.
    supervisor.shutdown()
    #expect(await run.value == 0)
    #expect(Self.lines(log) == ["start", "hup", "hup", "term"])
    #expect(Self.sample(registry, Self.changeSignals) == 2, "\(Self.scrape(registry))")
    #expect(Self.sample(registry, #"etcsync_exec_signals_total{signal="SIGTERM",reason="forward"}"#) == 1, "\(Self.scrape(registry))")
    #expect(Self.sample(registry, #"etcsync_exec_child_exits_total{status="0"}"#) == 1, "\(Self.scrape(registry))")
    #expect(Self.sample(registry, "etcsync_exec_child_running") == 0)
    #expect(Self.sample(registry, "etcsync_exec_child_starts_total") == 1)
  }

  @Test("failing mappings before the first start are logged once, at notice level, by name; after the start they are not")
  func waitNotice() async throws {
    let dir = TemporaryDirectory("etcsync-exec-wait")
    let (script, log) = try Self.childScript(dir)
    let (logger, logs) = RecordingLogHandler.logger()
    let supervisor = ExecSupervisor(settings: ExecSettings(command: ["sh", script]), logger: logger,
                                    metricsFactory: PrometheusMetricsFactory(registry: PrometheusCollectorRegistry()))
    let run = Task { await supervisor.run() }
    defer { supervisor.shutdown() }
    let notice = "exec: the child waits until every mapping renders"

    supervisor.filesFailing(["app", "db"])
    supervisor.filesFailing(["db"])
    supervisor.filesReady()
    #expect(await eventually { Self.lines(log) == ["start"] }, "\(Self.lines(log))")
    supervisor.filesFailing(["app"])
    supervisor.shutdown()
    #expect(await run.value == 0)
    // Events are handled in order: by the time run() returned, every filesFailing was seen.
    #expect(logs.metadata(of: notice) == [["exec.failing_mappings": "[\"app\", \"db\"]"]], "\(logs.all)")
    #expect(logs.all.filter { $0.1 == notice }.map(\.0) == [.notice])
  }
}
