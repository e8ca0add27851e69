@testable import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Logging
import Synchronization
import Templates
import Testing

/// An in-place tree this process wrote and recorded is applied by writing only the files whose
/// planned hash differs from the record (docs/writing.md, "Trees that change one key at a
/// time"): the others are neither read nor written, and a local change to one of them is the
/// drift checks' to find. Real files in temp directories; the daemon cases run against a real
/// etcd, every file compared byte for byte with `get --rev` at the revision the agent applied.
@Suite("In-place trees: only changed files", .serialized)
struct TreeChangedFilesTests {
  static func kv(_ key: String, _ value: String, revision: Int64) -> KeyValue {
    KeyValue(key: Array(key.utf8), value: Array(value.utf8), createRevision: revision, modRevision: revision, version: 1)
  }

  /// Every regular file below `root`, by relative path, with its bytes.
  static func files(_ root: String) -> [String: [UInt8]] {
    var found: [String: [UInt8]] = [:]
    guard let walker = FileManager.default.enumerator(atPath: root) else { return [:] }
    while let relative = walker.nextObject() as? String {
      let path = root + "/" + relative
      if let info = Disk.lstat(path), info.st_mode & S_IFMT == S_IFREG { found[relative] = Bytes.read(path) }
    }
    return found
  }

  /// What etcd holds below `prefix` at `revision`, as the tree's relative paths.
  static func oracle(_ h: AgentHarness, prefix: String, at revision: Int64) async throws -> [String: [UInt8]] {
    let kvs = try await h.client.get(.prefix(prefix), options: GetOptions(revision: revision)).kvs
    return Dictionary(uniqueKeysWithValues: kvs.map { (String(decoding: $0.key.dropFirst(prefix.utf8.count), as: UTF8.self), $0.value) })
  }

  @Test("trusted apply writes only the files whose record changed; untrusted apply compares every file")
  func runnerLevel() async throws {
    let dir = TemporaryDirectory("etcsync-tree-changed")
    defer { withExtendedLifetime(dir) {} }
    let mapping = Mapping(name: "t", kind: .tree, prefixes: ["/t/"], dest: dir("tree"), swap: .inPlace)
    let runner = try MappingRunner(mapping: mapping, commandTimeout: .seconds(5), logger: Logger(label: "test"))
    var space = KeySpace(revision: 2, kvs: (0..<12).map { Self.kv("/t/d\($0 % 3)/k\($0)", "v\($0)", revision: 2) })
    var state = MappingState()
    let first = await runner.apply(space, state: &state, trustRecord: false) { _ in }
    #expect(first.failure == nil && first.written.count == 12)
    #expect(Disk.read(dir("tree/d1/k1")) == "v1")

    // A local edit, a deleted file and a change of one key.
    try Disk.write(dir("tree/d1/k1"), "edited")
    #expect(unlink(dir("tree/d2/k2")) == 0)
    space.apply([WatchEvent(kind: .put, kv: Self.kv("/t/d0/k0", "new", revision: 3)),
                 WatchEvent(kind: .put, kv: Self.kv("/t/d0/k12", "added", revision: 3))])
    let trusted = await runner.apply(space, state: &state, trustRecord: true) { _ in }
    #expect(trusted.failure == nil)
    #expect(trusted.written == ["d0/k0", "d0/k12"], "only the changed and the new key's files: \(trusted.written)")
    #expect(Disk.read(dir("tree/d0/k0")) == "new" && Disk.read(dir("tree/d0/k12")) == "added")
    #expect(Disk.read(dir("tree/d1/k1")) == "edited", "a file whose record did not change is not the apply's")
    #expect(!Disk.exists(dir("tree/d2/k2")))
    #expect(state.files[ExactString("d1/k1")] == ContentHash(of: Array("v1".utf8)), "the record keeps what the agent wrote")

    // A delete is still applied whatever the record says of the others.
    space.apply([WatchEvent(kind: .delete, kv: Self.kv("/t/d0/k3", "", revision: 4))])
    let deleting = await runner.apply(space, state: &state, trustRecord: true) { _ in }
    #expect(deleting.deleted == ["d0/k3"] && deleting.written.isEmpty)
    #expect(!Disk.exists(dir("tree/d0/k3")))

    // Untrusted (a new process, or after a failed apply): every file is compared and put back.
    let untrusted = await runner.apply(space, state: &state, trustRecord: false) { _ in }
    #expect(untrusted.failure == nil)
    #expect(untrusted.written == ["d1/k1", "d2/k2"], "\(untrusted.written)")
    var wanted: [String: [UInt8]] = [:]
    for kv in space.values(withPrefix: Array("/t/".utf8)) { wanted[String(decoding: kv.key.dropFirst(3), as: UTF8.self)] = kv.value }
    #expect(Self.files(dir("tree")) == wanted)
  }

