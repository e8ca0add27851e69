import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Testing

/// Two agents with one presence name: registering is create-if-absent, so the second is
/// refused (exit 2) or takes the name over when told to, and `status` counts each running
/// agent once. Real `etcsync run` processes and a real etcd.
@Suite("Presence name conflicts", .serialized)
struct PresenceConflictTests {
  static let prefix = PresenceStatusTests.prefix

  /// A configuration for the process `process` (its own destination and state) registering
  /// as `name`.
  static func configFile(_ h: AgentHarness, process: String, name: String, takeOver: Bool? = nil) throws -> String {
    let path = h.dir("\(process).yaml")
    try Disk.write(path, """
      etcd:
        endpoints: [\(h.server.endpoint)]
      state:
        dir: \(h.dir(process + ".state"))
      presence:
        prefix: \(Self.prefix)
        name: \(name)
        ttl: 3s\(takeOver.map { "\n  takeOver: \($0)" } ?? "")
      mappings:
        - name: app
          kind: tree
          prefix: /app/
          dest: \(h.dir(process))
      """)
    return path
  }

  static func start(_ h: AgentHarness, process: String, name: String, arguments: [String] = [], takeOver: Bool? = nil) throws -> EtcsyncProcess {
    try EtcsyncProcess(["run", "-c", try Self.configFile(h, process: process, name: name, takeOver: takeOver)] + arguments,
                       log: h.dir(process + ".log"))
  }

  static func record(_ h: AgentHarness, _ name: String) async throws -> (PresenceRecord, lease: Int64)? {
    try await PresenceStatusTests.record(h, name)
  }

