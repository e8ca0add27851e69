@testable import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Logging
import Synchronization
import Templates
import Testing

/// A write-back destination replaced between the agent's check (by path) and the writer's
/// open is caught on the descriptor: the writers and readers verify the directory they
/// opened against the recorded device and inode. Real directories in temp dirs; the agent
/// tests run a real etcd.
@Suite("Agent: the recorded destination verified on the opened descriptor")
struct DestinationDescriptorTests {
  static func identity(_ path: String) -> DirectoryIdentity? {
    guard let info = Disk.lstat(path) else { return nil }
    return DirectoryIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
  }

  /// Renames `path` to `away` and puts a fresh empty directory at `path`: another inode at
  /// the same path, as an unmounted volume's empty mount point is.
  static func replace(_ path: String, movingTo away: String) {
    #expect(Self.replaced(path, movingTo: away), "rename or mkdir: \(String(cString: strerror(errno)))")
  }

  /// ``replace(_:movingTo:)`` without expectations (called from a writer's hook, outside the
  /// test's task); true when it worked.
  static func replaced(_ path: String, movingTo away: String) -> Bool {
    rename(path, away) == 0 && mkdir(path, 0o755) == 0
  }

  static func file(_ text: String) -> DesiredFile {
    DesiredFile(bytes: Array(text.utf8), attributes: FileAttributes(mode: 0o644))
  }

  // MARK: The writers and readers

  @Test("AtomicWriter with a root identity: writes, batches, deletes and reads of a replaced root fail, and touch nothing")
  func atomicWriterReplacedRoot() async throws {
    let dir = TemporaryDirectory()
    let dest = dir("dest")
    try Disk.write(dest + "/f", "old")
    let recorded = try #require(Self.identity(dest))
    Self.replace(dest, movingTo: dir("away"))
    try Disk.write(dest + "/theirs", "someone else's")
    let writer = AtomicWriter(root: dest, options: .init(rootIdentity: recorded))

    let error = await #expect(throws: FileError.self) { try await writer.write(Self.file("secret"), to: "f") }
    #expect(error?.code == .destinationReplaced)
    #expect(error?.path == dest)
    #expect(error?.message.contains("recorded \(recorded), now \(Self.identity(dest)!)") == true, "\(error.map { "\($0)" } ?? "-")")
    let nested = await #expect(throws: FileError.self) { try await writer.write(Self.file("secret"), to: "sub/g") }
    #expect(nested?.code == .destinationReplaced)
    let batch = await writer.write([ExactString("a"): Self.file("secret"), ExactString("b/c"): Self.file("secret")])
    #expect(batch.outcomes.isEmpty)
    #expect(batch.failures.values.map(\.code) == [.destinationReplaced, .destinationReplaced])
    #expect(throws: FileError.self) { try writer.delete(relativePath: "theirs") }
    #expect(Disk.names(dest) == ["theirs"], "nothing created, nothing removed: \(Disk.names(dest))")
    #expect(Disk.read(dest + "/theirs") == "someone else's")
    #expect(Disk.read(dir("away/f")) == "old", "the recorded directory is untouched too")

    // Reads never take the replaced root for "no file" (a write-back scan would push a delete).
    guard case .unreadable = writer.read("f", limit: 100) else { Issue.record("read: \(writer.read("f", limit: 100))"); return }
    guard case .unreadable = writer.read("theirs", limit: 100) else { Issue.record("bounded read"); return }
    #expect(writer.hash("f", sizeLimit: 100) == .unreadable)
    #expect(throws: FileError.self) { try writer.checkedStamp(of: "theirs") }
    #expect(throws: FileError.self) { try writer.contents(of: "theirs") }

    // The recorded directory itself passes.
    let original = AtomicWriter(root: dir("away"), options: .init(rootIdentity: recorded))
    try await original.write(Self.file("new"), to: "f")
    #expect(Disk.read(dir("away/f")) == "new")
    guard case .bytes(let read, _) = original.read("f", limit: 100) else { Issue.record("read of the recorded root"); return }
    #expect(read == Array("new".utf8))
  }

