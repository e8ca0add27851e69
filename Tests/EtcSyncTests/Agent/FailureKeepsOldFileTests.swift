import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Testing

/// A mapping that fails leaves its files exactly as they were, runs no reload, and does not
/// stop the other mappings.
@Suite("Agent: a failing mapping keeps its old files")
struct FailureKeepsOldFileTests {
  @Test("a missing key in a template fails that mapping only; no `<no value>`, the old file stays")
  func missingTemplateKey() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try Disk.write(h.dir("t/app.tmpl"), "db = {{ getv \"/m/app/db\" }}\nport = {{ getv \"/m/app/port\" \"5432\" }}\n")
    let mappings = [
      Mapping(name: "app", kind: .template, prefixes: ["/m/app/"], template: h.dir("t/app.tmpl"), dest: h.dir("out/app.conf"),
              reload: h.logCommand("app")),
      Mapping(name: "other", kind: .tree, prefixes: ["/m/other/"], dest: h.dir("out/other"), reload: h.logCommand("other")),
    ]
    let configuration = h.configuration(mappings)
    try await h.put("/m/app/db", "primary")
    try await h.put("/m/other/x", "1")
    _ = try await h.agent(configuration).sync()
    #expect(Disk.read(h.dir("out/app.conf")) == "db = primary\nport = 5432\n")
    let before = Bytes.identity(h.dir("out/app.conf"))

    try await h.delete("/m/app/db")
    try await h.put("/m/app/port", "6543")
    try await h.put("/m/other/x", "2")
    let results = try await h.agent(configuration).sync()
    let error = try #require(results[mapping: "app"]?.error)
    #expect(error.contains("/m/app/db"), "\(error)")
    #expect(results[mapping: "app"]?.written == [])
    #expect(Disk.read(h.dir("out/app.conf")) == "db = primary\nport = 5432\n")
    #expect(Bytes.identity(h.dir("out/app.conf")) == before)
    #expect(results[mapping: "other"]?.error == nil)
    #expect(Disk.read(h.dir("out/other/x")) == "2")
    #expect(h.commandLines == ["app", "other", "other"])
    #expect(Disk.temporaryFiles(h.dir("out")).isEmpty)
  }

  @Test("a file mapping whose key is missing fails and keeps the old file; a first sync writes nothing")
  func missingFileKey() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let mappings = [
      Mapping(name: "motd", kind: .file, key: "/m/motd", dest: h.dir("motd"), reload: h.logCommand("motd")),
      Mapping(name: "never", kind: .file, key: "/m/never", dest: h.dir("never")),
      Mapping(name: "other", kind: .file, key: "/m/other", dest: h.dir("other")),
    ]
    let configuration = h.configuration(mappings)
    try await h.put("/m/motd", "welcome\n")
    try await h.put("/m/other", "1")
    let first = try await h.agent(configuration).sync()
    #expect(first[mapping: "never"]?.error == "key \"/m/never\" does not exist")
    #expect(!Disk.exists(h.dir("never")))
    #expect(Disk.read(h.dir("motd")) == "welcome\n")

    try await h.delete("/m/motd")
    try await h.put("/m/other", "2")
    let results = try await h.agent(configuration).sync()
    #expect(results[mapping: "motd"]?.error == "key \"/m/motd\" does not exist")
    #expect(Disk.read(h.dir("motd")) == "welcome\n")
    #expect(Disk.read(h.dir("other")) == "2")
    #expect(h.commandLines == ["motd"])
  }

  @Test("a failing check leaves the old file, no temp file and no reload", arguments: [Mapping.Kind.file, .tree])
  func failingCheck(kind: Mapping.Kind) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    // The check logs its run and refuses any staged file (or tree) that mentions "bad".
    let check = ["sh", "-c", "echo check >> '\(h.commandLog)'; ! grep -rq bad \"$0\"", "{{.src}}"]
    let dest = h.dir("out/target")
    let mapping = kind == .file
      ? Mapping(name: "m", kind: .file, key: "/c/target", dest: dest, check: check, reload: h.logCommand("reload"))
      : Mapping(name: "m", kind: .tree, prefixes: ["/c/"], dest: dest, check: check, reload: h.logCommand("reload"))
    let configuration = h.configuration([mapping])
    let agent = try h.agent(configuration)
    try await h.put("/c/target", "good v1")
    #expect(try await agent.sync()[0].error == nil)
    let path = kind == .file ? dest : dest + "/target"
    #expect(Disk.read(path) == "good v1")
    #expect(h.commandLines == ["check", "reload"])
    let before = Bytes.identity(path)
    let entriesBefore = Disk.allEntries(h.dir("out"))

    try await h.put("/c/target", "bad v2")
    let result = try await agent.sync()[0]
    let error = try #require(result.error)
    #expect(error.contains("check"), "\(error)")
    #expect(result.written.isEmpty && !result.reloaded)
    #expect(Disk.read(path) == "good v1")
    #expect(Bytes.identity(path) == before)
    #expect(Disk.allEntries(h.dir("out")) == entriesBefore, "no temp file or staged tree is left")
    #expect(h.commandLines == ["check", "reload", "check"])

    // A restart after the failed check owes no reload either.
    #expect(try await h.agent(configuration).sync()[0].reloaded == false)
    #expect(h.count("reload") == 1)
  }
}
