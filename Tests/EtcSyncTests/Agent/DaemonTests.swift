import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Logging
import Testing

/// `Agent.run()`: sync, then watch, against a real etcd that changes, compacts and dies.
/// Serialized: the bursts measure coalescing, which the other tests' load would blur.
@Suite("Agent daemon", .serialized)
struct DaemonTests {
  /// Waits until the daemon's first sync has applied every mapping.
  static func started(_ agent: Agent, mappings: Int) async -> Bool {
    await eventually { await agent.history.count >= mappings }
  }

  @Test("updates and deletes propagate to every kind of mapping")
  func updatesAndDeletes() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try Disk.write(h.dir("t.tmpl"), "{{ range gets \"/d/tree/*\" }}{{ base .Key }}={{ .Value }}\n{{ end }}")
    let mappings = [
      Mapping(name: "swap", kind: .tree, prefixes: ["/d/tree/"], dest: h.dir("swap"), reload: h.logCommand("swap")),
      Mapping(name: "flat", kind: .tree, prefixes: ["/d/tree/"], dest: h.dir("flat"), reload: h.logCommand("flat"), swap: .inPlace),
      Mapping(name: "tpl", kind: .template, prefixes: ["/d/tree/"], template: h.dir("t.tmpl"), dest: h.dir("list")),
      Mapping(name: "motd", kind: .file, key: "/d/motd", dest: h.dir("motd")),
      Mapping(name: "env", kind: .format, prefixes: ["/d/tree/"], dest: h.dir("app.env"), format: .env),
    ]
    try await h.put("/d/tree/a", "1")
    try await h.put("/d/tree/b", "2")
    try await h.put("/d/tree/sub/c", "3")
    try await h.put("/d/motd", "hello")
    let agent = try h.agent(h.configuration(mappings))
    let daemon = Daemon(agent)
    #expect(await Self.started(agent, mappings: mappings.count))
    #expect(Disk.read(h.dir("list")) == "a=1\nb=2\n")

