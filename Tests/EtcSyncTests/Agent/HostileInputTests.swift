import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Logging
import Testing

/// Keys that cannot be paths are rejected (reported, escaped) while the rest syncs, and
/// nothing is written outside a mapping's root, whatever symlinks are planted under it.
@Suite("Agent: hostile keys and planted symlinks")
struct HostileInputTests {
  static let longSegment = String(repeating: "s", count: 300)

  /// Puts the hostile keys and two good ones under `prefix`.
  static func putHostileKeys(_ h: AgentHarness, prefix: String) async throws {
    try await h.put(prefix + "ok", "fine")
    try await h.put(prefix + "sub/ok", "fine too")
    try await h.put(prefix + "../x", "escape")
    try await h.put(prefix + "/abs", "absolute")
    try await h.put(prefix + "a//b", "empty segment")
    try await h.put(Bytes.utf8(prefix + "nul") + [0] + Bytes.utf8("x"), Bytes.utf8("nul"))
    try await h.put(prefix + Self.longSegment, "long")
    try await h.put(prefix + "both", "a file")
    try await h.put(prefix + "both/child", "and a directory")
  }

  static let expectedReasons: [String: KeyPathError.Reason] = [
    "/h/../x": .dotSegment,
    "/h//abs": .absolute,
    "/h/a//b": .emptySegment,
    "/h/nul\\x00x": .containsNUL,
    "/h/\(longSegment)": .segmentTooLong(bytes: 300),
    "/h/both": .fileDirectoryConflict,
    "/h/both/child": .fileDirectoryConflict,
  ]