  @Test("a recorded root that is gone is not created again, and reads of it are not 'absent'")
  func missingRecordedRoot() async throws {
    let dir = TemporaryDirectory()
    let dest = dir("dest")
    try Disk.write(dest + "/f", "old")
    let recorded = try #require(Self.identity(dest))
    #expect(rename(dest, dir("away")) == 0)
    let writer = AtomicWriter(root: dest, options: .init(createDirectories: true, rootIdentity: recorded))
    let error = await #expect(throws: FileError.self) { try await writer.write(Self.file("secret"), to: "f") }
    #expect(error?.code == .destinationReplaced)
    #expect(error?.message.contains("now missing") == true)
    #expect(!Disk.exists(dest), "the recorded root is not created again")
    guard case .unreadable = writer.read("f", limit: 100) else { Issue.record("read: \(writer.read("f", limit: 100))"); return }
    #expect(writer.hash("f", sizeLimit: 100) == .unreadable)
  }

  @Test("TreeSwap and TreeWriter with a root identity publish nothing into a replaced root")
  func treeWritersReplacedRoot() async throws {
    let dir = TemporaryDirectory()
    let swapped = dir("swapped")
    let files = [ExactString("a"): Self.file("secret"), ExactString("d/b"): Self.file("secret")]
    let before = TreeSwap(root: swapped)
    try await before.publish(files, revision: 1)
    let recorded = try #require(Self.identity(swapped))
    Self.replace(swapped, movingTo: dir("swapped.away"))
    let swap = TreeSwap(root: swapped, options: .init(rootIdentity: recorded))
    let error = await #expect(throws: FileError.self) { try await swap.publish(files, revision: 2) }
    #expect(error?.code == .destinationReplaced)
    #expect(throws: FileError.self) { try swap.currentDirectory() }
    #expect(Disk.names(swapped).isEmpty, "\(Disk.names(swapped))")

    for strategy in TreeWriter.Strategy.allCases {
      let root = dir("tree-\(strategy.rawValue)")
      try Disk.write(root + "/old", "old")
      let identity = try #require(Self.identity(root))
      Self.replace(root, movingTo: dir("tree-\(strategy.rawValue).away"))
      let writer = TreeWriter(root: root, strategy: strategy, rootIdentity: identity)
      var failed: [FileError.Code] = []
      do {
        let report = try await writer.apply(files, deleted: [ExactString("old")], revision: 3)
        failed = report.failures.values.map(\.code)
      } catch {
        failed = [error.code]
      }
      #expect(!failed.isEmpty && failed.allSatisfy { $0 == .destinationReplaced }, "\(strategy): \(failed)")
      #expect(Disk.names(root).isEmpty, "\(strategy): \(Disk.names(root))")
      #expect(Disk.read(dir("tree-\(strategy.rawValue).away/old")) == "old")
    }
  }

  @Test("the beforeOpen hook runs only for writers that verify their root, before the open")
  func beforeOpenHook() async throws {
    let dir = TemporaryDirectory()
    let dest = dir("dest")
    try Disk.write(dest + "/f", "old")
    let recorded = try #require(Self.identity(dest))
    let steps = Mutex<[WriteStep]>([])
    let hook: WriteHook = { step, path in
      steps.withLock { $0.append(step) }
      if step == .beforeOpen, path == dest { _ = Self.replaced(dest, movingTo: dir("away")) }
      return .proceed
    }
    let writer = AtomicWriter(root: dest, options: .init(rootIdentity: recorded), hook: hook)
    let error = await #expect(throws: FileError.self) { try await writer.write(Self.file("secret"), to: "f") }
    #expect(error?.code == .destinationReplaced)
    #expect(steps.withLock { $0 } == [.beforeOpen])
    #expect(Disk.names(dest).isEmpty, "nothing written into the directory put in its place")
    #expect(Disk.read(dir("away/f")) == "old")
    // Without an identity the steps are as before.
    steps.withLock { $0 = [] }
    try await AtomicWriter(root: dir("plain"), hook: hook).write(Self.file("x"), to: "f")
    #expect(steps.withLock { $0 } == [.afterTempWrite, .afterFsync, .afterRename])
  }

