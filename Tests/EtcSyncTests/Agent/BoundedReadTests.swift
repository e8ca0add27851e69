@testable import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Logging
import Synchronization
import Templates
import Testing

/// Nothing a local user puts in a destination makes the agent read without bound (issue 11
/// §4): a huge (sparse) document or held file is refused from its size, never read whole; a
/// scan stops reading once it is past the mapping's `keysPerScan` or `bytesPerScan`; owner
/// and hard links are judged before a file is read; the `maxKeys` count follows the prefix
/// rule; a YAML syntax error does not quote the document's line. Real files, a real etcd.
@Suite("Agent: bounded reads of local files")
struct BoundedReadTests {
  /// Counts the bytes the scanners of the task read (``LocalScanner/ScanStep/read(_:_:)``).
  final class ReadCounter: Sendable {
    let reads = Mutex<[ExactString: Int]>([:])
    var total: Int { self.reads.withLock { $0.values.reduce(0, +) } }
    var files: Int { self.reads.withLock { $0.count } }
    var hook: @Sendable (LocalScanner.ScanStep) -> Void {
      { step in
        if case .read(let path, let count) = step { self.reads.withLock { $0[path, default: 0] += count } }
      }
    }
    func reset() { self.reads.withLock { $0 = [:] } }
  }

  static func sparse(_ path: String, size: Int64) {
    let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
    #expect(fd >= 0, "\(path)")
    #expect(ftruncate(fd, off_t(size)) == 0)
    close(fd)
  }

  static func keys(_ h: AgentHarness, _ prefix: String) async throws -> [String] {
    try await h.client.get(.prefix(prefix)).kvs.map { String(decoding: $0.key, as: UTF8.self) }.sorted()
  }

  static let tooLarge = "local file too large for etcd; not pushed, the local file is kept"
  static let overScan = "local edits exceed the write-back limits; nothing of this scan is pushed, the local files are kept"

