@testable import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Testing

/// `FleetStatus.read` (what `etcsync status` shows) over more presence keys than one page and
/// more leases than it asks about at once, against a real etcd: the oracle is what was put.
@Suite("Fleet status read")
struct FleetStatusReadTests {
  @Test("1,100 records on 70 leases across pages: every live one listed once, in order, with its lease's time; a key on no lease and one that is no record reported, a revoked lease's key and the request key left out")
  func pagedRead() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let prefix = "/fleet"
    var leases: [Int64] = []
    for _ in 0..<70 { leases.append(try await h.client.grant(ttl: 600).id) }
    let expired = try await h.client.grant(ttl: 600).id
    func record(_ i: Int) -> String {
      String(decoding: PresenceRecord(name: String(format: "agent-%05d", i), host: "h\(i)", pid: Int32(i), version: "t",
                                      startedAt: "-", mappings: ["m"], appliedRevision: 1, updatedAt: "-").json, as: UTF8.self)
    }
    // In Txns of 100 puts (etcd's default limit is 128 operations).
    for first in stride(from: 0, to: 1_100, by: 100) {
      let ops = (first..<first + 100).map { i in
        Op.put(prefix + String(format: "/agent-%05d", i), record(i), PutOptions(lease: leases[i % leases.count]))
      }
      _ = try await h.client.txn(if: [], then: ops)
    }
    _ = try await h.put(prefix + "/unleased", record(9_000))
    _ = try await h.put(prefix + "/garbage", "not json")
    _ = try await h.client.put(prefix + "/gone", record(9_001), options: PutOptions(lease: expired))
    _ = try await h.put(ProgressRequest.key(prefix: prefix), "0")
    // Revoked after the keys are put: the key goes with it, as with an agent that died.
    _ = try await h.client.revoke(expired)
    let revision = try await h.put("/elsewhere", "x")

    let (agents, read, problems) = try await FleetStatus.read(h.client, prefix: prefix)
    #expect(read == revision)
    #expect(agents.map(\.record.name) == (0..<1_100).map { String(format: "agent-%05d", $0) })
    #expect(agents.allSatisfy { $0.leaseSecondsLeft > 0 && $0.leaseSecondsLeft <= 600 })
    #expect(problems.count == 2, "\(problems)")
    #expect(problems.contains { $0.contains("/fleet/unleased") && $0.contains("bound to no lease") })
    #expect(problems.contains { $0.contains("/fleet/garbage") && $0.contains("not a presence record") })
  }
}
