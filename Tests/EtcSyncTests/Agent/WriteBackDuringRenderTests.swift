import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Testing

/// Local edits saved while the agent renders a write-back mapping: the render scans (and
/// pushes) first, then writes, and a file saved between the two must neither be overwritten
/// with etcd's value nor keep the mapping from converging (``ExpectedFile``).
@Suite("Agent: write-back edits during a render")
struct WriteBackDuringRenderTests {
  /// The agent scans for local edits right before it renders, and the render overwrites what
  /// differs from etcd: an edit saved after that scan used to be overwritten with etcd's
  /// value and lost without a trace (seen as a flaky hostile test). The mapping's check runs
  /// on the staged file right before its rename, so a save made there lands in that window.
  @Test("a local edit saved while the render writes is left for the next scan and pushed", arguments: [Mapping.Kind.tree, .file])
  func editDuringRender(kind: Mapping.Kind) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/wb/f", "base")
    let target = kind == .tree ? h.dir("A/f") : h.dir("A.conf")
    func agent(check: [String]? = nil) throws -> Agent {
      let mapping = Mapping(name: "m", kind: kind, prefixes: kind == .tree ? ["/wb/"] : [], key: kind == .file ? "/wb/f" : nil,
                            dest: kind == .tree ? h.dir("A") : target, check: check, writeBack: true, conflict: .localWins)
      let configuration = AgentConfiguration(mappings: [mapping], state: StateSettings(dir: h.dir("A.state")), commandTimeout: .seconds(10))
      return try Agent(configuration: configuration, client: h.client, logger: h.logger)
    }
    _ = try await agent().sync()
    #expect(Disk.read(target) == "base")
    try await h.put("/wb/f", "newer in etcd")
    // The check only writes while its marker is there: once, in the first pass.
    let marker = h.dir("marker")
    try Disk.write(marker, "")
    let racing = try await agent(check: ["/bin/sh", "-c", #"[ -e "$1" ] || exit 0; rm "$1"; printf 'saved meanwhile' > "$2""#, "sh", marker, target])
      .sync()[mapping: "m"]
    #expect(!Disk.exists(marker), "the check never ran armed: the test tested nothing")
    #expect(racing?.error == nil, "\(racing?.error ?? "")")
    #expect(Disk.read(target) == "saved meanwhile", "the edit saved during the render was overwritten")
    #expect(h.messages(atLeast: .notice).contains("local files edited during the render were left as they are; they are pushed next"))
    // `etcsync sync` makes its pass again: the next scan found the edit against the record
    // of "base" and pushed it (local-wins) before the sync ended.
    #expect(racing?.keptEdits == [])
    #expect(try await WriteBackTests.value(h, "/wb/f") == "saved meanwhile")
  }

  /// A file saved during the render that the next scan has nothing to push for (here a JSON
  /// document written again in another layout with the same entries) is rendered again: the
  /// daemon does not wait for etcd's next change to write it.
  @Test("a kept file whose scan pushes nothing is rendered again by the daemon")
  func keptThenRendered() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/doc/host", "db1")
    try await h.put("/doc/port", "5432")
    let document = h.dir("app.json")
    let arm = h.dir("arm")
    // Armed, the check (run on the staged document right before its rename) saves the
    // document once more, with the entries it had, on one line, through a rename.
    let script = #"[ -e "$1" ] || exit 0; rm "$1"; printf '{"host":"db1","port":"5432"}' > "$2.x"; mv "$2.x" "$2""#
    let mapping = Mapping(name: "doc", kind: .format, prefixes: ["/doc/"], dest: document,
                          check: ["/bin/sh", "-c", script, "sh", arm, document], format: .json, writeBack: true)
    let agent = try h.agent(h.configuration([mapping]))
    let daemon = Daemon(agent)
    #expect(await eventually { Disk.read(document)?.contains("db1") == true })
    try Disk.write(arm, "")
    try await h.put("/doc/host", "db9")
    #expect(await eventually { Disk.read(document)?.contains("db9") == true }, "\(Disk.read(document) ?? "-")")
    #expect(!Disk.exists(arm), "the check never ran armed: the test tested nothing")
    #expect(h.messages(atLeast: .notice).contains("local files edited during the render were left as they are; they are pushed next"))
    #expect(try await WriteBackTests.value(h, "/doc/host") == "db9")
    #expect(await agent.writeBackStats.pushed == 0)
    #expect(await daemon.stop() == nil)
  }