  @Test("hostile keys are rejected and the rest of the tree syncs", arguments: [Mapping.Swap.symlink, .inPlace])
  func hostileKeysInTree(swap: Mapping.Swap) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("root/tree")
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/h/"], dest: dest, swap: swap)
    try await Self.putHostileKeys(h, prefix: "/h/")
    let result = try await h.agent(h.configuration([mapping])).sync()[0]
    #expect(result.error == nil)
    #expect(result.written == ["ok", "sub/ok"])
    let rejected = Dictionary(result.rejected.map { ($0.escapedKey, $0.reason) }, uniquingKeysWith: { a, _ in a })
    #expect(rejected == Self.expectedReasons)
    #expect(result.rejected.count == Self.expectedReasons.count)
    #expect(Disk.read(dest + "/ok") == "fine")
    #expect(Disk.read(dest + "/sub/ok") == "fine too")
    #expect(Disk.names(dest).filter { !$0.hasPrefix("..") } == ["ok", "sub"])
    #expect(Disk.names(h.dir("root")) == ["tree"], "nothing beside the root (../x)")
    #expect(!Disk.exists("/abs") && !Disk.exists(dest + "/abs"))
    // Each rejection is logged once, as a warning.
    #expect(h.messages(atLeast: .warning).filter { $0 == "key rejected" }.count == Self.expectedReasons.count)
  }

  @Test("a file already written stays when a later key makes it a directory too", arguments: [Mapping.Swap.symlink, .inPlace])
  func conflictKeepsOldFile(swap: Mapping.Swap) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("tree")
    let agent = try h.agent(h.configuration([Mapping(name: "tree", kind: .tree, prefixes: ["/c/"], dest: dest, swap: swap)]))
    try await h.put("/c/c", "old file")
    try await h.put("/c/other", "1")
    #expect(try await agent.sync()[0].written == ["c", "other"])
    try await h.put("/c/c/d", "child")
    try await h.put("/c/other", "2")
    let result = try await agent.sync()[0]
    #expect(result.error == nil)
    // A swapped tree reports every file of the new tree as written.
    #expect(result.written == (swap == .inPlace ? ["other"] : ["c", "other"]) && result.deleted.isEmpty)
    #expect(Set(result.rejected.map(\.escapedKey)) == ["/c/c", "/c/c/d"])
    #expect(Disk.read(dest + "/c") == "old file", "the conflicting key's old file is held, not deleted")
    #expect(Disk.read(dest + "/other") == "2")
    // Once the conflict is gone (the child deleted), the file follows its key again.
    try await h.delete("/c/c/d")
    try await h.put("/c/c", "new file")
    #expect(try await agent.sync()[0].written.contains("c"))
    #expect(Disk.read(dest + "/c") == "new file")
  }

  @Test("hostile keys are rejected from a format document too; the rest is rendered")
  func hostileKeysInFormat() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let mapping = Mapping(name: "doc", kind: .format, prefixes: ["/h/"], dest: h.dir("doc.json"), format: .json)
    try await Self.putHostileKeys(h, prefix: "/h/")
    let result = try await h.agent(h.configuration([mapping])).sync()[0]
    #expect(result.error == nil)
    #expect(result.rejected.count == Self.expectedReasons.count)
    #expect(Disk.read(h.dir("doc.json")) == "{\n  \"ok\": \"fine\",\n  \"sub\": {\n    \"ok\": \"fine too\"\n  }\n}\n")
  }

  @Test("in-place tree: a symlinked directory under dest is refused; nothing lands outside; the rest syncs")
  func symlinkedDirectoryInPlace() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("tree")
    try Disk.write(h.dir("outside/victim"), "secret")
    try FileManager.default.createDirectory(atPath: dest, withIntermediateDirectories: true)
    try Disk.symlink(h.dir("outside"), at: dest + "/evil")
    try Disk.symlink("../outside", at: dest + "/rel")
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/s/"], dest: dest, swap: .inPlace)
    try await h.put("/s/evil/victim", "pwned")
    try await h.put("/s/evil/new", "pwned")
    try await h.put("/s/rel/new", "pwned")
    try await h.put("/s/good", "ok")
    let result = try await h.agent(h.configuration([mapping])).sync()[0]
    #expect(result.written == ["good"])
    #expect(result.error?.contains("symlink") == true, "\(result.error ?? "no error")")
    #expect(Disk.read(dest + "/good") == "ok")
    #expect(Disk.names(h.dir("outside")) == ["victim"])
    #expect(Disk.read(h.dir("outside/victim")) == "secret")
  }

  @Test("swap tree: planted top-level symlinks and a planted ..data are replaced, never followed")
  func plantedSymlinksSwap() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("tree")
    try Disk.write(h.dir("outside/victim"), "secret")
    try Disk.write(h.dir("outside/evil/victim"), "secret")
    try FileManager.default.createDirectory(atPath: dest, withIntermediateDirectories: true)
    try Disk.symlink(h.dir("outside/evil"), at: dest + "/evil")
    try Disk.symlink(h.dir("outside"), at: dest + "/..data")
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/s/"], dest: dest)
    try await h.put("/s/evil/victim", "pwned")
    try await h.put("/s/victim", "pwned")
    try await h.put("/s/good", "ok")
    let agent = try h.agent(h.configuration([mapping]))
    let result = try await agent.sync()[0]
    #expect(result.error == nil)
    #expect(Disk.read(dest + "/good") == "ok")
    #expect(Disk.read(dest + "/evil/victim") == "pwned")
    #expect(Disk.link(dest + "/evil") == "..data/evil")
    #expect(Disk.link(dest + "/..data")?.hasPrefix("..") == true)
    #expect(Disk.allEntries(h.dir("outside")) == ["evil", "evil/victim", "victim"])
    #expect(Disk.read(h.dir("outside/victim")) == "secret")
    #expect(Disk.read(h.dir("outside/evil/victim")) == "secret")
    // A second revision swaps again without touching the outside.
    try await h.put("/s/good", "ok2")
    #expect(try await agent.sync()[0].error == nil)
    #expect(Disk.read(dest + "/good") == "ok2")
    #expect(Disk.read(h.dir("outside/victim")) == "secret")
    #expect(Disk.allEntries(h.dir("outside")) == ["evil", "evil/victim", "victim"])
  }

  @Test("file and template mappings replace a planted symlink at dest; its target is untouched")
  func plantedSymlinkAtDest() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try Disk.write(h.dir("outside/victim"), "secret")
    try Disk.write(h.dir("t.tmpl"), "v={{ getv \"/s/v\" }}\n")
    try FileManager.default.createDirectory(atPath: h.dir("etc"), withIntermediateDirectories: true)
    try Disk.symlink(h.dir("outside/victim"), at: h.dir("etc/motd"))
    try Disk.symlink(h.dir("outside/victim"), at: h.dir("etc/app.conf"))
    let mappings = [
      Mapping(name: "motd", kind: .file, key: "/s/v", dest: h.dir("etc/motd")),
      Mapping(name: "app", kind: .template, prefixes: ["/s/"], template: h.dir("t.tmpl"), dest: h.dir("etc/app.conf")),
    ]
    try await h.put("/s/v", "new")
    let results = try await h.agent(h.configuration(mappings)).sync()
    #expect(results.allSatisfy { $0.error == nil })
    #expect(!Disk.isSymlink(h.dir("etc/motd")) && !Disk.isSymlink(h.dir("etc/app.conf")))
    #expect(Disk.read(h.dir("etc/motd")) == "new")
    #expect(Disk.read(h.dir("etc/app.conf")) == "v=new\n")
    #expect(Disk.read(h.dir("outside/victim")) == "secret")
  }

  // MARK: Mode and owner

  static let nobody: (uid: uid_t, gid: gid_t) = (65534, 65534)

  @Test("configured mode, owner and group are applied to every file, before it is visible",
        .enabled(if: getuid() == 0), arguments: [Mapping.Kind.file, .template, .format, .tree])
  func modeAndOwnerApplied(kind: Mapping.Kind) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try Disk.write(h.dir("t.tmpl"), "{{ getv \"/o/a\" }}\n")
    let dest = h.dir("out/dest")
    var mapping = Mapping(name: "m", kind: kind, prefixes: ["/o/"], dest: dest, mode: 0o640, owner: "nobody", group: "nogroup")
    switch kind {
    case .file: mapping.prefixes = []; mapping.key = "/o/a"
    case .template: mapping.template = h.dir("t.tmpl")
    case .format: mapping.format = .env
    case .tree: break
    }
    try await h.put("/o/a", "1")
    try await h.put("/o/b/c", "2")
    #expect(try await h.agent(h.configuration([mapping])).sync()[0].error == nil)
    let files = kind == .tree ? [dest + "/a", dest + "/b/c"] : [dest]
    for file in files {
      let attributes = try #require(Bytes.attributes(file))
      #expect(attributes.mode == 0o640, "\(file)")
      #expect(attributes.uid == Self.nobody.uid && attributes.gid == Self.nobody.gid, "\(file)")
    }
  }

  @Test("without mode or owner configured, an existing file keeps its mode and owner when rewritten",
        .enabled(if: getuid() == 0), arguments: [Mapping.Swap.symlink, .inPlace])
  func modeAndOwnerPreserved(swap: Mapping.Swap) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let mappings = [
      Mapping(name: "motd", kind: .file, key: "/p/motd", dest: h.dir("etc/motd")),
      Mapping(name: "tree", kind: .tree, prefixes: ["/p/tree/"], dest: h.dir("tree"), swap: swap),
    ]
    let configuration = h.configuration(mappings)
    try Disk.write(h.dir("etc/motd"), "old", mode: 0o600)
    chown(h.dir("etc/motd"), Self.nobody.uid, Self.nobody.gid)
    try await h.put("/p/motd", "v1")
    try await h.put("/p/tree/a", "v1")
    let agent = try h.agent(configuration)
    _ = try await agent.sync()
    #expect(Disk.read(h.dir("etc/motd")) == "v1")
    #expect(Bytes.attributes(h.dir("etc/motd"))?.mode == 0o600)
    #expect(Bytes.attributes(h.dir("etc/motd"))?.uid == Self.nobody.uid)
    #expect(Bytes.attributes(h.dir("tree/a"))?.mode == 0o644, "a new file gets 0644")
    // An operator changes a tree file's mode and owner; the next revision keeps them.
    chmod(h.dir("tree/a"), 0o600)
    chown(h.dir("tree/a"), Self.nobody.uid, Self.nobody.gid)
    try await h.put("/p/motd", "v2")
    try await h.put("/p/tree/a", "v2")
    _ = try await agent.sync()
    #expect(Disk.read(h.dir("etc/motd")) == "v2")
    #expect(Bytes.attributes(h.dir("etc/motd"))?.mode == 0o600)
    #expect(Bytes.attributes(h.dir("etc/motd"))?.uid == Self.nobody.uid)
    #expect(Disk.read(h.dir("tree/a")) == "v2")
    #expect(Bytes.attributes(h.dir("tree/a"))?.mode == 0o600)
    #expect(Bytes.attributes(h.dir("tree/a"))?.uid == Self.nobody.uid)
    #expect(Bytes.attributes(h.dir("tree/a"))?.gid == Self.nobody.gid)
  }

  @Test("a changed mode alone rewrites the file (and reloads); the same mode and bytes do not",
        .enabled(if: getuid() == 0))
  func modeChangeIsAChange() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    var mapping = Mapping(name: "motd", kind: .file, key: "/p/motd", dest: h.dir("motd"), mode: 0o644, reload: h.logCommand("reload"))
    try await h.put("/p/motd", "v1")
    _ = try await h.agent(h.configuration([mapping])).sync()
    _ = try await h.agent(h.configuration([mapping])).sync()
    #expect(h.count("reload") == 1)
    mapping.mode = 0o600
    let result = try await h.agent(h.configuration([mapping])).sync()[0]
    #expect(result.written == [h.dir("motd")] && result.reloaded)
    #expect(Bytes.attributes(h.dir("motd"))?.mode == 0o600)
    #expect(h.count("reload") == 2)
  }
}
