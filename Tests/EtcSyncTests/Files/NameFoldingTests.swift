import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Logging
import Synchronization
import Templates
import Testing

@testable import EtcSync

/// Destinations whose file system folds names (case, Unicode normalization): two keys that
/// would be one file are refused and the old files stay. This machine's file systems never
/// fold (no casefold ext4, no vfat), so the probe is shown to say so here, and the refusal is
/// shown with the folding forced through ``NameFolding/overrides``.
@Suite("Name folding", .serialized)
struct NameFoldingTests {
  static let caseFolding = NameFolding(foldsCase: true, normalizes: false)
  static let normalizing = NameFolding(foldsCase: false, normalizes: true)
  static let both = NameFolding(foldsCase: true, normalizes: true)

  static func pairs(_ folding: NameFolding, _ paths: [String]) -> [[String]] {
    folding.collisions(paths).map { [$0.0.string, $0.1.string] }
  }

  @Test("case twins collide where case folds, and only there")
  func caseTwins() {
    let paths = ["App.conf", "app.conf", "b"]
    #expect(Self.pairs(.exact, paths).isEmpty)
    #expect(Self.pairs(Self.normalizing, paths).isEmpty)
    #expect(Self.pairs(Self.caseFolding, paths) == [["App.conf", "app.conf"]])
    // Full folding, not ASCII alone: ß and SS, the Kelvin sign and k, final and medial sigma.
    #expect(Self.pairs(Self.caseFolding, ["stra\u{DF}e", "STRASSE"]).count == 1)
    #expect(Self.pairs(Self.caseFolding, ["\u{212A}ey", "key"]).count == 1)
    #expect(Self.pairs(Self.caseFolding, ["\u{3C2}", "\u{3C3}"]).count == 1)
    // Deep paths collide when every component folds alike.
    #expect(Self.pairs(Self.caseFolding, ["Dir/File", "dir/file", "dir/other"]) == [["Dir/File", "dir/file"]])
  }

  @Test("canonically equivalent twins collide where names are normalized (and where case folds, which decomposes first)")
  func normalizationTwins() {
    let paths = ["caf\u{E9}", "cafe\u{301}"]
    #expect(Self.pairs(.exact, paths).isEmpty)
    #expect(Self.pairs(Self.normalizing, paths) == [["caf\u{E9}", "cafe\u{301}"]])
    #expect(Self.pairs(Self.both, ["CAF\u{C9}", "cafe\u{301}"]).count == 1)
    // Three spellings of one name (the Angstrom sign, a precomposed and a decomposed
    // lower-case å): every later one pairs with the first.
    #expect(Self.pairs(Self.both, ["\u{212B}", "\u{C5}", "a\u{30A}"]).count == 2)
    #expect(Self.pairs(Self.normalizing, ["\u{212B}", "\u{C5}", "a\u{30A}"]).count == 1, "Å and Å; å is another letter")
    #expect(Self.pairs(Self.both, ["A", "a", "\u{FF41}"]).count == 1, "a full-width a is another letter")
  }

  @Test("byte-distinct names that no folding joins are not refused")
  func distinctNames() {
    let paths = ["a", "b", "r\u{E9}sum\u{E9}", "resume", "\u{DF}", "s", "a.conf", "a.conf.bak", "x/a", "y/a", "\u{1F600}", "ffi", "\u{FB03}x"]
    #expect(Self.pairs(Self.both, paths).isEmpty)
    // One directory under two spellings holds both files: nothing is lost.
    #expect(Self.pairs(Self.both, ["Dir/a", "dir/b"]).isEmpty)
    // A file standing where a folded directory goes collides.
    #expect(Self.pairs(Self.caseFolding, ["A", "a/b"]) == [["A", "a/b"]])
    #expect(Self.pairs(Self.caseFolding, ["a", "a/b"]).isEmpty, "the byte-equal conflict is the planner's own")
  }

  @Test("folded forms: NFD, case folded; other bytes kept, ASCII lowered")
  func foldedForms() {
    #expect(Self.both.folded(Array("CAF\u{C9}".utf8)) == Array("cafe\u{301}".utf8))
    #expect(Self.normalizing.folded(Array("CAF\u{C9}".utf8)) == Array("CAFE\u{301}".utf8))
    #expect(Self.caseFolding.folded([0x41, 0xFF, 0x42]) == [0x61, 0xFF, 0x62], "not UTF-8: bytes, ASCII lowered")
    #expect(NameFolding.exact.folded(Array("Ab".utf8)) == Array("Ab".utf8))
  }