  @Test("a batch that only changed values: only its files are looked at; one already holding the new bytes writes nothing yet owes the reload")
  func valueOnlyBatch() async throws {
    let dir = TemporaryDirectory("etcsync-tree-changed")
    defer { withExtendedLifetime(dir) {} }
    var mapping = Mapping(name: "t", kind: .tree, prefixes: ["/t/"], dest: dir("tree"), swap: .inPlace)
    mapping.reload = ["sh", "-c", "echo reload >> '\(dir("reloads"))'"]
    let runner = try MappingRunner(mapping: mapping, commandTimeout: .seconds(5), logger: Logger(label: "test"))
    var space = KeySpace(revision: 2, kvs: (0..<10).map { Self.kv("/t/k\($0)", "v\($0)", revision: 2) })
    var state = MappingState()
    let first = await runner.apply(space, state: &state, trustRecord: false) { _ in }
    #expect(first.failure == nil && first.reloaded)
    // Local edits: one file already holds the value etcd is about to give it, another does not.
    try Disk.write(dir("tree/k1"), "v1 new")
    try Disk.write(dir("tree/k2"), "edited")
    space.apply([WatchEvent(kind: .put, kv: KeyValue(key: Array("/t/k1".utf8), value: Array("v1 new".utf8), createRevision: 2, modRevision: 3, version: 2))])
    let second = await runner.apply(space, state: &state, trustRecord: true) { _ in }
    #expect(second.failure == nil)
    #expect(second.written.isEmpty, "k1 already held its new bytes: \(second.written)")
    #expect(second.reloaded, "k1's record changed: the service has not loaded it")
    #expect(state.files[ExactString("k1")] == ContentHash(of: Array("v1 new".utf8)))
    space.apply([WatchEvent(kind: .put, kv: KeyValue(key: Array("/t/k3".utf8), value: Array("v3 new".utf8), createRevision: 2, modRevision: 4, version: 2))])
    let third = await runner.apply(space, state: &state, trustRecord: true) { _ in }
    #expect(third.failure == nil && third.written == ["k3"] && third.reloaded, "\(third.written)")
    #expect(Disk.read(dir("tree/k2")) == "edited", "not the apply's: its key did not change")
    #expect(Disk.read(dir("reloads")) == "reload\nreload\nreload\n")
    // The same bytes put again: a new revision, nothing to write, nothing owed.
    space.apply([WatchEvent(kind: .put, kv: KeyValue(key: Array("/t/k3".utf8), value: Array("v3 new".utf8), createRevision: 2, modRevision: 5, version: 3))])
    let fourth = await runner.apply(space, state: &state, trustRecord: true) { _ in }
    #expect(fourth.failure == nil && fourth.written.isEmpty && !fourth.reloaded)
    #expect(state.appliedRevision == 5)
  }

