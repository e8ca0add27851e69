import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Logging
import Prometheus
import Synchronization
import Testing

/// A hanging reload does not freeze the mapping's files: each new version is written while it
/// runs, at most one reload per mapping is in flight, and the changes written meanwhile owe
/// exactly one more, run when the hung one is killed at its timeout. `/readyz`, metrics and
/// the agent's progress show the reload that runs longer than expected.
@Suite("Reload while writing", .serialized)
struct ReloadWhileWritingTests {
  final class Published: Sendable {
    let revisions = Mutex<[Int64]>([])
    var highest: Int64 { revisions.withLock { $0.max() ?? 0 } }
  }

  @Test("a reload that hangs past its timeout: 10 puts during it are on disk while it hangs, then one owed reload")
  func hangingReloadDoesNotFreezeFiles() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let block = h.dir("block")
    // The first reload after `block` appears hangs (and takes `block` away); the others end.
    let reload = ["sh", "-c", "echo start >> '\(h.commandLog)'; if [ -e '\(block)' ]; then rm -f '\(block)'; exec sleep 600; fi; echo end >> '\(h.commandLog)'"]
    // Long enough for the ten puts to land before the kill on a loaded CI machine too.
    let timeout: Duration = .seconds(20)
    let mapping = Mapping(name: "x", kind: .file, key: "/h/x", dest: h.dir("x"), reload: reload, commandTimeout: timeout)
    try await h.put("/h/x", "v0")
    let registry = PrometheusCollectorRegistry()
    let metrics = AgentMetrics(mappings: ["x"], factory: PrometheusMetricsFactory(registry: registry))
    let readiness = Readiness()
    let agent = try Agent(configuration: h.configuration([mapping]), client: h.client, logger: h.logger, metrics: metrics,
                          readiness: readiness)
    let published = Published()
    await agent.observe { progress in published.revisions.withLock { $0.append(progress.appliedRevision) } }
    let daemon = Daemon(agent)
    #expect(await eventually { h.count("end") == 1 && readiness.isReady })

    try Disk.write(block, "")
    try await h.put("/h/x", "v1")
    #expect(await eventually { h.count("start") == 2 && Disk.read(h.dir("x")) == "v1" })
    var last: Int64 = 0
    for generation in 2...11 {
      let value = "v\(generation)"
      last = try await h.put("/h/x", value)
      let put = ContinuousClock.now
      var onDisk: Duration?
      _ = await eventually(within: .seconds(10)) {
        guard Disk.read(h.dir("x")) == value else { return false }
        onDisk = ContinuousClock.now - put
        return true
      }
      // The behaviour: each version reaches the disk while the reload still hangs. (On an
      // idle machine each one takes a few milliseconds; the bound only catches a file that
      // waited for the reload, which would take the whole timeout.)
      #expect(onDisk.map { $0 <= .seconds(5) } == true, "\(value) on disk after \(onDisk.map { "\($0)" } ?? "never")")
      #expect(h.count("end") == 1, "\(value) landed while the reload hung")
      try await Task.sleep(for: .milliseconds(250))
    }
    #expect(h.count("start") == 2, "no second reload while one runs")
    #expect(published.highest < last, "the revision is not published while its reload is owed")

    // Reported as running longer than expected (half the timeout here).
    #expect(await eventually { !readiness.isReady })
    #expect(readiness.reason.contains("mapping x"), "\(readiness.reason)")
    #expect(await agent.progress.overdueReloads["x"] != nil)
    #expect(await agent.progress.lastError == "mapping x: reload_overdue", "the presence record's error field")
    #expect(String(decoding: registry.emitToBuffer(), as: UTF8.self).contains(#"etcsync_reload_overdue{mapping="x"} 1"#))

    // Killed at its timeout; the owed reload runs once, and covers the last version.
    #expect(await eventually { h.count("end") == 2 })
    #expect(h.count("start") == 3)
    #expect(await eventually { readiness.isReady && published.highest >= last })
    #expect(await agent.progress.overdueReloads.isEmpty)
    #expect(await agent.progress.errors["x"] == nil, "the owed reload succeeded")
    #expect(h.messages(atLeast: .warning).contains("a reload is running longer than expected; the files keep following etcd meanwhile"))
    let text = String(decoding: registry.emitToBuffer(), as: UTF8.self)
    #expect(text.contains(#"etcsync_reload_overdue{mapping="x"} 0"#) && text.contains(#"etcsync_reload_running{mapping="x"} 0"#))
    try await Task.sleep(for: .seconds(1))
    #expect(h.count("start") == 3, "exactly one owed reload")
    #expect(await agent.history.last?.reloaded == true)
    #expect(await daemon.stop() == nil)
    let state = StateFile(path: h.stateDirectory + "/state.json").load()[mapping: "x"]
    #expect(!state.pendingReload && state.appliedRevision == last, "the record says the reload covering the files ran")
  }

  @Test("a reload killed while the daemon stops stays owed; the next start runs it")
  func stoppedDuringReload() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let block = h.dir("block")
    let reload = ["sh", "-c", "echo start >> '\(h.commandLog)'; if [ -e '\(block)' ]; then rm -f '\(block)'; exec sleep 600; fi; echo end >> '\(h.commandLog)'"]
    let mapping = Mapping(name: "x", kind: .file, key: "/h/x", dest: h.dir("x"), reload: reload, commandTimeout: .seconds(60))
    try await h.put("/h/x", "v0")
    let configuration = h.configuration([mapping])
    let daemon = Daemon(try h.agent(configuration))
    #expect(await eventually { h.count("end") == 1 })
    try Disk.write(block, "")
    try await h.put("/h/x", "v1")
    #expect(await eventually { h.count("start") == 2 && Disk.read(h.dir("x")) == "v1" })
    #expect(await daemon.stop() == nil)
    #expect(StateFile(path: h.stateDirectory + "/state.json").load()[mapping: "x"].pendingReload)
    let results = try await h.agent(configuration).sync()
    #expect(results[mapping: "x"]?.reloaded == true && results[mapping: "x"]?.changed == false)
    #expect(h.count("end") == 2)
  }
}