  /// `etcsync status --json`: the agents' records.
  static func listed(_ h: AgentHarness) async throws -> [[String: Any]] {
    let json = try await EtcsyncProcess.run(["status", "--json", "--endpoints", h.server.endpoint, "--prefix", Self.prefix])
    let object = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any], "\(json)")
    return try #require(object["agents"] as? [[String: Any]])
  }

  @Test("a second agent with the same name is refused with exit 2 naming the holder; the first is unaffected and counted once")
  func secondRefused() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let revision = try await h.put("/app/a", "1")
    let first = try Self.start(h, process: "one", name: "web")
    defer { first.kill9() }
    #expect(await PresenceStatusTests.applied(h, "web", atLeast: revision), "log: \(first.log)")
    let (before, lease) = try #require(try await Self.record(h, "web"))
    #expect(before.pid == first.pid)

    let second = try Self.start(h, process: "two", name: "web")
    defer { second.kill9() }
    #expect(await second.waitForExit() == 2, "log: \(second.log)")
    let leaseHex = String(UInt64(bitPattern: lease), radix: 16)
    #expect(second.log.contains("is held by another running agent"), "\(second.log)")
    #expect(second.log.contains("host \"\(escapeControlCharacters(before.host))\""), "\(second.log)")
    #expect(second.log.contains("pid \(first.pid)"), "\(second.log)")
    #expect(second.log.contains("lease \(leaseHex)"), "\(second.log)")
    #expect(second.log.contains("--take-over"))
    #expect(!FileManager.default.fileExists(atPath: h.dir("two") + "/a"), "a refused agent syncs nothing")

    // The first still holds the key, with its own record and lease, and keeps it up to date.
    let (after, leaseAfter) = try #require(try await Self.record(h, "web"))
    #expect(after.pid == first.pid && leaseAfter == lease)
    let next = try await h.put("/app/b", "2")
    #expect(await PresenceStatusTests.applied(h, "web", atLeast: next), "log: \(first.log)")
    #expect(try await Self.record(h, "web")?.lease == lease)
    #expect(first.process.isRunning)

    // status: one agent, the first's record.
    let agents = try await Self.listed(h)
    #expect(agents.count == 1)
    #expect((agents.first?["record"] as? [String: Any])?["pid"] as? Int == Int(first.pid))
    let endpoint = ["--endpoints", h.server.endpoint, "--prefix", Self.prefix]
    let one = try await EtcsyncProcess.run(["status", "--wait-revision", "\(next)", "--min-agents", "1", "--timeout", "10s"] + endpoint)
    #expect(one.status == 0, "\(one.error)")
    let two = try await EtcsyncProcess.run(["status", "--wait-revision", "\(next)", "--min-agents", "2", "--timeout", "1s"] + endpoint)
    #expect(two.status == 1, "one agent runs under the name, not two: \(two.output)")
    #expect(two.error.contains("1 of 2 agent(s)"), "\(two.error)")

    // A refused agent stopped by a signal while it waits does not touch the key either.
    let third = try Self.start(h, process: "three", name: "web")
    defer { third.kill9() }
    try await Task.sleep(for: .milliseconds(500))
    third.signal(SIGTERM)
    _ = await third.waitForExit()
    #expect(try await Self.record(h, "web")?.lease == lease, "log: \(third.log)")

    first.signal(SIGTERM)
    #expect(await first.waitForExit() == 0)
    #expect(try await Self.record(h, "web") == nil, "the holder's clean stop deletes its key")
  }

  @Test("--take-over moves the name; the agent that held it stops updating the key, keeps syncing, and its stop leaves the key")
  func takeOver() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let first = try Self.start(h, process: "one", name: "web")
    defer { first.kill9() }
    #expect(await eventually { (try? await Self.record(h, "web")) != nil }, "log: \(first.log)")
    let old = try #require(try await Self.record(h, "web")).lease

    let second = try Self.start(h, process: "two", name: "web", arguments: ["--take-over"])
    defer { second.kill9() }
    #expect(await eventually { ((try? await Self.record(h, "web"))??.0.pid) == second.pid }, "log: \(second.log)")
    let new = try #require(try await Self.record(h, "web")).lease
    #expect(new != old)
    #expect(second.log.contains("presence key taken over from another agent"), "\(second.log)")

    // The first notices at its next update, and keeps syncing its files.
    let revision = try await h.put("/app/x", "1")
    #expect(await eventually { first.log.contains("presence key taken over by another agent") }, "log: \(first.log)")
    #expect(await eventually { Disk.read(h.dir("one") + "/x") == "1" && Disk.read(h.dir("two") + "/x") == "1" })
    #expect(await PresenceStatusTests.applied(h, "web", atLeast: revision))
    let (record, lease) = try #require(try await Self.record(h, "web"))
    #expect(record.pid == second.pid && lease == new, "the first does not take the key back")
    #expect(try await Self.listed(h).count == 1)

    first.signal(SIGTERM)
    #expect(await first.waitForExit() == 0, "log: \(first.log)")
    #expect(try await Self.record(h, "web")?.lease == new, "the first's stop leaves the second's key")
    second.signal(SIGTERM)
    #expect(await second.waitForExit() == 0)
    #expect(try await Self.record(h, "web") == nil)
  }

  @Test("presence.takeOver: true in the configuration takes the name over too")
  func takeOverSetting() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let first = try Self.start(h, process: "one", name: "web")
    defer { first.kill9() }
    #expect(await eventually { (try? await Self.record(h, "web")) != nil }, "log: \(first.log)")
    let second = try Self.start(h, process: "two", name: "web", takeOver: true)
    defer { second.kill9() }
    #expect(await eventually { ((try? await Self.record(h, "web"))??.0.pid) == second.pid }, "log: \(second.log)")
    #expect(second.process.isRunning)
  }

  @Test("presence.takeOver is a bool, false by default")
  func takeOverParsing() throws {
    #expect(try AgentConfiguration.load(yaml: "presence: {}", sourceName: "t").presence?.takeOver == false)
    #expect(try AgentConfiguration.load(yaml: "presence: {takeOver: true}", sourceName: "t").presence?.takeOver == true)
    #expect(throws: ConfigurationError.self) { try AgentConfiguration.load(yaml: "presence: {takeOver: sometimes}", sourceName: "t") }
  }

  @Test("an agent killed and restarted at once waits out its predecessor's lease instead of being refused")
  func restartAfterKill() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let first = try Self.start(h, process: "one", name: "web")
    defer { first.kill9() }
    #expect(await eventually { (try? await Self.record(h, "web")) != nil }, "log: \(first.log)")
    first.kill9()
    #expect(try await Self.record(h, "web") != nil, "the dead agent's key lives until its lease expires")
    let restarted = try Self.start(h, process: "one", name: "web")
    defer { restarted.kill9() }
    #expect(await eventually(within: .seconds(15)) { ((try? await Self.record(h, "web"))??.0.pid) == restarted.pid },
            "log: \(restarted.log)")
    #expect(restarted.process.isRunning, "log: \(restarted.log)")
  }

  @Test("after its lease expired, an agent registers again only if the name is free; status counts one agent")
  func reRegistrationAfterExpiry() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let first = try Self.start(h, process: "one", name: "web")
    defer { first.kill9() }
    #expect(await eventually { (try? await Self.record(h, "web")) != nil }, "log: \(first.log)")
    // Paused past its TTL: its lease expires and the key goes; another agent takes the free name.
    first.signal(SIGSTOP)
    #expect(await eventually(within: .seconds(15)) { (try? await Self.record(h, "web")) ?? nil == nil })
    let second = try Self.start(h, process: "two", name: "web")
    defer { second.kill9() }
    #expect(await eventually { ((try? await Self.record(h, "web"))??.0.pid) == second.pid }, "log: \(second.log)")
    let lease = try #require(try await Self.record(h, "web")).lease
    // Resumed, the first finds the name held by a running agent and leaves it.
    first.signal(SIGCONT)
    let revision = try await h.put("/app/y", "1")
    #expect(await eventually { first.log.contains("no longer updates it") }, "log: \(first.log)")
    #expect(await eventually { Disk.read(h.dir("one") + "/y") == "1" }, "it keeps syncing; log: \(first.log)")
    #expect(await PresenceStatusTests.applied(h, "web", atLeast: revision))
    let (record, after) = try #require(try await Self.record(h, "web"))
    #expect(record.pid == second.pid && after == lease, "log: \(first.log)")
    #expect(try await Self.listed(h).count == 1)
  }

  @Test("status does not count a presence key bound to no lease, nor one that is not a record")
  func unleasedKeysNotCounted() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let record = PresenceRecord(name: "ghost", host: "h", pid: 1, version: "0", startedAt: "t", mappings: [],
                                appliedRevision: 1 << 40, updatedAt: "t")
    _ = try await h.put(Array((Self.prefix + "/ghost").utf8), record.json)
    _ = try await h.put(Self.prefix + "/junk", "not json")
    let agent = try Self.start(h, process: "one", name: "web")
    defer { agent.kill9() }
    let revision = try await h.put("/app/z", "1")
    #expect(await PresenceStatusTests.applied(h, "web", atLeast: revision), "log: \(agent.log)")
    let endpoint = ["--endpoints", h.server.endpoint, "--prefix", Self.prefix]
    let status = try await EtcsyncProcess.run(["status"] + endpoint)
    #expect(status.output.contains("1 agent(s)"), "\(status.output)")
    #expect(status.error.contains("ghost: bound to no lease"), "\(status.error)")
    #expect(status.error.contains("junk: not a presence record"), "\(status.error)")
    // The stale key's huge applied revision does not satisfy a wait for two agents.
    let waited = try await EtcsyncProcess.run(["status", "--wait-revision", "\(revision)", "--min-agents", "2", "--timeout", "1s"] + endpoint)
    #expect(waited.status == 1)
    // An agent named like the stale key takes it over: no running agent keeps it.
    let ghost = try Self.start(h, process: "two", name: "ghost")
    defer { ghost.kill9() }
    #expect(await eventually { ((try? await Self.record(h, "ghost"))??.0.pid) == ghost.pid }, "log: \(ghost.log)")
  }
}