  @Test("a configured mode changed locally is drift: found by the check, put back by the repair")
  func attributeDrift() async throws {
    let dir = TemporaryDirectory("etcsync-tree-changed")
    defer { withExtendedLifetime(dir) {} }
    var mapping = Mapping(name: "t", kind: .tree, prefixes: ["/t/"], dest: dir("tree"), swap: .inPlace)
    mapping.mode = 0o600
    let runner = try MappingRunner(mapping: mapping, commandTimeout: .seconds(5), logger: Logger(label: "test"))
    let space = KeySpace(revision: 2, kvs: [Self.kv("/t/a", "a", revision: 2), Self.kv("/t/b", "b", revision: 2)])
    var state = MappingState()
    _ = await runner.apply(space, state: &state, trustRecord: false) { _ in }
    #expect(runner.drifted(nil, recorded: state.files).isEmpty)
    #expect(chmod(dir("tree/a"), 0o666) == 0)
    let found = runner.drifted(nil, recorded: state.files)
    #expect(found.map(\.path) == [ExactString("a")] && found.first?.kind == .attributes)
    #expect(await runner.repair(space, recorded: state.files, drifted: [ExactString("a")]) == .restored([dir("tree/a")]))
    #expect(Bytes.attributes(dir("tree/a"))?.mode == 0o600)
    // Without a configured mode, a file's mode is whatever it has.
    let loose = try MappingRunner(mapping: Mapping(name: "u", kind: .tree, prefixes: ["/t/"], dest: dir("tree"), swap: .inPlace),
                                  commandTimeout: .seconds(5), logger: Logger(label: "test"))
    #expect(chmod(dir("tree/b"), 0o666) == 0)
    #expect(loose.drifted(nil, recorded: state.files).isEmpty)
  }

