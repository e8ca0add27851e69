import EtcSync
import EtcdTestSupport
import Foundation
import Glibc
import Testing

/// A SIGHUP replaces the running agent with a new generation. The old generation's reloads are
/// killed and awaited first: two reloads of one service never run at once.
@Suite("Reloads across a configuration reload", .serialized)
struct ReloadGenerationTests {
  @Test("SIGHUP during a hanging reload: the old one has ended (its TERM trap included) before the new generation's reload starts")
  func sighupDuringReload() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let lock = h.dir("reload.lock")
    let overlap = h.dir("overlap")
    let block = h.dir("block")
    // The reload holds a lock directory while it runs, also through its TERM trap, which
    // takes a while to clean up (as a service's reload may). A second reload that finds the
    // lock held records the overlap.
    let script = h.dir("reload.sh")
    try Disk.write(script, """
      mkdir '\(lock)' 2>/dev/null || echo overlap >> '\(overlap)'
      echo start >> '\(h.commandLog)'
      trap 'sleep 1.5; echo term >> "\(h.commandLog)"; rmdir "\(lock)"; exit 1' TERM
      if [ -e '\(block)' ]; then rm -f '\(block)'; sleep 600 & wait $!; fi
      echo end >> '\(h.commandLog)'
      rmdir '\(lock)'

      """)
    let config = h.dir("run.yaml")
    try Disk.write(config, """
      etcd: {endpoints: [\(h.server.endpoint)]}
      state: {dir: \(h.dir("state"))}
      mappings:
        - {name: x, key: /g/x, dest: \(h.dir("x")), reload: [sh, \(script)], commandTimeout: 60s}
      """)
    try await h.put("/g/x", "v0")
    let agent = try EtcsyncProcess(["run", "-c", config], log: h.dir("run.log"))
    defer { agent.kill9() }
    #expect(await eventually { h.count("end") == 1 }, "log: \(agent.log)")

    // The next reload hangs; a SIGHUP comes while it runs.
    try Disk.write(block, "")
    try await h.put("/g/x", "v1")
    #expect(await eventually { h.count("start") == 2 && Disk.read(h.dir("x")) == "v1" }, "log: \(agent.log)")
    agent.signal(SIGHUP)
    #expect(await eventually { agent.log.contains("configuration reloaded") }, "log: \(agent.log)")
    // The old reload was killed (its trap ran); the new generation runs the reload it still
    // owed, after it.
    #expect(await eventually { h.count("end") == 2 }, "log: \(agent.log)")
    #expect(h.commandLines == ["start", "end", "start", "term", "start", "end"], "\(h.commandLines)")
    #expect(Disk.read(overlap) == nil, "two reloads ran at once")
    agent.signal(SIGTERM)
    #expect(await agent.waitForExit() == 0, "log: \(agent.log)")
  }
}