  @Test("a 1 TiB sparse format document is refused from its size at every scan and every restart, never read whole")
  func hugeDocument() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/doc/x", "0")
    let document = h.dir("settings.yaml")
    let mapping = Mapping(name: "doc", kind: .format, prefixes: ["/doc/"], dest: document, format: .yaml, writeBack: true)
    _ = try await h.agent(h.configuration([mapping])).sync()
    #expect(Disk.read(document)?.contains("x:") == true)
    Self.sparse(document, size: 1 << 40)
    // Two starts, and a second scan of the same agent (an etcd change compares again).
    for _ in 0..<2 {
      let agent = try h.agent(h.configuration([mapping]))
      _ = try await agent.sync()
      try await h.put("/doc/x", "1")
      _ = try await agent.sync()
    }
    #expect(h.logs.metadata(of: Self.tooLarge).first?["bytes"] == "\(1 << 40)", "\(h.messages(atLeast: .notice))")
    #expect(try await Self.keys(h, "/doc/") == ["/doc/x"])
    var info = stat()
    #expect(stat(document, &info) == 0 && info.st_size == 1 << 40, "the local file is kept")
  }

  @Test("a held tree file (`c` once `c/d` appears) grown to 1 TiB is not read whole by the render, and not removed",
        arguments: [Mapping.Swap.inPlace, .symlink])
  func hugeHeldFile(swap: Mapping.Swap) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/t/c", "v")
    let dest = h.dir("tree")
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/t/"], dest: dest, swap: swap)
    let agent = try h.agent(h.configuration([mapping]))
    _ = try await agent.sync()
    #expect(Disk.read(dest + "/c") == "v")
    Self.sparse(dest + "/c", size: 1 << 40)
    try await h.put("/t/c/d", "x")
    // Alive: the render reads at most one etcd value's worth of the held file, and keeps it
    // (in place: neither written nor deleted; swapped: no revision without it is published).
    let results = try await agent.sync()
    #expect(results[mapping: "tree"] != nil)
    var info = stat()
    #expect(stat(dest + "/c", &info) == 0 && info.st_size == 1 << 40, "the held file was removed")
    if swap == .symlink {
      #expect(results[mapping: "tree"]?.failure?.code == .held, "\(String(describing: results[mapping: "tree"]?.failure))")
    }
    // Once the conflicting key is gone, etcd's value is written again.
    try await h.client.delete("/t/c/d")
    _ = try await agent.sync()
    #expect(Disk.read(dest + "/c") == "v")
  }

  @Test("40 sparse files of 1.5 MB over bytesPerScan: read until past the limit, the rest judged from lstat; refused whole, nothing pushed")
  func scanStopsReadingPastBytesPerScan() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/wb/f", "1")
    let limits = WriteBackLimits(bytesPerScan: 4 << 20)
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/wb/"], dest: h.dir("tree"), writeBack: true, writeBackLimits: limits)
    _ = try await h.agent(h.configuration([mapping])).sync()
    let size = 1_572_000
    for index in 0..<40 { Self.sparse(h.dir("tree/new\(index)"), size: Int64(size)) }
    // Someone else's file: refused from its owner, not read.
    Self.sparse(h.dir("tree/foreign"), size: Int64(size))
    #expect(chown(h.dir("tree/foreign"), 12345, 12345) == 0)
    let counter = ReadCounter()
    let agent = try h.agent(h.configuration([mapping]))
    _ = try await LocalScanner.$scanHook.withValue(counter.hook) { try await agent.sync() }
    #expect(counter.total <= limits.bytesPerScan + LocalScanner.fileLimit, "read \(counter.total) bytes of \(counter.files) files")
    #expect(counter.files < 40)
    #expect(counter.reads.withLock { $0["foreign"] } == nil, "judged from its owner before it is read")
    #expect(try await Self.keys(h, "/wb/") == ["/wb/f"], "nothing pushed")
    let refusal = h.logs.metadata(of: Self.overScan).last
    #expect(refusal?["files"] == "40", "\(refusal ?? [:])")
    #expect(refusal?["bytes"] == "\(40 * size)")
    #expect(await agent.writeBackStats.refused == 41, "40 over the scan's quota, and the foreign file")
    // Refused files are not read again while they stay as they are.
    counter.reset()
    try await h.put("/wb/f", "2")
    _ = try await LocalScanner.$scanHook.withValue(counter.hook) { try await agent.sync() }
    #expect(counter.reads.withLock { $0.keys.filter { $0.string != "f" } }.isEmpty, "read again: \(counter.reads.withLock { $0 })")
    #expect(Disk.read(h.dir("tree/f")) == "2")
    #expect(try await Self.keys(h, "/wb/") == ["/wb/f"])
    var info = stat()
    #expect(stat(h.dir("tree/new39"), &info) == 0 && info.st_size == size, "kept")
  }

  @Test("30 new files over keysPerScan 5: at most six are read; all are refused")
  func scanStopsReadingPastKeysPerScan() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/wb/f", "1")
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/wb/"], dest: h.dir("tree"), writeBack: true,
                          writeBackLimits: WriteBackLimits(keysPerScan: 5))
    _ = try await h.agent(h.configuration([mapping])).sync()
    for index in 0..<30 { try Disk.write(h.dir("tree/new\(index)"), "value \(index)") }
    let counter = ReadCounter()
    let agent = try h.agent(h.configuration([mapping]))
    _ = try await LocalScanner.$scanHook.withValue(counter.hook) { try await agent.sync() }
    let newRead = counter.reads.withLock { $0.keys.filter { $0.string.hasPrefix("new") } }
    #expect(newRead.count <= 6, "\(newRead.map(\.string).sorted())")
    #expect(h.logs.metadata(of: Self.overScan).last?["files"] == "30")
    #expect(await agent.writeBackStats.refused == 30)
    #expect(try await Self.keys(h, "/wb/") == ["/wb/f"])
  }

  @Test("an unchanged recorded file past the scan's quota is not refused (told apart by its hash, not read into memory)")
  func unchangedFilePastQuotaStaysFree() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/wb/zz", "etcd's")
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/wb/"], dest: h.dir("tree"), writeBack: true,
                          writeBackLimits: WriteBackLimits(keysPerScan: 2))
    _ = try await h.agent(h.configuration([mapping])).sync()
    for index in 0..<5 { try Disk.write(h.dir("tree/a\(index)"), "new") }
    let agent = try h.agent(h.configuration([mapping]))
    _ = try await agent.sync()
    #expect(h.logs.metadata(of: Self.overScan).last?["files"] == "5")
    // `zz` comes after the quota was spent, unchanged: etcd's changes still reach it.
    try await h.put("/wb/zz", "changed in etcd")
    _ = try await agent.sync()
    #expect(Disk.read(h.dir("tree/zz")) == "changed in etcd")
  }

  /// A file mapping's key `/app/x` is a byte prefix of its siblings `/app/x2`, `/app/x3`; the
  /// prefix rule says they are not the mapping's, so they do not count against `maxKeys`:
  /// at the push at start (etcd counts) and while running (the snapshot counts). A file
  /// mapping creates its key when the file comes back after its delete was pushed.
  @Test("maxKeys counts the mapping's own keys by the prefix rule, not siblings that share its bytes", arguments: [false, true])
  func maxKeysIgnoresSiblings(running: Bool) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/app/x", "v")
    try await h.put("/app/x2", "sibling")
    try await h.put("/app/x3", "sibling")
    let limits = WriteBackLimits(deleteShare: 1, maxKeys: 1)
    let mappings = [
      Mapping(name: "x", kind: .file, key: "/app/x", dest: h.dir("x"), writeBack: true, deletes: true, writeBackLimits: limits),
      // Puts /app/x2 into the agent's snapshot.
      Mapping(name: "x2", kind: .file, key: "/app/x2", dest: h.dir("x2")),
    ]
    let agent = try h.agent(h.configuration(mappings))
    _ = try await agent.sync()
    #expect(Disk.read(h.dir("x")) == "v")
    #expect(unlink(h.dir("x")) == 0)
    _ = try await agent.sync()
    #expect(try await h.client.get("/app/x").kvs.isEmpty, "the delete is pushed: \(h.messages(atLeast: .notice))")
    try Disk.write(h.dir("x"), "local")
    _ = try await (running ? agent : h.agent(h.configuration(mappings))).sync()
    #expect(try await h.client.get("/app/x").kvs.first.map { String(decoding: $0.value, as: UTF8.self) } == "local",
            "\(h.messages(atLeast: .notice))")
    #expect(h.logs.metadata(of: "new local files would exceed writeBackLimits.maxKeys; they are not pushed, the local files are kept").isEmpty)
  }

  @Test("an invalid YAML document is reported by line and column; its text (a secret) is not logged")
  func yamlErrorKeepsSecrets() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/doc/x", "0")
    let document = h.dir("settings.yaml")
    let mapping = Mapping(name: "doc", kind: .format, prefixes: ["/doc/"], dest: document, format: .yaml, writeBack: true)
    _ = try await h.agent(h.configuration([mapping])).sync()
    try Disk.write(document, "x: \"0\"\npassword: s3cr3t-token: oops\n")
    _ = try await h.agent(h.configuration([mapping])).sync()
    let error = h.logs.metadata(of: "local file not pushed").last?["error"] ?? "-"
    #expect(error.contains("not valid YAML at line 2"), "\(error)")
    let logged = h.logs.details.withLock { $0.map { "\($0.message) \($0.metadata)" } }
    #expect(!logged.contains { $0.contains("s3cr3t") }, "\(logged.filter { $0.contains("s3cr3t") })")
    #expect(try await Self.keys(h, "/doc/") == ["/doc/x"])
  }

  @Test("a YAML document that could hold more nodes than are walked is refused before Yams builds its tree")
  func yamlNodeBound() throws {
    // `x: [a,a,…]`: two bytes a node, 1.1 million of them in 2.2 MB.
    let flood = Array("x: [".utf8) + Array(repeating: Array("a,".utf8), count: 1_100_000).flatMap { $0 } + Array("a]\n".utf8)
    do {
      _ = try FlatDocument.parse(flood, format: .yaml)
      Issue.record("parsed")
    } catch {
      #expect(error.message.contains("separators"), "\(error.message)")
    }
    // An ordinary document, dashes and colons in its values included, is parsed as before.
    let entries = try FlatDocument.parse(Array("a: my-service\nb:\n  c: \"http://x:1/\"\n".utf8), format: .yaml)
    #expect(entries == [ExactString("a"): Array("my-service".utf8), ExactString("b/c"): Array("http://x:1/".utf8)])
    // Empty list items separated by NEL (U+0085), which libyaml takes for a line break: each
    // `-` before it is counted too.
    let nel = Array("x:\n".utf8) + Array(repeating: Array("-\u{85}".utf8), count: 1_100_000).flatMap { $0 }
    #expect(FlatDocument.structuralIndicators(nel) >= 1_100_000)
    #expect(throws: AgentError.self) { try FlatDocument.parse(nel, format: .yaml) }
  }

  /// Nested anchors, the last alias used as a key: Yams hashes the key expanded (10⁹ nodes
  /// from about 400 bytes) while it builds the tree, before the walk could refuse the alias.
  /// Refused from the bytes, at once; a document that only has `&` and `*` in its text, with no
  /// name after both, is parsed as before.
  @Test("a YAML alias used as a mapping key is refused before Yams expands it")
  func yamlAliasKeyBomb() throws {
    var bomb = "a: &a [" + Array(repeating: "x", count: 10).joined(separator: ",") + "]\n"
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
    for (previous, name) in zip(names, names.dropFirst()) {
      bomb += "\(name): &\(name) [" + Array(repeating: "*\(previous)", count: 10).joined(separator: ",") + "]\n"
    }
    bomb += "*i : v\n"
    #expect(FlatDocument.structuralIndicators(Array(bomb.utf8)) < 1_000)
    do {
      _ = try FlatDocument.parse(Array(bomb.utf8), format: .yaml)
      Issue.record("parsed")
    } catch {
      #expect(error.message.contains("anchors and aliases"), "\(error.message)")
    }
    // Many anchor names are not all held: past the cap the document is refused.
    let manyAnchors = (0...FlatDocument.maxAnchorNames).map { "k\($0): &a\($0) v" }.joined(separator: "\n")
    #expect(FlatDocument.mayUseAnAlias(Array(manyAnchors.utf8)))
    #expect(!FlatDocument.mayUseAnAlias(Array(String(repeating: "*a", count: 100_000).utf8)), "aliases before any anchor are not held")
    let text = try FlatDocument.parse(Array("a: rock & roll\nb: \"2 * 3\"\nc: R&D *x\n".utf8), format: .yaml)
    #expect(text[ExactString("a")] == Array("rock & roll".utf8))
    #expect(text[ExactString("c")] == Array("R&D *x".utf8))
  }
}
