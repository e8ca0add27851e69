import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Testing

/// `etcsync run` and `etcsync status` with etcd's gRPC proxy as their only endpoint (issue 13
/// §1): write-back's compare-and-swap Txns, the presence key's lease and its keep-alives (the
/// proxy has a lease cache of its own), the status read and its wait. The oracle is etcd
/// itself, read directly, never through the proxy.
@Suite("etcsync through etcd's gRPC proxy", .timeLimit(.minutes(4)))
struct ProcessThroughProxyTests {
  static let prefix = "/etcsync/agents"

  @Test("write-back reaches etcd, the presence lease outlives its TTL several times, status --wait-revision answers (also for a revision outside the mapped prefixes, LAG 0), SIGTERM removes the key")
  func runThroughProxy() async throws {
    let h = try await AgentHarness.start(throughProxy: true)
    defer { h.stop() }
    let proxy = try #require(h.proxy)
    let direct = try RunningClient(h.server.configuration())
    defer { direct.stop() }
    _ = try await direct.client.put("/pw/a", "from etcd")
    let config = h.dir("px.yaml")
    // A TTL of 10 s: long enough that a loaded machine does not stall the agent past it,
    // short enough that the wait below spans several.
    try Disk.write(config, """
      etcd: {endpoints: [\(proxy.endpoint)]}
      state: {dir: \(h.dir("state"))}
      presence: {prefix: \(Self.prefix), name: px, ttl: 10s}
      mappings:
        - {name: wb, kind: tree, prefix: /pw/, dest: \(h.dir("wb")), writeBack: true}
      """)
    let agent = try EtcsyncProcess(["run", "-c", config], log: h.dir("px.log"))
    defer { agent.kill9() }
    #expect(await eventually { Disk.read(h.dir("wb/a")) == "from etcd" }, "log: \(agent.log)")

    // Write-back: a local edit is pushed (a compare-and-swap Txn through the proxy).
    try Disk.write(h.dir("wb/a"), "edited here")
    #expect(await eventually {
      (try? await direct.client.get("/pw/a").kvs.first?.value) == Array("edited here".utf8)
    }, "log: \(agent.log)")

    // Presence: the key is bound to a lease, and the same lease still holds it after 2.5
    // TTLs: the keep-alives pass through the proxy.
    let key = Self.prefix + "/px"
    #expect(await eventually { (try? await direct.client.get(key).kvs.first) != nil }, "log: \(agent.log)")
    let lease = try #require(try await direct.client.get(key).kvs.first).lease
    #expect(lease != 0)
    try await Task.sleep(for: .seconds(25))
    #expect(try await direct.client.get(key).kvs.first?.lease == lease, "log: \(agent.log)")
    #expect(try await direct.client.timeToLive(lease).ttl > 0)

    // status through the proxy waits for the agent to have applied a change of its prefix.
    let revision = try await direct.client.put("/pw/b", "2").header.revision
    let status = try await EtcsyncProcess.run(["status", "--endpoints", proxy.endpoint, "--prefix", Self.prefix,
                                               "--min-agents", "1", "--wait-revision", "\(revision)", "--timeout", "60s"])
    #expect(status.status == 0, "\(status.output)\(status.error)\nlog: \(agent.log)")
    #expect(Disk.read(h.dir("wb/b")) == "2")
    // And for a revision that touches nothing it maps (a deploy of another application's
    // keys): it is current through it all the same (its record, read from etcd, says so), and
    // an idle agent shows no lag once its answer is in.
    let unrelated = try await direct.client.put("/elsewhere/x", "1").header.revision
    let current = try await EtcsyncProcess.run(["status", "--endpoints", proxy.endpoint, "--prefix", Self.prefix,
                                                "--min-agents", "1", "--wait-revision", "\(unrelated)", "--timeout", "60s"])
    #expect(current.status == 0, "\(current.output)\(current.error)\nlog: \(agent.log)")
    let record = try #require(try await direct.client.get(key).kvs.first)
    #expect(try JSONDecoder().decode(PresenceRecord.self, from: Data(record.value)).currentThrough >= unrelated)
    #expect(await eventually {
      guard let listed = try? await EtcsyncProcess.run(["status", "--json", "--endpoints", proxy.endpoint, "--prefix", Self.prefix]),
        let object = try? JSONSerialization.jsonObject(with: Data(listed.output.utf8)) as? [String: Any],
        let agents = object["agents"] as? [[String: Any]], agents.count == 1
      else { return false }
      return (agents[0]["lag"] as? Int) == 0
    }, "log: \(agent.log)")

    // A clean stop revokes the lease through the proxy: the key goes at once.
    agent.signal(SIGTERM)
    #expect(await agent.waitForExit() == 0, "log: \(agent.log)")
    #expect(try await direct.client.get(key).kvs.isEmpty)
  }
}
