import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Logging
import Testing

/// Write-back against a real etcd and real directories: two agents mirror one prefix into two
/// directories, and local edits made in either reach etcd and the other, through a
/// compare-and-swap that never loses an update.
@Suite("Agent: write-back")
struct WriteBackTests {
  /// A write-back tree of `/wb/` into `dir`, with its own state directory.
  static func treeAgent(_ h: AgentHarness, _ dir: String, name: String = "tree", deletes: Bool = false,
                        conflict: Mapping.ConflictPolicy = .etcdWins, accept: Bool = false) throws -> Agent {
    let mapping = Mapping(name: name, kind: .tree, prefixes: ["/wb/"], dest: h.dir(dir), writeBack: true,
                          conflict: conflict, deletes: deletes)
    var configuration = AgentConfiguration(mappings: [mapping], state: StateSettings(dir: h.dir(dir + ".state")),
                                           commandTimeout: .seconds(10))
    if accept { configuration.acceptDestinations = [name] }
    return try Agent(configuration: configuration, client: h.client, logger: h.logger)
  }

  static func value(_ h: AgentHarness, _ key: String) async throws -> String? {
    try await h.client.get(key).kvs.first.map { String(decoding: $0.value, as: UTF8.self) }
  }

  static func keys(_ h: AgentHarness) async throws -> [String] {
    try await h.client.get(.prefix("/wb/")).kvs.map { String(decoding: $0.key, as: UTF8.self) }.sorted()
  }

  static func revision(_ h: AgentHarness) async throws -> Int64 {
    try await h.client.get("/wb/", options: GetOptions(countOnly: true)).header.revision
  }

  /// Writes `text` to a temp file beside `path` and renames it over `path`, as vim and
  /// `sed -i` save.
  static func renameSave(_ path: String, _ text: String) throws {
    try Disk.write(path + ".swp-new", text)
    guard rename(path + ".swp-new", path) == 0 else { throw POSIXError(.EIO) }
  }

  /// Appends in place, as `echo >> FILE` does.
  static func append(_ path: String, _ text: String) throws {
    let handle = try #require(FileHandle(forWritingAtPath: path))
    try handle.seekToEnd()
    try handle.write(contentsOf: Data(text.utf8))
    try handle.close()
  }

  @Test("edits in either directory reach etcd and the other; the agents' own renders put nothing")
  func twoAgents() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/wb/a", "1")
    try await h.put("/wb/sub/b", "2")
    let agentA = try Self.treeAgent(h, "A")
    let agentB = try Self.treeAgent(h, "B")
    let a = Daemon(agentA)
    let b = Daemon(agentB)
    #expect(await eventually { Disk.read(h.dir("A/a")) == "1" && Disk.read(h.dir("B/sub/b")) == "2" })
    let start = try await Self.revision(h)