  /// The scan lists regular files only, so a symlink or FIFO where a new key's file goes was
  /// never looked at: the writer once expected "nothing" there, kept the entry at every
  /// render, and `etcsync sync` (the start of `etcsync run`) failed after its passes. Such an
  /// entry is replaced by the key's file, as before write-back looked at renders at all.
  @Test("a symlink or FIFO where a new key's file goes is replaced, and sync succeeds")
  func nonRegularAtNewKey() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/wb/a", "1")
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/wb/"], dest: h.dir("A"), writeBack: true)
    _ = try await h.agent(h.configuration([mapping])).sync()
    try Disk.write(h.dir("outside"), "not etcd's")
    try Disk.symlink(h.dir("outside"), at: h.dir("A/b"))
    #expect(mkfifo(h.dir("A/c"), 0o600) == 0)
    try await h.put("/wb/b", "two")
    try await h.put("/wb/c", "three")
    let result = try await h.agent(h.configuration([mapping])).sync()[mapping: "tree"]
    #expect(result?.error == nil, "\(result?.error ?? "")")
    #expect(!Disk.isSymlink(h.dir("A/b")) && Disk.read(h.dir("A/b")) == "two")
    #expect(Disk.read(h.dir("A/c")) == "three")
    #expect(Disk.read(h.dir("outside")) == "not etcd's")
  }

  /// A JSON document is compared entry by entry, so an edit can push nothing: a deleted
  /// document (restored), one written again in another layout (same entries), and one whose
  /// edit lost a conflict to etcd (kept beside it as a conflict copy). Each is written over by
  /// the render, as `docs/write-back.md` says, and later changes from etcd still arrive.
  @Test("a JSON document deleted, reformatted or losing a conflict is written again")
  func documentRestored() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/doc/host", "db1")
    try await h.put("/doc/port", "5432")
    let document = h.dir("etc/app.json")
    let mapping = Mapping(name: "doc", kind: .format, prefixes: ["/doc/"], dest: document, format: .json, writeBack: true)
    func entries() -> [String: String]? {
      guard let text = Disk.read(document) else { return nil }
      return (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: String]
    }
    let agent = try h.agent(h.configuration([mapping]))
    let daemon = Daemon(agent)
    #expect(await eventually { entries() == ["host": "db1", "port": "5432"] })
    let canonical = Disk.read(document)
    // Deleted: restored (deletes: false), not left missing.
    #expect(unlink(document) == 0)
    #expect(await eventually { Disk.read(document) == canonical }, "\(Disk.read(document) ?? "missing")")
    // Written again on one line with the same entries: nothing to push, and etcd's next
    // change still reaches the document.
    try WriteBackTests.renameSave(document, #"{"host":"db1","port":"5432"}"#)
    try await Task.sleep(for: .milliseconds(300))
    try await h.put("/doc/host", "db9")
    #expect(await eventually { entries() == ["host": "db9", "port": "5432"] }, "\(Disk.read(document) ?? "missing")")
    #expect(await daemon.stop() == nil)
    // A local edit and a newer etcd value while the agent is stopped: etcd wins, the edit is
    // kept as a conflict copy, the document takes etcd's value, and later changes arrive.
    try WriteBackTests.renameSave(document, #"{"host": "local", "port": "5432"}"#)
    try await h.put("/doc/host", "remote")
    _ = try await h.agent(h.configuration([mapping])).sync()
    #expect(entries() == ["host": "remote", "port": "5432"], "\(Disk.read(document) ?? "missing")")
    #expect(Disk.names(h.dir("etc")).contains { $0.hasPrefix("app.json.conflict.") })
    try await h.put("/doc/port", "7000")
    _ = try await h.agent(h.configuration([mapping])).sync()
    #expect(entries() == ["host": "remote", "port": "7000"], "\(Disk.read(document) ?? "missing")")
    #expect(try await WriteBackTests.value(h, "/doc/host") == "remote")
  }
}