    try await h.put("/d/tree/a", "10")
    try await h.delete("/d/tree/b")
    try await h.delete("/d/tree/sub/c")
    try await h.put("/d/tree/new", "4")
    try await h.put("/d/motd", "bye")
    try await h.put("/d/unrelated", "x")
    let done = await eventually {
      Disk.read(h.dir("list")) == "a=10\nnew=4\n" && Disk.read(h.dir("motd")) == "bye"
        && Disk.read(h.dir("app.env")) == "A=10\nNEW=4\n"
        && Disk.names(h.dir("flat")) == ["a", "new"] && Disk.names(h.dir("swap")).filter { !$0.hasPrefix("..") } == ["a", "new"]
    }
    #expect(done, "list \(Disk.read(h.dir("list")) ?? "-"), flat \(Disk.names(h.dir("flat")))")
    #expect(Disk.read(h.dir("swap/a")) == "10" && Disk.read(h.dir("flat/new")) == "4")
    #expect(!Disk.exists(h.dir("flat/sub")), "directories emptied by deletes are removed")
    #expect(await daemon.stop() == nil)
    #expect(Disk.temporaryFiles(h.dir("")).isEmpty, "once stopped, no temp file is left (state file included)")
    #expect(h.count("swap") >= 2 && h.count("flat") >= 2)
  }

  @Test("one reload per applied batch; a failing reload is reported and the daemon keeps running")
  func reloadPerBatch() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let mappings = [
      Mapping(name: "tree", kind: .tree, prefixes: ["/b/"], dest: h.dir("tree"), reload: h.logCommand("tree")),
      Mapping(name: "broken", kind: .file, key: "/b/x", dest: h.dir("x"), reload: h.logCommand("broken", exit: 3)),
    ]
    try await h.put("/b/x", "0")
    let agent = try h.agent(h.configuration(mappings))
    let daemon = Daemon(agent)
    #expect(await Self.started(agent, mappings: 2))
    let first = await agent.history
    #expect(first[mapping: "broken"]?.error?.hasPrefix("reload failed") == true)
    #expect(first[mapping: "broken"]?.reloaded == false)
    #expect(Disk.read(h.dir("x")) == "0", "the file stays written")
    // Three keys in one transaction: one revision, one batch, one reload.
    _ = try await h.client.txn(if: [], then: [.put("/b/x", "1"), .put("/b/y", "1"), .put("/b/z/w", "1")])
    #expect(await eventually { Disk.read(h.dir("x")) == "1" && Disk.read(h.dir("tree/z/w")) == "1" && h.count("broken") == 2 })
    #expect(await eventually { h.count("tree") == 2 })
    let batches = await agent.history.filter { $0.mapping == "tree" }
    #expect(batches.count == 2)
    #expect(batches.last?.written == ["x", "y", "z/w"])
    // The reload's own line lands a moment before the agent logs the batch.
    #expect(await eventually { h.messages(atLeast: .error).filter { $0 == "mapping failed after changing files" }.count == 2 })
    #expect(!h.messages(atLeast: .error).contains("mapping failed; its files are unchanged"))
    #expect(await daemon.stop() == nil)
  }

  // MARK: Burst

  static let clients = 4, workersPerClient = 8, rounds = 10, keysPerClient = 125

  /// 5,000 puts from 4 clients at once, each with 8 puts in flight; every key's puts are in
  /// order, and its last value is `r9`. Returns the revision of the last put.
  static func burst(_ server: EtcdServer) async throws -> Int64 {
    try await withThrowingTaskGroup(of: Int64.self) { group in
      for client in 0..<clients {
        group.addTask {
          try await withEtcdClient(server.configuration()) { etcd in
            try await withThrowingTaskGroup(of: Int64.self) { workers in
              for worker in 0..<workersPerClient {
                workers.addTask {
                  var last: Int64 = 0
                  for round in 0..<rounds {
                    for key in stride(from: worker, to: keysPerClient, by: workersPerClient) {
                      last = try await etcd.put("/burst/c\(client)/k\(key)", "r\(round)").header.revision
                    }
                  }
                  return last
                }
              }
              return try await workers.reduce(0) { max($0, $1) }
            }
          }
        }
      }
      return try await group.reduce(0) { max($0, $1) }
    }
  }

  static var burstKeys: [String] {
    (0..<clients).flatMap { c in (0..<keysPerClient).map { "c\(c)/k\($0)" } }
      .sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
  }

  /// Runs the burst against a tree and a template mapping with `wait`, checks the final
  /// files, and returns how many renders and reloads each mapping did after the first sync.
  static func runBurst(wait: WaitSettings?) async throws -> (tree: Int, template: Int, reloads: Int) {
    var counts = (tree: 0, template: 0, reloads: 0)
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try Disk.write(h.dir("t.tmpl"), "{{ range gets \"/burst/*/*\" }}{{ .Key }}={{ .Value }}\n{{ end }}")
    let mappings = [
      Mapping(name: "tree", kind: .tree, prefixes: ["/burst/"], dest: h.dir("tree"), reload: h.logCommand("tree"),
              wait: wait, swap: .inPlace),
      Mapping(name: "tpl", kind: .template, prefixes: ["/burst/"], template: h.dir("t.tmpl"), dest: h.dir("all.conf"),
              reload: h.logCommand("tpl"), wait: wait),
    ]
    let agent = try h.agent(h.configuration(mappings))
    let daemon = Daemon(agent)
    #expect(await Self.started(agent, mappings: 2))
    let last = try await Self.burst(h.server)
    let expected = Self.burstKeys.map { "/burst/\($0)=r9\n" }.joined()
    // Both mappings, each applied at its own time, reach the last revision.
    let done = await eventually(within: .seconds(60)) {
      await agent.appliedRevision >= last && Disk.read(h.dir("all.conf")) == expected
        && Self.burstKeys.allSatisfy { Disk.read(h.dir("tree/\($0)")) == "r9" }
    }
    #expect(done)
    // Every file holds its key's last value, and nothing else is in the tree.
    #expect(Disk.allEntries(h.dir("tree")).filter { $0.contains("/") } == Self.burstKeys)
    #expect(Self.burstKeys.allSatisfy { Disk.read(h.dir("tree/\($0)")) == "r9" })
    let history = await agent.history
    #expect(await daemon.stop() == nil)
    counts.tree = history.filter { $0.mapping == "tree" }.count - 1
    counts.template = history.filter { $0.mapping == "tpl" }.count - 1
    counts.reloads = h.count("tree") - 1
    #expect(history.allSatisfy { !$0.failed })
    return counts
  }

  @Test("a burst of 5,000 puts with wait 50ms/500ms: exact files, a handful of renders")
  func burstWithWait() async throws {
    let counts = try await Self.runBurst(wait: WaitSettings(min: .milliseconds(50), max: .milliseconds(500)))
    print("burst with wait 50ms/500ms: tree \(counts.tree) renders, template \(counts.template) renders, \(counts.reloads) reloads")
    // About one render per `max` while the burst lasts (24 here in a 20 s burst), more where
    // the put stream pauses past `min` under load: bounded well above that, far below 5,000.
    #expect(counts.tree >= 1 && counts.tree <= 250, "far fewer renders than the 5,000 puts")
    #expect(counts.template >= 1 && counts.template <= 250)
  }

  @Test("a burst of 5,000 puts with no wait configured: exact files, far fewer renders than puts")
  func burstWithoutWait() async throws {
    let counts = try await Self.runBurst(wait: nil)
    print("burst with no wait: tree \(counts.tree) renders, template \(counts.template) renders, \(counts.reloads) reloads")
    #expect(counts.tree >= 1 && counts.tree <= 500)
    #expect(counts.template >= 1 && counts.template <= 500)
  }

  // MARK: Compaction

  static func compactionMappings(_ h: AgentHarness) throws -> [Mapping] {
    try Disk.write(h.dir("t.tmpl"), "{{ range gets \"/c/*\" }}{{ base .Key }}={{ .Value }}\n{{ end }}")
    return [
      Mapping(name: "flat", kind: .tree, prefixes: ["/c/"], dest: h.dir("flat"), swap: .inPlace),
      Mapping(name: "swap", kind: .tree, prefixes: ["/c/"], dest: h.dir("swap")),
      Mapping(name: "tpl", kind: .template, prefixes: ["/c/"], template: h.dir("t.tmpl"), dest: h.dir("list")),
    ]
  }

  static func converged(_ h: AgentHarness, _ expected: [String: String]) -> Bool {
    let list = expected.keys.sorted().map { "\($0)=\(expected[$0]!)\n" }.joined()
    return Disk.read(h.dir("list")) == list && Disk.names(h.dir("flat")) == expected.keys.sorted()
      && Disk.names(h.dir("swap")).filter { !$0.hasPrefix("..") } == expected.keys.sorted()
      && expected.allSatisfy { Disk.read(h.dir("flat/\($0.key)")) == $0.value && Disk.read(h.dir("swap/\($0.key)")) == $0.value }
  }

  @Test("compaction while the agent is stopped: the next run applies the deletes")
  func compactionWhileStopped() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let configuration = h.configuration(try Self.compactionMappings(h))
    for key in ["a", "b", "c"] { try await h.put("/c/\(key)", key) }
    let first = Daemon(try h.agent(configuration))
    #expect(await eventually { Self.converged(h, ["a": "a", "b": "b", "c": "c"]) })
    #expect(await first.stop() == nil)

    try await h.delete("/c/a")
    try await h.put("/c/b", "bb")
    try await h.put("/c/d", "d")
    try await h.delete("/c/d")
    let revision = try await h.put("/c/e", "e")
    try await h.client.compact(revision, physical: true)

    let agent = try h.agent(configuration)
    let second = Daemon(agent)
    let expected = ["b": "bb", "c": "c", "e": "e"]
    #expect(await eventually { Self.converged(h, expected) })
    try await h.put("/c/f", "f")
    #expect(await eventually { Self.converged(h, expected.merging(["f": "f"]) { $1 }) })
    #expect(await second.stop() == nil)
  }

  @Test("compaction while the agent runs: changes before and after it all arrive")
  func compactionWhileRunning() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let configuration = h.configuration(try Self.compactionMappings(h))
    for key in ["a", "b", "c"] { try await h.put("/c/\(key)", key) }
    let agent = try h.agent(configuration)
    let daemon = Daemon(agent)
    #expect(await eventually { Self.converged(h, ["a": "a", "b": "b", "c": "c"]) })
    try await h.delete("/c/a")
    let revision = try await h.put("/c/b", "bb")
    try await h.client.compact(revision, physical: true)
    try await h.delete("/c/c")
    try await h.put("/c/d", "d")
    #expect(await eventually { Self.converged(h, ["b": "bb", "d": "d"]) })
    #expect(await daemon.stop() == nil)
  }

  @Test("a watch that falls behind a compaction re-reads everything and applies the deletes at once")
  func watchBehindCompaction() async throws {
    let cluster = try await EtcdCluster.start(size: 3)
    defer { cluster.destroy() }
    // The agent talks to one follower only; the two other members take the writes (and keep
    // their quorum) while it is down, so no election gets in the way.
    let away = (try await cluster.leaderIndex() + 1) % 3
    var writerConfiguration = try EtcdConfiguration(endpoints: cluster.members.indices.filter { $0 != away }.map { cluster.members[$0].endpoint })
    writerConfiguration.dialTimeout = .seconds(10)
    let agentClient = try RunningClient(cluster.members[away].configuration())
    defer { agentClient.stop() }
    let writer = try RunningClient(writerConfiguration)
    defer { writer.stop() }
    let dir = TemporaryDirectory("etcsync-agent")
    let (logger, logs) = RecordingLogHandler.logger()
    try Disk.write(dir("t.tmpl"), "{{ range gets \"/c/*\" }}{{ base .Key }}={{ .Value }}\n{{ end }}")
    let mappings = [
      Mapping(name: "flat", kind: .tree, prefixes: ["/c/"], dest: dir("flat"), swap: .inPlace),
      Mapping(name: "tpl", kind: .template, prefixes: ["/c/"], template: dir("t.tmpl"), dest: dir("list")),
    ]
    let configuration = AgentConfiguration(mappings: mappings, state: StateSettings(dir: dir("state")))
    for key in ["a", "b", "c"] { try await writer.client.put("/c/\(key)", key) }
    let agent = try Agent(configuration: configuration, client: agentClient.client, logger: logger)
    let daemon = Daemon(agent)
    #expect(await eventually { Disk.read(dir("list")) == "a=a\nb=b\nc=c\n" })

    cluster.members[away].kill9()
    try await writer.client.delete("/c/a")
    try await writer.client.put("/c/b", "bb")
    let revision = try await writer.client.put("/c/d", "d").header.revision
    try await writer.client.compact(revision, physical: true)
    try await cluster.members[away].restart()
    // No further change comes: the re-read alone must bring the files to the new revision.
    let done = await eventually { Disk.read(dir("list")) == "b=bb\nc=c\nd=d\n" && Disk.names(dir("flat")) == ["b", "c", "d"] }
    #expect(done, "list: \(Disk.read(dir("list")) ?? "-")")
    #expect(logs.all.contains { $0.1 == "watch compacted; re-read everything" }, "\(logs.all.map(\.1))")
    #expect(await agent.appliedRevision >= revision)
    // The daemon watches on after the compaction.
    try await writer.client.put("/c/e", "e")
    #expect(await eventually { Disk.read(dir("list")) == "b=bb\nc=c\nd=d\ne=e\n" })
    #expect(await daemon.stop() == nil)
  }

  // MARK: etcd dies

  @Test("kill -9 of etcd mid-run: the daemon resumes its watch and converges")
  func killNine() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let configuration = h.configuration(try Self.compactionMappings(h))
    for key in ["a", "b"] { try await h.put("/c/\(key)", key) }
    let agent = try h.agent(configuration)
    let daemon = Daemon(agent)
    #expect(await eventually { Self.converged(h, ["a": "a", "b": "b"]) })
    // Changes just before the kill may or may not have reached the agent.
    for i in 0..<20 { try await h.put("/c/x", "\(i)") }
    h.server.kill9()
    #expect(Self.converged(h, ["a": "a", "b": "b"]) || Disk.read(h.dir("flat/a")) == "a", "errors never empty a file")
    try await h.server.restart()
    try await h.delete("/c/a")
    try await h.put("/c/b", "bb")
    #expect(await eventually(within: .seconds(60)) { Self.converged(h, ["b": "bb", "x": "19"]) })
    #expect(await daemon.stop() == nil)
    #expect(await agent.history.allSatisfy { !$0.failed })
  }

  @Test("a watch etcd refuses for good (permission revoked) ends run() with the error instead of idling")
  func fatalWatchErrorEndsRun() async throws {
    let server = try await EtcdServer.start()
    defer { server.destroy() }
    let admin = try RunningClient(server.configuration())
    defer { admin.stop() }
    try await admin.client.put("/p/a", "1")
    try await admin.client.enableAuthentication(rootPassword: "rootpw", users: [
      TestUser("agent", password: "agentpw", grants: [(.read, .prefix("/p/"))]),
    ])
    var rootConfiguration = server.configuration()
    rootConfiguration.credentials = .init(username: "root", password: "rootpw")
    let root = try RunningClient(rootConfiguration)
    defer { root.stop() }
    var agentConfiguration = server.configuration()
    agentConfiguration.credentials = .init(username: "agent", password: "agentpw")
    let agentClient = try RunningClient(agentConfiguration)
    defer { agentClient.stop() }

    let dir = TemporaryDirectory("etcsync-agent")
    let (logger, _) = RecordingLogHandler.logger()
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/p/"], dest: dir("tree"))
    let agent = try Agent(configuration: AgentConfiguration(mappings: [mapping], state: StateSettings(dir: dir("state"))),
                          client: agentClient.client, logger: logger)
    let daemon = Daemon(agent)
    #expect(await eventually { Disk.read(dir("tree/a")) == "1" })
    // The role loses the prefix; after etcd restarts, the watch cannot be created again.
    try await root.client.roleRevokePermission("agent", on: .prefix("/p/"))
    try await server.restart()
    #expect(await eventually(within: .seconds(60)) { daemon.hasEnded }, "run() must not idle without a watch")
    let error = await daemon.stop()
    #expect((error as? EtcdError)?.code == .permissionDenied, "\(String(describing: error))")
    #expect(Disk.read(dir("tree/a")) == "1", "errors never empty a file")
  }

  // MARK: Readers

  @Test("a reader never sees a partial file or two revisions mixed while 200 revisions are swapped in")
  func readerLoop() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("tree")
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/rl/"], dest: dest)
    func update(_ marker: Int) async throws {
      let ops = TreeSwapReaderTests.paths.map { Op.put("/rl/\($0)", TreeSwapReaderTests.content($0, revision: marker)) }
      _ = try await h.client.txn(if: [], then: ops)
    }
    try await update(0)
    let agent = try h.agent(h.configuration([mapping]))
    let daemon = Daemon(agent)
    #expect(await Self.started(agent, mappings: 1))
    let reader = ConsistencyReader(root: dest)
    reader.start()
    for marker in 1...200 { try await update(marker) }
    let done = await eventually { Disk.read(dest + "/d/e/f") == "rev-200\n" }
    let stats = reader.stop()
    #expect(done)
    #expect(stats.mixed == 0)
    #expect(stats.partial == 0)
    #expect(stats.consistent > 0)
    #expect(await daemon.stop() == nil)
    #expect(Disk.read(dest + "/big") == TreeSwapReaderTests.content("big", revision: 200))
    #expect(Disk.names(dest).filter { $0.hasPrefix("..") }.count == 2)
  }
}