  @Test("the daemon: a chmod of a file with a configured mode is found by the periodic check and put back, logged as drift=attributes")
  func attributeDriftDaemon() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    var mapping = Mapping(name: "f", kind: .file, key: "/f", dest: h.dir("out/f"))
    mapping.mode = 0o600
    try await h.put("/f", "secret")
    let (agent, daemon, _) = try DriftRepairTests.start(h, [mapping], interval: .milliseconds(200))
    #expect(await eventually { await agent.history.count >= 1 })
    #expect(Bytes.attributes(h.dir("out/f"))?.mode == 0o600)
    #expect(chmod(h.dir("out/f"), 0o644) == 0)
    #expect(await eventually { Bytes.attributes(h.dir("out/f"))?.mode == 0o600 })
    #expect(await eventually {
      h.logs.metadata(of: DriftRepairTests.restoredMessage).contains { $0["file.path"] == h.dir("out/f") && $0["drift"] == "attributes" }
    })
    #expect(Disk.read(h.dir("out/f")) == "secret")
    #expect(await daemon.stop() == nil)
  }

  @Test("a configured mode that does not stay on the file (changed again after each write) is repaired once, then left to the bytes, with one warning")
  func attributesThatDoNotStay() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("out/f")
    var mapping = Mapping(name: "f", kind: .file, key: "/f", dest: dest)
    mapping.mode = 0o600
    try await h.put("/f", "secret")
    // What a file system that ignores chmod, or a kernel that clears a set-ID bit, does: the
    // mode the writer set is not the one the file keeps.
    let hook: WriteHook = { step, _ in
      if step == .afterRename { _ = chmod(dest, 0o644) }
      return .proceed
    }
    var configuration = h.configuration([mapping])
    configuration.driftCheckInterval = .milliseconds(100)
    let agent = try h.agent(configuration, hook: hook)
    let daemon = Daemon(agent)
    let warning = "the configured mode, owner or group does not stay on this file; only its bytes are repaired from now on"
    #expect(await eventually { h.logs.metadata(of: warning).count == 1 })
    let checked = DriftRepairTests.checks(h, "f").count
    // Several periodic checks later: no further repair, no second warning.
    #expect(await eventually { DriftRepairTests.checks(h, "f").count >= checked + 5 })
    #expect(h.logs.metadata(of: DriftRepairTests.restoredMessage).count == 1)
    #expect(h.logs.metadata(of: warning).count == 1)
    // The bytes are still repaired.
    DriftRepairTests.overwrite(dest, "tampered")
    #expect(await eventually { Disk.read(dest) == "secret" })
    #expect(await daemon.stop() == nil)
  }

  @Test("a repair the render makes stale (a held file that cannot be read) lets the next apply compare every file")
  func staleRepairComparesAll() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let mapping = Mapping(name: "t", kind: .tree, prefixes: ["/t/"], dest: h.dir("tree"), swap: .inPlace)
    try await h.put("/t/c", "c")
    try await h.put("/t/x", "x")
    let (agent, daemon, _) = try DriftRepairTests.start(h, [mapping], interval: .milliseconds(500))
    #expect(await eventually { await agent.history.count >= 1 })
    // A key that makes `c` both a file and a directory: `c` is held, its file kept.
    let conflict = try await h.put("/t/c/d", "d")
    #expect(await eventually { await Self.applied(agent, conflict) })
    // The held file cannot be read any more (a symlink in its place): every repair is stale.
    #expect(unlink(h.dir("tree/c")) == 0)
    #expect(symlink("/nonexistent", h.dir("tree/c")) == 0)
    DriftRepairTests.overwrite(h.dir("tree/x"), "edited")
    #expect(await eventually { Disk.read(h.dir("tree/x")) == "x" }, "x: \(Disk.read(h.dir("tree/x")) ?? "-")")
    #expect(await daemon.stop() == nil)
  }

  static func kv(_ key: String, _ value: String, create: Int64, mod: Int64) -> KeyValue {
    KeyValue(key: Array(key.utf8), value: Array(value.utf8), createRevision: create, modRevision: mod, version: 1)
  }

  /// etcd restored from a backup taken at revision 100 with its revision bumped past the
  /// applied one (`etcdutl snapshot restore --bump-revision N --mark-compacted`): the daemon
  /// re-reads everything, and the restored keys keep their old mod revisions, below the
  /// revision the cached plan was made at. A new read is a new lineage: planned from scratch.
  @Test("a snapshot read afresh in which keys went back (a restore) is planned as such",
        arguments: [(false, Mapping.Swap.inPlace), (true, .inPlace), (true, .symlink)])
  func restoredSnapshot(trusted: Bool, swap: Mapping.Swap) async throws {
    let dir = TemporaryDirectory("etcsync-tree-changed")
    defer { withExtendedLifetime(dir) {} }
    let mapping = Mapping(name: "t", kind: .tree, prefixes: ["/t/"], dest: dir("tree"), swap: swap)
    let runner = try MappingRunner(mapping: mapping, commandTimeout: .seconds(5), logger: Logger(label: "test"))
    // Revision 120: a changed at 110; b deleted at 108; c created at 105.
    let before = KeySpace(revision: 120, kvs: [Self.kv("/t/a", "v2", create: 10, mod: 110), Self.kv("/t/c", "c", create: 105, mod: 105)])
    var state = MappingState()
    #expect(await runner.apply(before, state: &state, trustRecord: false) { _ in }.failure == nil)
    // The backup's keys (revision 100), at a bumped revision: as many keys, none above 120.
    let restored = KeySpace(revision: 1_100, kvs: [Self.kv("/t/a", "v1", create: 10, mod: 90), Self.kv("/t/b", "b", create: 50, mod: 50)])
    let second = await runner.apply(restored, state: &state, trustRecord: trusted) { _ in }
    #expect(second.failure == nil)
    #expect(Disk.read(dir("tree/a")) == "v1", "a: \(Disk.read(dir("tree/a")) ?? "-")")
    #expect(Disk.read(dir("tree/b")) == "b")
    #expect(!Disk.exists(dir("tree/c")))
  }

  /// One file's check fails in a batch that writes the others (AtomicWriter's batch): the
  /// file it created for a new key is recorded, so deleting that key deletes it.
  @Test("a file created by a batch that failed for another file is deleted once its key is, and its reload stays owed")
  func partialFailureThenDelete() async throws {
    let dir = TemporaryDirectory("etcsync-tree-changed")
    defer { withExtendedLifetime(dir) {} }
    var mapping = Mapping(name: "t", kind: .tree, prefixes: ["/t/"], dest: dir("tree"), check: ["sh", "-c", "! grep -q bad \"$0\"", "{{.src}}"],
                          swap: .inPlace)
    mapping.reload = ["sh", "-c", "echo reload >> '\(dir("reloads"))'"]
    let runner = try MappingRunner(mapping: mapping, commandTimeout: .seconds(5), logger: Logger(label: "test"))
    var space = KeySpace(revision: 2, kvs: [Self.kv("/t/a", "a", create: 2, mod: 2)])
    var state = MappingState()
    #expect(await runner.apply(space, state: &state, trustRecord: false) { _ in }.failure == nil)
    // One transaction: a new key x, and y whose value the check refuses.
    space.apply([WatchEvent(kind: .put, kv: Self.kv("/t/x", "x", create: 3, mod: 3)),
                 WatchEvent(kind: .put, kv: Self.kv("/t/y", "bad", create: 3, mod: 3))])
    let saved = Mutex<[MappingState]>([])
    let failed = await runner.apply(space, state: &state, trustRecord: true) { record in saved.withLock { $0.append(record) } }
    #expect(failed.failure != nil && failed.written == ["x"])
    #expect(Disk.read(dir("tree/x")) == "x", "the batch wrote x before y's check failed")
    #expect(state.files[ExactString("x")] == ContentHash(of: Array("x".utf8)) && state.pendingReload)
    #expect(saved.withLock { $0.last?.files[ExactString("x")] } != nil, "the record was saved")
    #expect(Disk.read(dir("reloads")) == "reload\n", "no reload after the failed batch")
    // The change is taken back: both keys deleted.
    space.apply([WatchEvent(kind: .delete, kv: Self.kv("/t/x", "", create: 3, mod: 4)),
                 WatchEvent(kind: .delete, kv: Self.kv("/t/y", "", create: 3, mod: 4))])
    let after = await runner.apply(space, state: &state, trustRecord: false) { _ in }
    #expect(after.failure == nil && after.deleted == ["x"], "\(after.deleted)")
    #expect(!Disk.exists(dir("tree/x")))
    #expect(after.reloaded && !state.pendingReload)
  }

  @Test("a write-back tree is never trusted: a local edit is compared (and kept for its push) at every apply")
  func writeBackCompares() async throws {
    let dir = TemporaryDirectory("etcsync-tree-changed")
    defer { withExtendedLifetime(dir) {} }
    let mapping = Mapping(name: "t", kind: .tree, prefixes: ["/t/"], dest: dir("tree"), swap: .inPlace, writeBack: true)
    let runner = try MappingRunner(mapping: mapping, commandTimeout: .seconds(5), logger: Logger(label: "test"))
    var space = KeySpace(revision: 2, kvs: [Self.kv("/t/a", "a", revision: 2), Self.kv("/t/b", "b", revision: 2)])
    var state = MappingState()
    _ = await runner.apply(space, state: &state, trustRecord: false) { _ in }
    try Disk.write(dir("tree/a"), "edited")
    space.apply([WatchEvent(kind: .put, kv: Self.kv("/t/b", "b2", revision: 3))])
    // Without an expectation for `a`, the writer puts etcd's bytes back: it looked at the file.
    let result = await runner.apply(space, state: &state, trustRecord: true) { _ in }
    #expect(result.written == ["a", "b"], "\(result.written)")
  }

  @Test("what a drift check's result leads to: put back when current; a stale one is checked again only in an in-place tree")
  func followUp() {
    let drifted = DriftFound(drifted: [(ExactString("a/b"), .changed), (ExactString("c"), .deleted)], writes: 1, recorded: [:])
    #expect(drifted.followUp(current: true, inPlaceTree: true) == .putBack)
    #expect(drifted.followUp(current: true, inPlaceTree: false) == .putBack)
    #expect(drifted.followUp(current: false, inPlaceTree: true) == .recheck([ExactString("a/b"), ExactString("c")]))
    #expect(drifted.followUp(current: false, inPlaceTree: false) == .none)
    let clean = DriftFound(drifted: [], writes: 1, recorded: [:])
    #expect(clean.followUp(current: true, inPlaceTree: true) == .none)
    #expect(clean.followUp(current: false, inPlaceTree: true) == .none)
  }

  @Test("the daemon: an etcd change writes only its files; repairDrift: false keeps a local edit until its key changes; a restart compares every file")
  func daemon() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    var mapping = Mapping(name: "t", kind: .tree, prefixes: ["/t/"], dest: h.dir("tree"), swap: .inPlace)
    mapping.repairDrift = false
    for index in 0..<30 { try await h.put("/t/d\(index % 3)/k\(index)", "v\(index)") }
    let (agent, daemon, _) = try DriftRepairTests.start(h, [mapping])
    #expect(await eventually { await agent.history.count >= 1 })
    Self.overwriteKeepingInode(h.dir("tree/d1/k1"), "edited")
    #expect(unlink(h.dir("tree/d2/k2")) == 0)
    let changed = try await h.put("/t/d0/k0", "new")
    #expect(await eventually { await Self.applied(agent, changed) })
    #expect(Disk.read(h.dir("tree/d0/k0")) == "new")
    let last = try #require(await agent.history.last)
    #expect(last.written == ["d0/k0"] && last.deleted.isEmpty, "\(last.written) \(last.deleted)")
    #expect(Disk.read(h.dir("tree/d1/k1")) == "edited")
    #expect(!Disk.exists(h.dir("tree/d2/k2")))
    // The key's own change rewrites its file.
    let own = try await h.put("/t/d1/k1", "v1 again")
    #expect(await eventually { await Self.applied(agent, own) })
    #expect(Disk.read(h.dir("tree/d1/k1")) == "v1 again")
    #expect(await daemon.stop() == nil)

    // A new agent on the same state trusts no record: its first apply compares every file.
    let again = try h.agent(h.configuration([mapping]))
    let results = try await again.sync()
    #expect(results.allSatisfy { $0.failure == nil })
    #expect(results.first?.written == ["d2/k2"], "\(results.first?.written ?? [])")
    let applied = await again.appliedRevision
    #expect(Self.files(h.dir("tree")) == (try await Self.oracle(h, prefix: "/t/", at: applied)))
  }

  @Test("the daemon with drift repair: a file edited while a change of another key waits is put back after that apply")
  func driftDuringPendingChange() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    var mapping = Mapping(name: "t", kind: .tree, prefixes: ["/t/"], dest: h.dir("tree"), swap: .inPlace)
    mapping.wait = WaitSettings(min: .milliseconds(300))
    for index in 0..<30 { try await h.put("/t/d\(index % 3)/k\(index)", "v\(index)") }
    let (agent, daemon, _) = try DriftRepairTests.start(h, [mapping])
    #expect(await eventually { await agent.history.count >= 1 })
    let changed = try await h.put("/t/d0/k0", "new")
    Self.overwriteKeepingInode(h.dir("tree/d1/k1"), "edited")
    #expect(await eventually { await Self.applied(agent, changed) })
    #expect(await eventually { Disk.read(h.dir("tree/d1/k1")) == "v1" })
    #expect(await eventually {
      h.logs.metadata(of: DriftRepairTests.restoredMessage).contains { $0["file.path"] == h.dir("tree/d1/k1") }
    })
    let applied = try #require(await agent.history.last?.revision)
    #expect(Self.files(h.dir("tree")) == (try await Self.oracle(h, prefix: "/t/", at: applied)))
    #expect(await daemon.stop() == nil)
  }

  /// Whether the agent applied a batch at `revision` or later (its snapshot's revision moves
  /// before the files are written; the history records them once they are).
  static func applied(_ agent: Agent, _ revision: Int64) async -> Bool {
    await agent.history.contains { $0.revision >= revision }
  }

  /// Rewrites the file in place (same inode): what an editor that truncates does.
  static func overwriteKeepingInode(_ path: String, _ text: String) {
    DriftRepairTests.overwrite(path, text)
  }
}