  @Test("the probe finds this machine's temp directory (ext4 or tmpfs) case-sensitive and not normalizing, and leaves nothing")
  func probeHere() throws {
    let dir = TemporaryDirectory("etcsync-fold")
    var before = stat()
    stat(dir.path, &before)
    let folding = try #require(NameFolding.probe(root: dir.path)).get()
    #expect(folding == .exact, "\(folding)")
    #expect(Disk.names(dir.path).isEmpty, "the probe files are removed")
    var after = stat()
    stat(dir.path, &after)
    #expect(after.st_mtim.tv_sec == before.st_mtim.tv_sec && after.st_mtim.tv_nsec == before.st_mtim.tv_nsec,
            "the directory's mtime is put back")
    #expect(NameFolding.probe(root: dir("missing")) == nil)
    // The runner probes a tree's root once per directory and says the same.
    let runner = try MappingRunner(mapping: Mapping(name: "t", kind: .tree, prefixes: ["/t/"], dest: dir("tree")),
                                   commandTimeout: .seconds(5), logger: .init(label: "test"))
    #expect(try runner.destinationFolding() == .exact)
    #expect(Disk.exists(dir("tree")) && Disk.names(dir("tree")).isEmpty)
  }

  @Test("the planner refuses a tree whose keys fold to one name, naming both keys")
  func plannerRefuses() throws {
    let kvs = ["/t/App.conf", "/t/app.conf", "/t/other"].map {
      KeyValue(key: Array($0.utf8), value: Array("v".utf8), createRevision: 2, modRevision: 2, version: 1)
    }
    let planner = MappingPlanner(mapping: Mapping(name: "t", kind: .tree, prefixes: ["/t/"], dest: "/srv/t"), template: nil,
                                 attributes: FileAttributes())
    let space = KeySpace(revision: 2, kvs: kvs)
    #expect(throws: Never.self) { try planner.plan(space) }
    let error = #expect(throws: PlanError.self) { try planner.plan(space, folding: Self.caseFolding) }
    #expect(error?.code == .nameCollision)
    #expect(error?.key == "/t/App.conf")
    #expect(error?.message.contains("keys \"/t/App.conf\" and \"/t/app.conf\" would be one file in /srv/t") == true, "\(error?.message ?? "")")
    #expect(MappingFailure(PlanError.Code.nameCollision) == .nameCollision)
  }

  @Test("an agent on a folding destination refuses the batch with name_collision and keeps the old files",
        arguments: [Mapping.Swap.symlink, .inPlace])
  func agentKeepsOldFiles(swap: Mapping.Swap) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("tree")
    NameFolding.overrides.withLock { $0[dest] = Self.caseFolding }
    defer { _ = NameFolding.overrides.withLock { $0.removeValue(forKey: dest) } }
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/t/"], dest: dest, swap: swap)
    try await h.put("/t/app.conf", "old")
    try await h.put("/t/other", "old other")
    let first = try await h.agent(h.configuration([mapping])).sync()[0]
    #expect(first.error == nil)
    #expect(Disk.read(dest + "/app.conf") == "old")
    // A case twin arrives, and the other key changes in the same batch.
    try await h.put("/t/App.conf", "twin")
    try await h.put("/t/other", "new other")
    let second = try await h.agent(h.configuration([mapping])).sync()[0]
    #expect(second.failureCode == .nameCollision, "\(second.error ?? "-")")
    #expect(second.failure?.subject == .key("/t/App.conf"))
    #expect(second.retryable == false)
    #expect(second.error?.contains("\"/t/App.conf\" and \"/t/app.conf\"") == true, "\(second.error ?? "-")")
    #expect(second.written.isEmpty)
    #expect(Disk.read(dest + "/app.conf") == "old", "the old file stays")
    #expect(Disk.read(dest + "/other") == "old other", "nothing of the batch is written")
    #expect(!Disk.names(dest).contains("App.conf"))
    // The twin goes: the mapping catches up.
    try await h.delete("/t/App.conf")
    let third = try await h.agent(h.configuration([mapping])).sync()[0]
    #expect(third.error == nil)
    #expect(Disk.read(dest + "/other") == "new other")
  }
}