  @Test("a scan with the recorded identity never reads a replaced tree as vanished files")
  func scannerReplacedTree() throws {
    let dir = TemporaryDirectory()
    let dest = dir("dest")
    try Disk.write(dest + "/a", "v-a")
    try Disk.write(dest + "/sub/b", "v-b")
    let recorded = try #require(Self.identity(dest))
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/wb/"], dest: dest, writeBack: true, deletes: true)
    let record: [ExactString: LocalRecord] = [
      "a": LocalRecord(hash: ContentHash(of: Array("v-a".utf8)), revision: 2),
      "sub/b": LocalRecord(hash: ContentHash(of: Array("v-b".utf8)), revision: 3),
    ]
    let scanner = LocalScanner(mapping: mapping, expected: recorded)
    #expect(scanner.scan(nil, record: record, intended: [:]).changes.isEmpty, "nothing changed yet")
    Self.replace(dest, movingTo: dir("away"))
    try Disk.write(dest + "/new", "planted")
    let scan = scanner.scan(nil, record: record, intended: [:])
    #expect(scan.changes.isEmpty, "no delete, no push from the replaced directory: \(scan.changes)")
    #expect(scan.problems.map(\.path) == [""])
    #expect(scan.problems.first?.message.contains("not the one recorded") == true, "\(scan.problems)")
    for path in ["a", "sub/b", "new"] {
      let read = scanner.readLocal(path, limit: LocalScanner.fileLimit)
      guard case .unreadable = read else { Issue.record("\(path): \(read)"); continue }
    }
    #expect(scanner.listTree().isEmpty)
    #expect(scanner.stamp("new") == nil)
    // A file mapping's watched directory is the file's directory.
    let file = Mapping(name: "file", kind: .file, key: "/wb/file", dest: dir("away/a"), writeBack: true)
    let fileScanner = LocalScanner(mapping: file, expected: recorded)
    if case .bytes(let bytes, _) = fileScanner.readLocal(".", limit: LocalScanner.fileLimit) {
      #expect(bytes == Array("v-a".utf8))
    } else {
      Issue.record("file: \(fileScanner.readLocal(".", limit: LocalScanner.fileLimit))")
    }
    let elsewhere = LocalScanner(mapping: Mapping(name: "file", kind: .file, key: "/wb/file", dest: dest + "/new", writeBack: true),
                                 expected: recorded)
    let read = elsewhere.readLocal(".", limit: LocalScanner.fileLimit)
    guard case .unreadable = read else { Issue.record("file: \(read)"); return }
  }

  // MARK: The agent

  /// A write hook that, once armed, replaces `directory` when a writer is about to open it.
  final class Replacer: Sendable {
    let directory: String
    let away: String
    let armed = Mutex(false)
    let fired = Mutex(0)

    init(_ directory: String, away: String) {
      self.directory = directory
      self.away = away
    }

    var hook: WriteHook {
      { step, path in
        guard step == .beforeOpen, path == self.directory, self.armed.withLock({ $0 }) else { return .proceed }
        self.armed.withLock { $0 = false }
        if DestinationDescriptorTests.replaced(self.directory, movingTo: self.away) { self.fired.withLock { $0 += 1 } }
        return .proceed
      }
    }
  }