    // A rename save in A (vim, sed -i).
    try Self.renameSave(h.dir("A/a"), "from A")
    #expect(await eventually { Disk.read(h.dir("B/a")) == "from A" }, "B: \(Disk.read(h.dir("B/a")) ?? "-")")
    #expect(try await Self.value(h, "/wb/a") == "from A")
    // An in-place append in B (echo >>), in a nested directory.
    try Self.append(h.dir("B/sub/b"), "+B")
    #expect(await eventually { Disk.read(h.dir("A/sub/b")) == "2+B" })
    // A new file in A becomes a key; editor leftovers do not.
    try Disk.write(h.dir("A/sub/new"), "created in A")
    try Disk.write(h.dir("A/.new.swp"), "vim swap file")
    try Disk.write(h.dir("A/new~"), "backup")
    #expect(await eventually { Disk.read(h.dir("B/sub/new")) == "created in A" })
    #expect(try await Self.value(h, "/wb/sub/new") == "created in A")
    // A last edit through A, seen in B: every earlier inotify event of both agents (their
    // own renders included) has been handled by the time it arrives.
    try Self.renameSave(h.dir("A/a"), "last")
    #expect(await eventually { Disk.read(h.dir("B/a")) == "last" })
    #expect(try await Self.keys(h) == ["/wb/a", "/wb/sub/b", "/wb/sub/new"], "no key for editor leftovers")
    // B can render A's last push before A has counted it (A counts once etcd has answered).
    #expect(await eventually { await agentA.writeBackStats.pushed >= 3 })
    let pushedA = await agentA.writeBackStats.pushed
    let pushedB = await agentB.writeBackStats.pushed
    #expect(pushedA == 3 && pushedB == 1, "A pushed \(pushedA), B pushed \(pushedB)")
    // Four local edits, four revisions: the renders they caused in the other directory put nothing.
    #expect(try await Self.revision(h) == start + 4)
    #expect(await a.stop() == nil)
    #expect(await b.stop() == nil)
  }

  @Test("simultaneous conflicting edits: one winner everywhere, the loser's bytes kept as a .conflict file")
  func conflict() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/wb/f", "base")
    let a = Daemon(try Self.treeAgent(h, "A"))
    let b = Daemon(try Self.treeAgent(h, "B"))
    #expect(await eventually { Disk.read(h.dir("A/f")) == "base" && Disk.read(h.dir("B/f")) == "base" })
    try Disk.write(h.dir("A/f"), "edit A")
    try Disk.write(h.dir("B/f"), "edit B")
    let settled = await eventually {
      guard let winner = try? await Self.value(h, "/wb/f"), winner != "base" else { return false }
      let loserDir = winner == "edit A" ? "B" : "A"
      let copies = Disk.names(h.dir(loserDir)).filter { $0.hasPrefix("f.conflict.") }
      return Disk.read(h.dir("A/f")) == winner && Disk.read(h.dir("B/f")) == winner && copies.count == 1
        && Disk.read(h.dir(loserDir + "/" + copies[0])) == (winner == "edit A" ? "edit B" : "edit A")
    }
    #expect(settled, "A: \(Disk.names(h.dir("A"))) \(Disk.read(h.dir("A/f")) ?? "-"), B: \(Disk.names(h.dir("B"))) \(Disk.read(h.dir("B/f")) ?? "-")")
    // The conflict copy is not pushed as a key of its own.
    #expect(try await Self.keys(h) == ["/wb/f"])
    #expect(await a.stop() == nil)
    #expect(await b.stop() == nil)
  }

  @Test("local-wins pushes the local edit over a newer etcd value")
  func localWins() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/wb/f", "base")
    let agent = try Self.treeAgent(h, "A", conflict: .localWins)
    _ = try await agent.sync()
    // etcd moves on while the agent is stopped, and the file is edited locally.
    try await h.put("/wb/f", "newer in etcd")
    try Disk.write(h.dir("A/f"), "local")
    let again = try Self.treeAgent(h, "A", conflict: .localWins)
    _ = try await again.sync()
    #expect(try await Self.value(h, "/wb/f") == "local")
    #expect(Disk.read(h.dir("A/f")) == "local")
    #expect(await again.writeBackStats.conflicts == 1)
    #expect(!Disk.names(h.dir("A")).contains { $0.contains(".conflict.") })
  }

  @Test("a 2 MiB local file is refused with a clear message and kept")
  func tooLarge() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/wb/small", "s")
    let agent = try Self.treeAgent(h, "A")
    let daemon = Daemon(agent)
    #expect(await eventually { Disk.read(h.dir("A/small")) == "s" })
    let big = String(repeating: "x", count: 2 << 20)
    // Written beside the tree and renamed in, so that no scan sees it half-written (a scan of
    // a growing file refuses each size it sees once, and the count below would be 2).
    try Disk.write(h.dir("big.staged"), big)
    #expect(rename(h.dir("big.staged"), h.dir("A/big")) == 0)
    #expect(await eventually { h.messages(atLeast: .error).contains("local file too large for etcd; not pushed, the local file is kept") })
    // The rest still syncs, and the big file stays.
    try await h.put("/wb/small", "t")
    #expect(await eventually { Disk.read(h.dir("A/small")) == "t" })
    #expect(Disk.read(h.dir("A/big"))?.count == big.count)
    #expect(try await h.client.get("/wb/big").kvs.isEmpty)
    #expect(await agent.writeBackStats.refused == 1)
    #expect(await daemon.stop() == nil)
  }

  @Test("edits made while etcd is down arrive once it is back; edits made while the agent is stopped arrive at its start")
  func outage() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/wb/f", "1")
    try await h.put("/wb/g", "1")
    let daemon = Daemon(try Self.treeAgent(h, "A"))
    #expect(await eventually { Disk.read(h.dir("A/f")) == "1" && Disk.read(h.dir("A/g")) == "1" })
    h.server.stop()
    try Disk.write(h.dir("A/f"), "edited while etcd was down")
    try await Task.sleep(for: .milliseconds(300))
    try await h.server.restart()
    #expect(await eventually { (try? await Self.value(h, "/wb/f")) == "edited while etcd was down" })
    #expect(await daemon.stop() == nil)
    // The agent is stopped: the edit waits on disk, and the state file says what it is based on.
    try Self.renameSave(h.dir("A/g"), "edited while the agent was stopped")
    let restarted = try Self.treeAgent(h, "A")
    _ = try await restarted.sync()
    #expect(try await Self.value(h, "/wb/g") == "edited while the agent was stopped")
    #expect(Disk.read(h.dir("A/g")) == "edited while the agent was stopped")
  }

  @Test("deleting a file deletes its key only with deletes: true; otherwise the file is restored")
  func deletes() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/wb/keep", "k")
    try await h.put("/wb/drop", "d")
    let withDeletes = Daemon(try Self.treeAgent(h, "D", deletes: true))
    let without = Daemon(try Self.treeAgent(h, "N"))
    #expect(await eventually { Disk.read(h.dir("D/drop")) == "d" && Disk.read(h.dir("N/keep")) == "k" })
    unlink(h.dir("N/keep"))
    #expect(await eventually { Disk.read(h.dir("N/keep")) == "k" }, "restored")
    #expect(try await Self.value(h, "/wb/keep") == "k")
    unlink(h.dir("D/drop"))
    #expect(await eventually { (try? await h.client.get("/wb/drop").kvs.isEmpty) == true })
    #expect(await eventually { !Disk.exists(h.dir("N/drop")) }, "the delete reached the other directory")
    #expect(await withDeletes.stop() == nil)
    #expect(await without.stop() == nil)
  }

  @Test("file and flat JSON format mappings write back too")
  func fileAndFormat() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/wb/motd", "hello")
    try await h.put("/app/host", "db1")
    try await h.put("/app/port", "5432")
    let mappings = [
      Mapping(name: "motd", kind: .file, key: "/wb/motd", dest: h.dir("etc/motd"), writeBack: true),
      Mapping(name: "json", kind: .format, prefixes: ["/app/"], dest: h.dir("etc/app.json"), format: .json, writeBack: true),
    ]
    let agent = try h.agent(h.configuration(mappings))
    let daemon = Daemon(agent)
    #expect(await eventually { Disk.read(h.dir("etc/motd")) == "hello" && Disk.exists(h.dir("etc/app.json")) })
    try Self.renameSave(h.dir("etc/motd"), "edited motd")
    #expect(await eventually { (try? await Self.value(h, "/wb/motd")) == "edited motd" })
    try Disk.write(h.dir("etc/app.json"), #"{"host": "db2", "port": "5432", "user": "app"}"#)
    #expect(await eventually {
      let host = try? await Self.value(h, "/app/host")
      let user = try? await Self.value(h, "/app/user")
      return host == "db2" && user == "app"
    })
    // The document is rendered back in its canonical form, which is not taken for an edit.
    #expect(await eventually { Disk.read(h.dir("etc/app.json"))?.contains("\"user\"") == true && Disk.read(h.dir("etc/app.json"))?.contains("\n") == true })
    // A value that is not a string is refused with the entry named; nothing is pushed.
    try Disk.write(h.dir("etc/app.json"), #"{"host": "db3", "port": 5432, "user": "app"}"#)
    #expect(await eventually { h.messages(atLeast: .error).contains("local file not pushed") })
    let problem = h.logs.metadata(of: "local file not pushed").last
    #expect(problem?["error"]?.contains("\"port\" is not a string") == true, "\(problem ?? [:])")
    #expect(try await Self.value(h, "/app/host") == "db2")
    #expect(await agent.writeBackStats.pushed == 3)
    #expect(await daemon.stop() == nil)
  }

  @Test("a nested JSON document writes back to its a/b keys")
  func nestedFormat() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/cfg/db/host", "h1")
    try await h.put("/cfg/name", "n")
    let mapping = Mapping(name: "json", kind: .format, prefixes: ["/cfg/"], dest: h.dir("cfg.json"), format: .json, writeBack: true)
    let agent = try h.agent(h.configuration([mapping]))
    let daemon = Daemon(agent)
    // The edit comes after the first apply is recorded. An edit made while the agent is
    // still between writing the file and recording it was seen once (2026-12-05, a loaded
    // full run) never to be pushed: an open question, noted, not this test's subject.
    #expect(await eventually {
      guard Disk.read(h.dir("cfg.json"))?.contains("h1") == true else { return false }
      return await !agent.history.isEmpty
    })
    try Disk.write(h.dir("cfg.json"), #"{"db": {"host": "h2"}, "name": "n"}"#)
    #expect(await eventually { (try? await Self.value(h, "/cfg/db/host")) == "h2" })
    #expect(try await Self.value(h, "/cfg/name") == "n")
    #expect(await daemon.stop() == nil)
  }

  @Test("a file replaced by something unreadable is reported and kept, never taken for a delete")
  func unreadableIsNotADelete() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/wb/f", "1")
    try await h.put("/wb/g", "1")
    let agent = try Self.treeAgent(h, "A", deletes: true)
    let daemon = Daemon(agent)
    #expect(await eventually { Disk.read(h.dir("A/f")) == "1" })
    // A symlink where the file was: not a regular file, so not readable as one.
    unlink(h.dir("A/f"))
    try Disk.symlink("/etc/hostname", at: h.dir("A/f"))
    #expect(await eventually { h.messages(atLeast: .error).contains("local file not pushed") })
    try await h.put("/wb/g", "2")
    #expect(await eventually { Disk.read(h.dir("A/g")) == "2" }, "the rest still syncs")
    #expect(try await Self.value(h, "/wb/f") == "1", "the key is not deleted")
    #expect(Disk.isSymlink(h.dir("A/f")), "and what stands there is left alone")
    #expect(await daemon.stop() == nil)
  }

  @Test("a missing root deletes nothing, even with deletes: true; it is recreated once accepted")
  func missingRoot() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/wb/f", "1")
    try await h.put("/wb/sub/g", "2")
    _ = try await Self.treeAgent(h, "A", deletes: true).sync()
    #expect(Disk.read(h.dir("A/sub/g")) == "2")
    try FileManager.default.removeItem(atPath: h.dir("A"))
    let again = try Self.treeAgent(h, "A", deletes: true)
    // The recorded directory is gone (an unmounted volume whose mount point is a parent of
    // the root looks the same): nothing is recreated on whatever is there now.
    #expect(try await again.sync()[mapping: "tree"]?.failureCode == .destinationReplaced)
    #expect(try await Self.keys(h) == ["/wb/f", "/wb/sub/g"])
    #expect(!Disk.exists(h.dir("A")))
    let accepted = try Self.treeAgent(h, "A", deletes: true, accept: true)
    _ = try await accepted.sync()
    #expect(try await Self.keys(h) == ["/wb/f", "/wb/sub/g"])
    #expect(Disk.read(h.dir("A/f")) == "1" && Disk.read(h.dir("A/sub/g")) == "2", "the tree is written again")
  }

  @Test("300 new files at once are pushed in Txns of at most 128")
  func manyFiles() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/wb/seed", "s")
    let agent = try Self.treeAgent(h, "A")
    let daemon = Daemon(agent)
    #expect(await eventually { Disk.read(h.dir("A/seed")) == "s" })
    let before = try await Self.revision(h)
    // Each file is written beside the tree and renamed in whole: a scan that saw one created
    // but not yet written would push it empty first (two pushes, and a wrong value for a while).
    try FileManager.default.createDirectory(atPath: h.dir("A/many"), withIntermediateDirectories: true)
    for index in 0..<300 {
      try Disk.write(h.dir("staged/f\(index)"), "v\(index)")
      #expect(rename(h.dir("staged/f\(index)"), h.dir("A/many/f\(index)")) == 0)
    }
    #expect(await eventually { ((try? await Self.keys(h)) ?? []).count == 301 })
    // The agent counts a Txn's files once etcd has answered it, a moment after the keys show.
    #expect(await eventually { await agent.writeBackStats.pushed >= 300 })
    #expect(await agent.writeBackStats.pushed == 300)
    #expect(try await Self.value(h, "/wb/many/f299") == "v299")
    // Every Txn is one revision: 300 changes took at least 3 (128 + 128 + 44), not 300 single puts' worth of compares failing.
    #expect(try await Self.revision(h) - before >= 3)
    #expect(await daemon.stop() == nil)
  }
}
