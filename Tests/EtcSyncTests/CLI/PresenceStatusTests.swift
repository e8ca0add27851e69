import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Testing

/// The `etcsync` executable beside the test bundle, run as a child process.
final class EtcsyncProcess: @unchecked Sendable {
  static var binary: String {
    URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("etcsync").path
  }

  let process: ChildProcess
  let logPath: String

  /// Starts `etcsync ARGS`, its output going to `logPath`; `environment` is added to the
  /// test process's own.
  init(_ arguments: [String], log logPath: String, environment: [String: String] = [:]) throws {
    self.logPath = logPath
    _ = FileManager.default.createFile(atPath: logPath, contents: nil)
    self.process = try ChildProcess([Self.binary] + arguments,
                                    environment: ProcessInfo.processInfo.environment.merging(environment) { $1 },
                                    output: logPath, error: logPath)
  }

  var pid: pid_t { self.process.processIdentifier }
  var log: String { Disk.read(self.logPath) ?? "" }

  func signal(_ number: Int32) { self.process.signal(number) }

  /// Waits for the process to exit (the limit only bounds a failing test); its status.
  func waitForExit(within limit: Duration = .seconds(30)) async -> Int32? {
    await self.process.exit(within: limit) ? self.process.terminationStatus : nil
  }

  /// Kills it and every process under it if it still runs (test clean-up).
  func kill9() {
    if self.process.isRunning {
      self.process.signal(SIGCONT)
      ProcessTree.kill(self.process)
    }
  }

  /// Runs `etcsync ARGS` to completion: exit status, standard output, standard error.
  static func run(_ arguments: [String]) async throws -> (status: Int32, output: String, error: String) {
    try await self.runTool([binary] + arguments)
  }

  /// Runs `PROGRAM ARGS` to completion: exit status, standard output, standard error.
  static func runTool(_ argv: [String]) async throws -> (status: Int32, output: String, error: String) {
    let directory = TemporaryDirectory("etcsync-cli")
    let out = directory("stdout")
    let err = directory("stderr")
    let process = try ChildProcess(argv, output: out, error: err)
    // The limit only bounds a hung run (then killed with what it started, and reported).
    if !(await process.exit(within: .seconds(300))) {
      ProcessTree.kill(process)
      Issue.record("\(argv) still ran after 300 s; killed")
    }
    return (process.isRunning ? -1 : process.terminationStatus, Disk.read(out) ?? "", Disk.read(err) ?? "")
  }
}

/// Clean-up of a test's child process and whatever it started.
enum ProcessTree {
  /// `pid`'s descendants (children of every thread, recursively), from /proc.
  static func descendants(of pid: pid_t) -> [pid_t] {
    var found: [pid_t] = []
    var queue = [pid]
    while let next = queue.popLast() {
      let children = ExecModeTests.children(of: next)
      found += children
      queue += children
    }
    return found
  }

  /// SIGKILLs `process` and every process under it (its exec child, a reload it left behind),
  /// then waits for it to be reaped, at most `limit`: a clean-up never hangs the suite.
  static func kill(_ process: ChildProcess, within limit: Duration = .seconds(30)) {
    // Stopped first, so that it starts no new child (a restart) while its children are killed.
    process.signal(SIGSTOP)
    for descendant in descendants(of: process.processIdentifier) { Glibc.kill(descendant, SIGKILL) }
    process.signal(SIGKILL)
    process.waitUntilExit(within: limit)
  }
}

/// Presence keys and `etcsync status`, with real `etcsync run` processes and a real etcd.
@Suite("Presence and status", .serialized)
struct PresenceStatusTests {
  static let prefix = "/etcsync/agents"

  /// A configuration file for agent `name`: a tree of `/app/` into its own directory.
  static func configFile(_ h: AgentHarness, name: String, ttl: String) throws -> String {
    let path = h.dir("\(name).yaml")
    try Disk.write(path, """
      etcd:
        endpoints: [\(h.server.endpoint)]
      state:
        dir: \(h.dir(name + ".state"))
      presence:
        prefix: \(Self.prefix)
        name: \(name)
        ttl: \(ttl)
      mappings:
        - name: app
          kind: tree
          prefix: /app/
          dest: \(h.dir(name))
      """)
    return path
  }

  /// Agent `name` with a presence TTL of `ttl`: 3 s where a test waits for the lease to
  /// expire, 30 s where it must not (a loaded machine can stall an agent past 3 s).
  static func start(_ h: AgentHarness, name: String, ttl: String = "30s") throws -> EtcsyncProcess {
    try EtcsyncProcess(["run", "-c", try Self.configFile(h, name: name, ttl: ttl)], log: h.dir(name + ".log"))
  }

  static func record(_ h: AgentHarness, _ name: String) async throws -> (PresenceRecord, lease: Int64)? {
    guard let kv = try await h.client.get(Self.prefix + "/" + name).kvs.first else { return nil }
    return (try JSONDecoder().decode(PresenceRecord.self, from: Data(kv.value)), kv.lease)
  }

  static func applied(_ h: AgentHarness, _ name: String, atLeast revision: Int64) async -> Bool {
    await eventually { ((try? await Self.record(h, name))??.0.appliedRevision ?? 0) >= revision }
  }