  @Test("file mapping: the directory replaced after the agent's check and before the writer's open receives nothing")
  func fileMappingReplacedBeforeOpen() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let directory = h.dir("etc")
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let mapping = Mapping(name: "config", kind: .file, key: "/wb/config", dest: directory + "/config", writeBack: true)
    try await h.put("/wb/config", "v1")
    let first = try await h.agent(h.configuration([mapping])).sync()
    #expect(first[mapping: "config"]?.error == nil)
    #expect(Disk.read(directory + "/config") == "v1")
    try await h.put("/wb/config", "secret v2")
    let replacer = Replacer(directory, away: h.dir("etc.away"))
    replacer.armed.withLock { $0 = true }
    let agent = try h.agent(h.configuration([mapping]), hook: replacer.hook)
    let results = try await agent.sync()
    #expect(replacer.fired.withLock { $0 } == 1, "the directory was replaced at the writer's open")
    let result = try #require(results[mapping: "config"])
    #expect(result.failureCode == .destinationReplaced, "\(result.error ?? "-")")
    #expect(result.written.isEmpty)
    #expect(Disk.names(directory).isEmpty, "nothing written into the directory put in its place: \(Disk.names(directory))")
    #expect(Disk.read(h.dir("etc.away/config")) == "v1", "the recorded directory kept its file")
    #expect(try await h.client.get("/wb/config").kvs.first?.value == Array("secret v2".utf8), "nothing pushed")
    #expect(h.messages(atLeast: .error).contains("write-back destination replaced; the mapping is stopped, its files are untouched"))
  }

  @Test("tree with deletes: replaced at the writer's open, nothing is written or deleted, no key is deleted; it resumes when the directory is back")
  func treeReplacedBeforeOpen() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("dest")
    let away = h.dir("dest.away")
    for name in ["a", "b", "sub/c"] { try await h.put("/wb/" + name, "v-" + name) }
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/wb/"], dest: dest, writeBack: true, deletes: true)
    let replacer = Replacer(dest, away: away)
    let agent = try h.agent(h.configuration([mapping]), hook: replacer.hook)
    let daemon = Daemon(agent)
    #expect(await eventually { Disk.read(dest + "/sub/c") == "v-sub/c" })
    replacer.armed.withLock { $0 = true }
    try await h.put("/wb/secret", "s3cret")
    try await h.delete("/wb/b")
    #expect(await eventually { await agent.progress.errors["tree"] == "destination_replaced" }, "\(h.messages(atLeast: .notice))")
    #expect(replacer.fired.withLock { $0 } == 1)
    // Looked at again (the retry backoff): the stopped mapping's next attempt writes nothing either.
    let stopped = { @Sendable in await agent.history.filter { $0.mapping == "tree" && $0.failureCode == .destinationReplaced }.count }
    let retried = await eventually { await stopped() >= 2 }
    let attempts = await stopped()
    #expect(retried, "\(attempts) stopped attempts")
    #expect(Disk.names(dest).isEmpty, "nothing written into the directory put in its place: \(Disk.names(dest))")
    #expect(Disk.read(away + "/a") == "v-a")
    #expect(Disk.read(away + "/b") == "v-b", "the recorded directory is not written either while it is elsewhere")
    #expect(Disk.read(away + "/secret") == nil)
    let keys = try await h.client.get(.prefix("/wb/")).kvs.map { String(decoding: $0.key, as: UTF8.self) }.sorted()
    #expect(keys == ["/wb/a", "/wb/secret", "/wb/sub/c"], "no delete pushed from the empty directory: \(keys)")
    #expect(await agent.writeBackStats.pushed == 0)
    // The same directory back: the mapping catches up by itself.
    #expect(rmdir(dest) == 0)
    #expect(rename(away, dest) == 0)
    #expect(await eventually(within: .seconds(40)) { Disk.read(dest + "/secret") == "s3cret" && !Disk.exists(dest + "/b") })
    #expect(await eventually { await agent.progress.errors["tree"] == nil })
    #expect(try await h.client.get(.prefix("/wb/")).kvs.count == 3)
    #expect(await daemon.stop() == nil)
  }

  /// A scan hook that, once, replaces `directory` at the step `replaceWhen` picks and puts it
  /// back at the step `restoreWhen` picks: the check on the descriptor fails in between, the
  /// check by path passes after.
  final class ScanSwapper: Sendable {
    let directory: String
    let away: String
    let replaceWhen: @Sendable (LocalScanner.ScanStep) -> Bool
    let restoreWhen: @Sendable (LocalScanner.ScanStep) -> Bool
    /// 0: armed, 1: replaced, 2: put back.
    let phase = Mutex(0)

    init(_ directory: String, away: String, replaceWhen: @escaping @Sendable (LocalScanner.ScanStep) -> Bool,
         restoreWhen: @escaping @Sendable (LocalScanner.ScanStep) -> Bool) {
      self.directory = directory
      self.away = away
      self.replaceWhen = replaceWhen
      self.restoreWhen = restoreWhen
    }

    var hook: @Sendable (LocalScanner.ScanStep) -> Void {
      { step in
        self.phase.withLock { phase in
          if phase == 0, self.replaceWhen(step), DestinationDescriptorTests.replaced(self.directory, movingTo: self.away) {
            phase = 1
          } else if phase == 1, self.restoreWhen(step), rmdir(self.directory) == 0, rename(self.away, self.directory) == 0 {
            phase = 2
          }
        }
      }
    }
  }

  @Test("tree: replaced during a scan and put back before the check by path: the render waits, the unpushed local edit survives and is pushed")
  func treeReplacedDuringScan() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("dest")
    for name in ["a", "b"] { try await h.put("/wb/" + name, "v-" + name) }
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/wb/"], dest: dest, writeBack: true, deletes: true)
    let agent = try h.agent(h.configuration([mapping]))
    #expect(try await agent.sync()[mapping: "tree"]?.error == nil)
    #expect(Disk.read(dest + "/a") == "v-a")
    try Disk.write(dest + "/a", "local edit")  // not pushed yet
    // Replaced at the scan's first read, put back once the scan is done: its last check on
    // the descriptor fails, the check by path right after passes.
    let swapper = ScanSwapper(dest, away: h.dir("dest.away"), replaceWhen: { $0 == .open("a") }, restoreWhen: { $0 == .scanned })
    let held = await LocalScanner.$scanHook.withValue(swapper.hook) { await agent.apply(["tree"]) }
    #expect(swapper.phase.withLock { $0 } == 2, "replaced during the scan and put back after it")
    #expect(held[mapping: "tree"] == nil, "the render waits: \(held)")
    #expect(Disk.read(dest + "/a") == "local edit", "the local edit not pushed yet is not overwritten")
    #expect(Disk.names(dest).filter { $0.contains(".conflict.") }.isEmpty)
    #expect(try await h.client.get("/wb/a").kvs.first?.value == Array("v-a".utf8), "nothing pushed from the unverified scan")
    #expect(await agent.writeBackStats.pushed == 0)
    #expect(await agent.local["tree"]?.fault == nil, "the directory is the recorded one: not stopped")
    #expect(await agent.local["tree"]?.retryAt != nil, "looked at again")
    #expect(h.messages(atLeast: .error).contains("write-back destination could not be verified; local edits not pushed, the render waits"))
    // The directory verifies again: the edit is pushed, and the render keeps it.
    let results = try await agent.sync()
    #expect(results[mapping: "tree"]?.error == nil)
    #expect(try await h.client.get("/wb/a").kvs.first?.value == Array("local edit".utf8))
    #expect(await agent.writeBackStats.pushed == 1)
    #expect(Disk.read(dest + "/a") == "local edit")
    #expect(Disk.read(dest + "/b") == "v-b")
  }

  /// A directory that keeps failing its check on the descriptor while its path passes (an
  /// ancestor that no longer passes the trusted-path rule, EACCES) does not hold the render
  /// silently for ever: after ``Agent/unverifiedScanLimit`` scans the mapping fails and says
  /// why, writing nothing; once a scan verifies it again, it runs on.
  @Test("tree: a directory that keeps failing its check on the descriptor fails the mapping after a few scans, writing nothing")
  func treeUnverifiedFailsAfterLimit() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("dest")
    for name in ["a", "b"] { try await h.put("/wb/" + name, "v-" + name) }
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/wb/"], dest: dest, writeBack: true, deletes: true)
    let agent = try h.agent(h.configuration([mapping]))
    #expect(try await agent.sync()[mapping: "tree"]?.error == nil)
    try Disk.write(dest + "/a", "local edit")
    for attempt in 1...Agent.unverifiedScanLimit {
      let swapper = ScanSwapper(dest, away: h.dir("dest.away"), replaceWhen: { $0 == .open("a") }, restoreWhen: { $0 == .scanned })
      let results = await LocalScanner.$scanHook.withValue(swapper.hook) { await agent.apply(["tree"]) }
      #expect(swapper.phase.withLock { $0 } == 2)
      if attempt < Agent.unverifiedScanLimit {
        #expect(results[mapping: "tree"] == nil, "attempt \(attempt): the render waits")
      } else {
        let failure = results[mapping: "tree"]?.failure
        #expect(failure?.code == .writeFailed, "\(String(describing: failure))")
        #expect(failure?.message.contains("could not be verified") == true, "\(String(describing: failure))")
      }
      #expect(Disk.read(dest + "/a") == "local edit", "attempt \(attempt)")
    }
    #expect(try await h.client.get("/wb/a").kvs.first?.value == Array("v-a".utf8), "nothing pushed while unverified")
    // A one-shot `sync` whose first scan cannot verify the directory does not stop with
    // "etcd unavailable" (it waits for no later scan): it goes on, and its render's own scan,
    // verified this time, pushes the edit.
    let oneShot = try h.agent(h.configuration([mapping]))
    let swapper = ScanSwapper(dest, away: h.dir("dest.away"), replaceWhen: { $0 == .open("a") }, restoreWhen: { $0 == .scanned })
    let once = try await LocalScanner.$scanHook.withValue(swapper.hook) { try await oneShot.sync() }
    #expect(swapper.phase.withLock { $0 } == 2)
    #expect(once[mapping: "tree"] != nil, "a result for every mapping: \(once)")
    #expect(once[mapping: "tree"]?.error == nil, "\(once)")
    #expect(try await h.client.get("/wb/a").kvs.first?.value == Array("local edit".utf8))
    #expect(Disk.read(dest + "/a") == "local edit")
    // Verified again: the fault clears, the edit is pushed and kept.
    let results = try await agent.sync()
    #expect(results[mapping: "tree"]?.error == nil)
    #expect(await agent.local["tree"]?.fault == nil)
    #expect(try await h.client.get("/wb/a").kvs.first?.value == Array("local edit".utf8))
    #expect(Disk.read(dest + "/a") == "local edit")
  }

  @Test("a refused file whose stamp cannot be taken (the directory failed its check on the descriptor) stays refused, and is not overwritten")
  func refusedKeptWhenRootUnverified() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("dest")
    for name in ["a", "big"] { try await h.put("/wb/" + name, "v-" + name) }
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/wb/"], dest: dest, writeBack: true, deletes: true)
    let agent = try h.agent(h.configuration([mapping]))
    #expect(try await agent.sync()[mapping: "tree"]?.error == nil)
    let runner = try #require(await agent.runners.first)
    let large = String(repeating: "x", count: Agent.writeBackLimit + 1)
    try Disk.write(dest + "/big", large)
    #expect(await agent.pushLocalEdits(runner, candidates: nil))
    #expect(await agent.local["tree"]?.refused["big"] != nil, "too large: refused, kept")
    // Replaced while the refused file's stamp is taken, put back before the scan starts: the
    // scan (of another file) verifies, the stamp could not be taken.
    let swapper = ScanSwapper(dest, away: h.dir("dest.away"), replaceWhen: { $0 == .open("big") }, restoreWhen: { $0 == .open("") })
    let pushed = await LocalScanner.$scanHook.withValue(swapper.hook) { await agent.pushLocalEdits(runner, candidates: ["a"]) }
    #expect(swapper.phase.withLock { $0 } == 2)
    #expect(pushed)
    #expect(await agent.local["tree"]?.refused["big"] != nil, "could not look is not 'changed': still refused")
    let results = await agent.apply(["tree"])
    let error = results[mapping: "tree"]?.error ?? "-"
    #expect(error.contains("held: 1 local file(s) that could not be pushed stay as they are (first big)"), "\(error)")
    #expect(Disk.read(dest + "/big") == large, "the refused file is kept")
    #expect(try await h.client.get("/wb/big").kvs.first?.value == Array("v-big".utf8))
  }
}
