import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Testing

/// A restarted agent (a new `Agent` with the same state directory) rewrites nothing that is
/// unchanged and fires no needless reload, but does run a reload that a crash left owed.
@Suite("Agent: restarts and crashes")
struct RestartTests {
  /// One mapping of every kind, each with a reload that logs its name.
  static func mappings(_ h: AgentHarness) throws -> [Mapping] {
    try Disk.write(h.dir("t/list.tmpl"), "{{ range gets \"/r/tree/*\" }}{{ .Key }}={{ .Value }}\n{{ end }}")
    return [
      Mapping(name: "tpl", kind: .template, prefixes: ["/r/tree/"], template: h.dir("t/list.tmpl"), dest: h.dir("out/list"),
              reload: h.logCommand("tpl")),
      Mapping(name: "swap", kind: .tree, prefixes: ["/r/tree/"], dest: h.dir("out/swap"), reload: h.logCommand("swap")),
      Mapping(name: "flat", kind: .tree, prefixes: ["/r/flat/"], dest: h.dir("out/flat"), reload: h.logCommand("flat"), swap: .inPlace),
      Mapping(name: "motd", kind: .file, key: "/r/motd", dest: h.dir("out/motd"), reload: h.logCommand("motd")),
      Mapping(name: "json", kind: .format, prefixes: ["/r/flat/"], dest: h.dir("out/flat.json"), reload: h.logCommand("json"), format: .json),
    ]
  }

  static func seed(_ h: AgentHarness) async throws {
    try await h.put("/r/tree/a", "1")
    try await h.put("/r/tree/b/c", "2")
    try await h.put("/r/flat/x", "3")
    try await h.put("/r/flat/y/z", "4")
    try await h.put("/r/motd", "hello")
  }

  /// Identity (inode, mtime) of every regular file and symlink target under `out`.
  static func identities(_ h: AgentHarness) -> [String: FileIdentity] {
    var result: [String: FileIdentity] = [:]
    for path in Disk.allEntries(h.dir("out")) { result[path] = Bytes.identity(h.dir("out/" + path)) }
    return result
  }

  @Test("a restart with nothing changed rewrites no file and runs no reload")
  func restartIsQuiet() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let configuration = h.configuration(try Self.mappings(h))
    try await Self.seed(h)
    let first = try await h.agent(configuration).sync()
    #expect(first.allSatisfy { $0.error == nil && $0.reloaded })
    #expect(h.commandLines.sorted() == ["flat", "json", "motd", "swap", "tpl"])
    let before = Self.identities(h)
    let dataLink = Disk.link(h.dir("out/swap/..data"))

    let second = try await h.agent(configuration).sync()
    #expect(second.allSatisfy { $0.error == nil && !$0.changed && !$0.reloaded })
    #expect(h.commandLines.count == 5)
    #expect(Self.identities(h) == before)
    #expect(Disk.link(h.dir("out/swap/..data")) == dataLink)