  @Test("the presence key lives while the agent runs and goes at once after SIGTERM")
  func sigterm() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let revision = try await h.put("/app/a", "1")
    let agent = try Self.start(h, name: "a1")
    defer { agent.kill9() }
    #expect(await Self.applied(h, "a1", atLeast: revision), "log: \(agent.log)")
    let (record, lease) = try #require(try await Self.record(h, "a1"))
    #expect(record.name == "a1" && record.pid == agent.pid && record.mappings == ["app"] && record.version == EtcSync.version)
    #expect(record.lastError == nil)
    #expect(record.ready == true)
    let ttl = try await h.client.timeToLive(lease)
    #expect(ttl.grantedTTL == 30 && ttl.ttl > 0)
    // The applied revision follows the agent's progress.
    let next = try await h.put("/app/b", "2")
    #expect(await Self.applied(h, "a1", atLeast: next))
    agent.signal(SIGTERM)
    #expect(await agent.waitForExit() == 0)
    #expect(try await Self.record(h, "a1") == nil, "revoked on a clean stop, not left to expire")
  }

  @Test("after SIGKILL the key is gone within its TTL; a lost lease is replaced and the key put again")
  func sigkillAndLostLease() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let agent = try Self.start(h, name: "a1", ttl: "3s")
    defer { agent.kill9() }
    #expect(await eventually { (try? await Self.record(h, "a1")) != nil }, "log: \(agent.log)")
    // The lease is lost (revoked behind the agent's back, as when etcd forgets it).
    let first = try #require(try await Self.record(h, "a1")).lease
    try await h.client.revoke(first)
    #expect(await eventually {
      guard let lease = (try? await Self.record(h, "a1"))??.lease else { return false }
      return lease != first
    }, "log: \(agent.log)")
    // etcd killed and restarted: the key is there again once it is back.
    h.server.kill9()
    try await h.server.restart()
    #expect(await eventually { (try? await Self.record(h, "a1")) != nil })
    let third = try #require(try await Self.record(h, "a1")).lease
    agent.kill9()
    #expect(try await Self.record(h, "a1") != nil, "a killed agent cannot revoke")
    #expect(await eventually(within: .seconds(15)) { (try? await Self.record(h, "a1")) ?? nil == nil })
    #expect(try await h.client.timeToLive(third).ttl == -1, "it expired with its lease")
  }

  @Test("status lists two agents; --wait-revision returns once both applied a put and names a stopped laggard")
  func statusAndWait() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let one = try Self.start(h, name: "a1")
    defer { one.kill9() }
    let two = try Self.start(h, name: "a2")
    defer { two.kill9() }
    let endpoint = ["--endpoints", h.server.endpoint, "--prefix", Self.prefix]
    let revision = try await h.put("/app/x", "1")
    let waited = try await EtcsyncProcess.run(["status", "--wait-revision", "\(revision)", "--min-agents", "2", "--timeout", "30s"] + endpoint)
    #expect(waited.status == 0, "\(waited.error)\n\(one.log)\n\(two.log)")
    #expect(await Self.applied(h, "a1", atLeast: revision))
    #expect(await Self.applied(h, "a2", atLeast: revision))

    let table = try await EtcsyncProcess.run(["status"] + endpoint)
    #expect(table.status == 0)
    let lines = table.output.split(separator: "\n").map(String.init)
    #expect(lines.first?.hasPrefix("NAME") == true)
    // NAME HOST VERSION APPLIED …: each agent's applied revision is at least the put's.
    for name in ["a1", "a2"] {
      let columns = try #require(lines.first { $0.hasPrefix(name + " ") }).split(separator: " ")
      #expect(columns.count >= 4 && (Int64(columns[3]) ?? 0) >= revision, "\(table.output)")
    }
    let json = try await EtcsyncProcess.run(["status", "--json"] + endpoint)
    let object = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
    let agents = try #require(object["agents"] as? [[String: Any]])
    #expect(agents.compactMap { ($0["record"] as? [String: Any])?["name"] as? String } == ["a1", "a2"])

    // a2 is stopped: a new put is applied by a1 only, and the wait names a2.
    two.signal(SIGSTOP)
    let later = try await h.put("/app/x", "2")
    #expect(await Self.applied(h, "a1", atLeast: later))
    let timedOut = try await EtcsyncProcess.run(["status", "--wait-revision", "\(later)", "--timeout", "1s"] + endpoint)
    #expect(timedOut.status == 1)
    #expect(timedOut.error.contains("1 of 2 agent(s) are current through revision \(later); lagging: a2 (current through "), "\(timedOut.error)")
    #expect(!timedOut.error.contains("a1 ("))
    two.signal(SIGCONT)
    let resumed = try await EtcsyncProcess.run(["status", "--wait-revision", "\(later)", "--min-agents", "2", "--timeout", "30s"] + endpoint)
    #expect(resumed.status == 0, "\(resumed.error)")
  }

  @Test("a presence prefix inside the watched range does not feed back into presence puts")
  func presenceInsideWatchedRange() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let path = h.dir("inside.yaml")
    try Disk.write(path, """
      etcd:
        endpoints: [\(h.server.endpoint)]
      state:
        dir: \(h.dir("inside.state"))
      presence: {prefix: /m/agents, name: a1, ttl: 30s}
      mappings:
        - {name: low, kind: tree, prefix: /a/, dest: \(h.dir("low"))}
        - {name: high, kind: tree, prefix: /z/, dest: \(h.dir("high"))}
      """)
    let agent = try EtcsyncProcess(["run", "-c", path], log: h.dir("inside.log"))
    defer { agent.kill9() }
    let put = try await h.put("/a/x", "1")
    #expect(await eventually {
      guard let kv = try? await h.client.get("/m/agents/a1").kvs.first,
        let record = try? JSONDecoder().decode(PresenceRecord.self, from: Data(kv.value))
      else { return false }
      return record.appliedRevision >= put
    }, "log: \(agent.log)")
    let settled = try await h.client.get("/m/agents/a1").header.revision
    // A feedback loop would put again every second; wait out two of its periods.
    try await Task.sleep(for: .milliseconds(2500))
    #expect(try await h.client.get("/m/agents/a1").header.revision == settled, "log: \(agent.log)")
  }
}
