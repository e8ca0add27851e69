import EtcdClient
import EtcdTestSupport
import Foundation
import Logging
import ServiceLifecycle
import Testing

@testable import EtcSync

/// Presence against ``InMemoryEtcd`` through its ``PresenceStore`` seam: registration, a held
/// name, a lost lease, a take-over by another agent, and the end of its run (cancelled, or as a
/// `Service` at its group's graceful shutdown). Each test reads the key and its lease back from
/// the store. `PresenceTests` and `PresenceConflictTests` check the same against a real etcd.
@Suite("Presence in memory")
struct InMemoryPresenceTests {
  static let settings = PresenceSettings(prefix: "/agents", name: "web-01", ttl: .seconds(10))
  static let key = Array("/agents/web-01".utf8)

  let etcd = InMemoryEtcd()
  let logs: RecordingLogHandler.Store
  let logger: Logger

  init() {
    (self.logger, self.logs) = RecordingLogHandler.logger()
  }

  func presence(_ settings: PresenceSettings = Self.settings) -> Presence {
    Presence(settings: settings, store: self.etcd, logger: self.logger, mappings: ["app"])
  }

  /// The presence key as the store holds it now: its record and lease.
  func held() async throws -> (record: PresenceRecord, lease: Int64)? {
    guard let kv = try await self.etcd.get(.key(Self.key)).kvs.first else { return nil }
    return (try JSONDecoder().decode(PresenceRecord.self, from: Data(kv.value)), kv.lease)
  }

  /// Another agent's key under the name, on a lease of its own.
  func otherHolder() async throws -> Int64 {
    let lease = try await self.etcd.grant(ttl: 10)
    let record = PresenceRecord(name: "web-01", host: "elsewhere", pid: 7, version: "0", startedAt: "2026-01-01T00:00:00Z",
                                mappings: [], appliedRevision: 3, updatedAt: "2026-01-01T00:00:00Z")
    _ = try await self.etcd.put(Self.key, record.json, lease: lease.id)
    return lease.id
  }

  @Test("registers the key on a lease, follows the agent's progress, and deletes the key and revokes the lease when cancelled")
  func registersFollowsAndReleases() async throws {
    let presence = self.presence()
    try await presence.register()
    let lease = await presence.lease
    let first = try #require(try await self.held())
    #expect(first.lease == lease && lease != 0)
    #expect(first.record.name == "web-01" && first.record.mappings == ["app"] && first.record.appliedRevision == 0)

    let run = Task { await presence.run() }
    presence.report(AgentProgress(appliedRevision: 42, errors: [:], ready: true))
    #expect(try await eventually { try await self.held()?.record.appliedRevision == 42 })
    #expect(try await self.held()?.lease == lease, "the same lease throughout")
    presence.report(AgentProgress(appliedRevision: 42, errors: ["app": "check"], ready: true))
    #expect(try await eventually { try await self.held()?.record.lastError != nil }, "an error is put at once")

    run.cancel()
    await run.value
    #expect(try await self.held() == nil, "the key is deleted")
    #expect(try await self.etcd.timeToLive(lease).ttl == -1, "the lease is revoked")
  }

  @Test("a name another live agent holds is refused; --take-over moves the key to this agent's lease")
  func heldNameRefusedOrTakenOver() async throws {
    let other = try await self.otherHolder()
    let presence = self.presence()
    // The holder's lease does not run down (the store's clock stands still): it is alive.
    await #expect(throws: PresenceConflict.self) { try await presence.register() }
    let kept = try #require(try await self.held())
    #expect(kept.lease == other && kept.record.host == "elsewhere", "the holder's key is left as it was")
    #expect(try await self.etcd.timeToLive(other).ttl > 0)

    try await presence.register(takeOver: true)
    let moved = try #require(try await self.held())
    let ours = await presence.lease
    #expect(moved.lease == ours && moved.lease != other)
    #expect(moved.record.host != "elsewhere")
  }

  @Test("a lost lease (expired while the agent was away) is replaced: the key is created again on a new lease")
  func lostLeaseRegistersAgain() async throws {
    let presence = self.presence()
    try await presence.register()
    let first = await presence.lease
    let run = Task { await presence.run() }
    self.etcd.expire(first)
    #expect(try await eventually {
      guard let held = try await self.held() else { return false }
      let current = await presence.lease
      return held.lease != first && held.lease == current
    })
    #expect(!(await presence.isSuperseded))
    run.cancel()
    await run.value
  }

  @Test("the lease is kept alive while the presence runs: the store's clock passes three TTLs and the key stays on its first lease")
  func keptAlive() async throws {
    let presence = self.presence()
    try await presence.register()
    let lease = await presence.lease
    let run = Task { await presence.run() }
    for _ in 0..<6 {
      self.etcd.advance(by: .seconds(5))
      // Renewed since: the time left is the whole TTL again (without renewals the lease
      // would expire at the second step).
      #expect(try await eventually { try await self.etcd.timeToLive(lease).ttl == 10 })
    }
    let held = try #require(try await self.held())
    #expect(held.lease == lease)
    run.cancel()
    await run.value
  }

  @Test("a key another agent took over is left to it: this presence stops updating it and its run ends")
  func takenOverStops() async throws {
    let presence = self.presence()
    try await presence.register()
    let run = Task { await presence.run() }
    let other = try await self.otherHolder()
    presence.report(AgentProgress(appliedRevision: 9, errors: [:], ready: true))
    #expect(await eventually { await presence.isSuperseded })
    await run.value
    let held = try #require(try await self.held())
    #expect(held.lease == other && held.record.host == "elsewhere" && held.record.appliedRevision == 3)
    #expect(self.logs.all.contains { $0.0 == .error && $0.1.contains("taken over by another agent") })
  }

  @Test("as a Service, the presence ends at its group's graceful shutdown, deleting its key and revoking its lease", .timeLimit(.minutes(1)))
  func gracefulShutdownReleases() async throws {
    let presence = self.presence()
    let group = ServiceGroup(services: [presence], logger: self.logger)
    let running = Task { try await group.run() }
    #expect(try await eventually { try await self.held() != nil }, "run() registers")
    let lease = await presence.lease
    await group.triggerGracefulShutdown()
    try await running.value
    #expect(try await self.held() == nil)
    #expect(try await self.etcd.timeToLive(lease).ttl == -1)
  }
}
