@testable import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Synchronization
import Testing

/// The applied revision the agent publishes (presence, systemd, `status --wait-revision`)
/// is only ever one whose files are written and whose reload has run.
@Suite("Publish order", .serialized)
struct PublishOrderTests {
  /// Every revision an observer was told, in order.
  final class Published: Sendable {
    let revisions = Mutex<[Int64]>([])
    var highest: Int64 { revisions.withLock { $0.max() ?? 0 } }
    func record(_ progress: AgentProgress) { revisions.withLock { $0.append(progress.appliedRevision) } }
  }

  /// A reload that appends `start` and `end` to the command log, and in between waits for
  /// `release` to exist while `block` exists.
  static func gatedReload(_ h: AgentHarness) -> [String] {
    let script = "echo start >> '\(h.commandLog)'; if [ -e '\(h.dir("block"))' ]; then while [ ! -e '\(h.dir("release"))' ]; do sleep 0.02; done; fi; echo end >> '\(h.commandLog)'"
    return ["sh", "-c", script]
  }

  @Test("a readiness change while the files and reload are in flight does not publish their revision")
  func readinessChangeDuringApply() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/p/x", "1")
    var configuration = h.configuration([
      Mapping(name: "x", kind: .file, key: "/p/x", dest: h.dir("x"), reload: Self.gatedReload(h)),
    ])
    configuration.commandTimeout = .seconds(120)
    let readiness = Readiness()
    let agent = try Agent(configuration: configuration, client: h.client, logger: h.logger, readiness: readiness)
    let published = Published()
    await agent.observe { published.record($0) }
    let daemon = Daemon(agent)
    #expect(await eventually { h.count("end") == 1 && published.highest > 0 })
    let before = published.highest

    try Disk.write(h.dir("block"), "")
    let revision = try await h.put("/p/x", "2")
    // The file is written and its reload is running (and blocked).
    #expect(await eventually { h.count("start") == 2 && Disk.read(h.dir("x")) == "2" })
    // A readiness change now goes through `publishProgress` while the apply awaits: the
    // probe (every 2 s) finds etcd answering and flips it back.
    readiness.connected(false, reason: "test")
    #expect(await eventually { readiness.isReady })
    #expect(published.highest < revision, "published \(published.revisions.withLock { $0 }) while the reload of \(revision) runs")
    #expect(await agent.progress.appliedRevision == before)

    try Disk.write(h.dir("release"), "")
    #expect(await eventually { published.highest >= revision })
    #expect(h.count("end") == 2)
    #expect(await daemon.stop() == nil)
  }
}