    // One changed key: only the mappings that read it rewrite and reload.
    try await h.put("/r/flat/x", "33")
    let third = try await h.agent(configuration).sync()
    #expect(third.filter(\.reloaded).map(\.mapping).sorted() == ["flat", "json"])
    #expect(third[mapping: "flat"]?.written == ["x"])
    #expect(Bytes.identity(h.dir("out/flat/y/z")) == before["flat/y/z"])
    #expect(Bytes.identity(h.dir("out/list")) == before["list"])
    #expect(h.commandLines.count == 7)
  }

  @Test("a reload left pending in the state file runs at the next sync, once, without rewriting")
  func pendingReloadFromStateFile() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let configuration = h.configuration(try Self.mappings(h))
    try await Self.seed(h)
    _ = try await h.agent(configuration).sync()
    let before = Self.identities(h)
    // As a crash between rename and reload leaves it: the files written, the reload owed.
    let stateFile = StateFile(path: h.stateDirectory + "/state.json")
    var state = stateFile.load()
    #expect(state.mappings.count == 5)
    state[mapping: "tpl"].pendingReload = true
    state[mapping: "swap"].pendingReload = true
    try stateFile.save(state)

    let results = try await h.agent(configuration).sync()
    #expect(results.filter(\.reloaded).map(\.mapping).sorted() == ["swap", "tpl"])
    #expect(results.allSatisfy { !$0.changed })
    #expect(Self.identities(h) == before)
    #expect(stateFile.load().mappings.values.allSatisfy { !$0.pendingReload })
    _ = try await h.agent(configuration).sync()
    #expect(h.commandLines.count == 7)
  }

  @Test("a write interrupted after its rename leaves the reload owed; the next start runs it",
        arguments: [WriteStep.afterRename, .afterFsync, .afterTempWrite])
  func interruptedWrite(step: WriteStep) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let configuration = h.configuration(try Self.mappings(h))
    try await Self.seed(h)
    let crash: WriteHook = { at, _ in at == step ? .abandon : .proceed }
    let first = try await h.agent(configuration, hook: crash).sync()
    // Batched writes (the in-place tree) have no hook; the others "crash".
    let crashed = Set(first.filter(\.failed).map(\.mapping))
    #expect(crashed == ["tpl", "swap", "motd", "json"], "\(first.map { ($0.mapping, $0.error) })")
    #expect(first.filter(\.reloaded).map(\.mapping) == ["flat"])
    if step == .afterRename {
      #expect(Disk.read(h.dir("out/motd")) == "hello", "the rename happened before the crash")
    } else {
      #expect(!Disk.exists(h.dir("out/motd")))
      #expect(!Disk.temporaryFiles(h.dir("out")).isEmpty, "the crash left its temp files")
    }

    let second = try await h.agent(configuration).sync()
    #expect(second.allSatisfy { !$0.failed }, "\(second.compactMap(\.error))")
    #expect(second.filter(\.reloaded).map(\.mapping).sorted() == ["json", "motd", "swap", "tpl"])
    #expect(Disk.temporaryFiles(h.dir("out")).isEmpty)
    #expect(Disk.names(h.dir("out/swap")).filter { $0.hasPrefix("..") }.count == 2, "one revision directory and ..data")
    #expect(Disk.read(h.dir("out/motd")) == "hello")
    #expect(Disk.read(h.dir("out/swap/b/c")) == "2")
    #expect(Disk.read(h.dir("out/list")) == "/r/tree/a=1\n", "gets: * stops at /, as in confd")
    #expect(h.commandLines.sorted() == ["flat", "json", "motd", "swap", "tpl"])

    let third = try await h.agent(configuration).sync()
    #expect(third.allSatisfy { !$0.reloaded && !$0.changed })
  }

  @Test("a state file that is garbage is ignored: nothing unchanged is rewritten, each reload runs once")
  func corruptStateFile() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let configuration = h.configuration(try Self.mappings(h))
    try await Self.seed(h)
    _ = try await h.agent(configuration).sync()
    let before = Self.identities(h)
    try Disk.write(h.stateDirectory + "/state.json", "{not json")
    // Without a state, a crash before a reload cannot be ruled out: every reload runs once.
    let results = try await h.agent(configuration).sync()
    #expect(results.allSatisfy { !$0.failed && !$0.changed && $0.reloaded })
    #expect(Self.identities(h) == before)
    #expect(StateFile(path: h.stateDirectory + "/state.json").load().mappings.count == 5)
    _ = try await h.agent(configuration).sync()
    #expect(h.commandLines.count == 10)
  }

  @Test("start-up cleanup removes a file mapping's own leftovers only, not other writers' in a shared directory")
  func cleanupBesideAFile() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let stale = ".motd.etcsync-tmp-0123456789abcdef"
    let foreign = [".other.etcsync-tmp-0123456789abcdef", "sub/.x.etcsync-tmp-0123456789abcdef", "..5.0123456789abcdef/keep"]
    for name in [stale] + foreign { try Disk.write(h.dir("etc/" + name), "leftover") }
    let mapping = Mapping(name: "motd", kind: .file, key: "/r/motd", dest: h.dir("etc/motd"))
    try await h.put("/r/motd", "hello")
    #expect(try await h.agent(h.configuration([mapping])).sync()[0].error == nil)
    #expect(!Disk.exists(h.dir("etc/" + stale)))
    for name in foreign { #expect(Disk.read(h.dir("etc/" + name)) == "leftover", "\(name)") }
    #expect(Disk.read(h.dir("etc/motd")) == "hello")
  }
}
