import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Testing
import Yams

/// One sync of each mapping kind and each format against a real etcd, byte for byte.
@Suite("Agent: mapping kinds and formats")
struct MappingKindSyncTests {
  /// Bytes that are not UTF-8, with NUL, CR and LF in them.
  static let binary: [UInt8] = [0x00, 0xFF, 0xFE, 0x0A, 0x0D, 0x80, 0xC3, 0x28, 0x7F]

  @Test("template: several prefixes render into one file; keys outside them are invisible")
  func template() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try Disk.write(h.dir("templates/app.conf.tmpl"), """
      upstream app {
      {{- range gets "/tpl/servers/*" }}
        server {{ .Value }}; # {{ base .Key }}
      {{- end }}
      }
      name = {{ getv "/tpl/meta/name" }}
      other = {{ getv "/tpl/other" "invisible" }}

      """)
    let yaml = """
      state: {dir: \(h.stateDirectory)}
      mappings:
        - name: app
          prefixes: [/tpl/servers/, /tpl/meta/]
          template: templates/app.conf.tmpl
          dest: \(h.dir("out/app.conf"))
          reload: [sh, -c, "echo app >> '\(h.commandLog)'"]
      """
    let configuration = try AgentConfiguration.load(yaml: yaml, baseDirectory: h.dir.path)
    try await h.put("/tpl/servers/b", "10.0.0.2:80")
    try await h.put("/tpl/servers/a", "10.0.0.1:80")
    try await h.put("/tpl/meta/name", "demo")
    try await h.put("/tpl/other", "outside every prefix")
    let results = try await h.agent(configuration).sync()
    #expect(results.count == 1 && results[0].error == nil)
    #expect(results[0].written == [h.dir("out/app.conf")])
    #expect(Disk.read(h.dir("out/app.conf")) == """
      upstream app {
        server 10.0.0.1:80; # a
        server 10.0.0.2:80; # b
      }
      name = demo
      other = invisible

      """)
    #expect(Bytes.attributes(h.dir("out/app.conf"))?.mode == 0o644)
    #expect(h.commandLines == ["app"])
  }

  @Test("tree with the ..data swap: one file per key, nested, binary values byte-exact",
        arguments: [Mapping.Swap.symlink, .inPlace])
  func tree(swap: Mapping.Swap) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("tree")
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/tree/"], dest: dest, swap: swap)
    try await h.put("/tree/a", "1")
    try await h.put("/tree/db/url", "postgres://db/app")
    try await h.put("/tree/db/replica/url", "postgres://replica/app")
    try await h.put(Bytes.utf8("/tree/bin"), Self.binary)
    try await h.put("/tree/empty", "")
    try await h.put("/treeish", "not under the prefix")
    let results = try await h.agent(h.configuration([mapping])).sync()
    #expect(results[0].error == nil)
    #expect(results[0].rejected.isEmpty)
    #expect(results[0].written == ["a", "bin", "db/replica/url", "db/url", "empty"])
    #expect(Bytes.read(dest + "/a") == Bytes.utf8("1"))
    #expect(Bytes.read(dest + "/db/url") == Bytes.utf8("postgres://db/app"))
    #expect(Bytes.read(dest + "/db/replica/url") == Bytes.utf8("postgres://replica/app"))
    #expect(Bytes.read(dest + "/bin") == Self.binary)
    #expect(Bytes.read(dest + "/empty") == [])
    let visible = Disk.names(dest).filter { !$0.hasPrefix("..") }
    #expect(visible == ["a", "bin", "db", "empty"])
    switch swap {
    case .symlink:
      #expect(Disk.isSymlink(dest + "/..data"))
      #expect(Disk.link(dest + "/db") == "..data/db")
      #expect(Disk.names(dest).filter { $0.hasPrefix("..") }.count == 2)
    case .inPlace:
      #expect(!Disk.exists(dest + "/..data"))
      #expect(!Disk.isSymlink(dest + "/db"))
    }
    #expect(Disk.temporaryFiles(dest).isEmpty)
  }

  @Test("file: one key's raw bytes, binary included")
  func file() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let mapping = Mapping(name: "motd", kind: .file, key: "/hosts/web-01/motd", dest: h.dir("etc/motd"))
    try await h.put(Bytes.utf8("/hosts/web-01/motd"), Self.binary)
    try await h.put("/hosts/web-01/motd2", "a key that only starts like it")
    let results = try await h.agent(h.configuration([mapping])).sync()
    #expect(results[0].error == nil)
    #expect(Bytes.read(h.dir("etc/motd")) == Self.binary)
    #expect(Disk.names(h.dir("etc")) == ["motd"])
  }

  static let formatKeys: [(String, String)] = [
    ("/fmt/name", "demo"),
    ("/fmt/db/host", "localhost"),
    ("/fmt/db/port", "5432"),
    ("/fmt/msg", "say \"hi\"\n\tand $HOME"),
  ]

  static let expected: [Mapping.Format: String] = [
    .json: """
      {
        "db": {
          "host": "localhost",
          "port": "5432"
        },
        "msg": "say \\"hi\\"\\n\\tand $HOME",
        "name": "demo"
      }

      """,
    .toml: """
      msg = "say \\"hi\\"\\n\\tand $HOME"
      name = "demo"

      [db]
      host = "localhost"
      port = "5432"

      """,
    .env: """
      DB_HOST=localhost
      DB_PORT=5432
      MSG="say \\"hi\\"
      \tand \\$HOME"
      NAME=demo

      """,
    .properties: """
      db.host=localhost
      db.port=5432
      msg=say "hi"\\n\\tand $HOME
      name=demo

      """,
    .yaml: """
      db:
        host: localhost
        port: "5432"
      msg: "say \\"hi\\"\\n\\tand $HOME"
      name: demo

      """,
  ]

  @Test("format: each document byte for byte", arguments: Mapping.Format.allCases)
  func format(_ format: Mapping.Format) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("out/settings.\(format.rawValue)")
    let mapping = Mapping(name: "doc", kind: .format, prefixes: ["/fmt/"], dest: dest, format: format)
    for (key, value) in Self.formatKeys { try await h.put(key, value) }
    let results = try await h.agent(h.configuration([mapping])).sync()
    #expect(results[0].error == nil)
    #expect(Disk.read(dest) == Self.expected[format])
  }

  @Test("format: a value that is not UTF-8 fails the mapping with a clear error; trees and files take it",
        arguments: Mapping.Format.allCases)
  func formatRefusesBinary(_ format: Mapping.Format) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let doc = Mapping(name: "doc", kind: .format, prefixes: ["/bin/"], dest: h.dir("doc"), format: format)
    let tree = Mapping(name: "tree", kind: .tree, prefixes: ["/bin/"], dest: h.dir("tree"))
    try await h.put("/bin/text", "ok")
    try await h.put(Bytes.utf8("/bin/blob"), Self.binary)
    let results = try await h.agent(h.configuration([doc, tree])).sync()
    let error = try #require(results[mapping: "doc"]?.error)
    #expect(error == "format \(format.rawValue) needs text, but key \"blob\" holds bytes that are not UTF-8")
    #expect(!Disk.exists(h.dir("doc")))
    #expect(results[mapping: "tree"]?.error == nil)
    #expect(Bytes.read(h.dir("tree/blob")) == Self.binary)
  }

  @Test("an empty prefix gives an empty document, an empty tree and a template over nothing")
  func emptyPrefix() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try Disk.write(h.dir("t.tmpl"), "n={{ len (ls \"/none/\") }}\n")
    let mappings = [
      Mapping(name: "json", kind: .format, prefixes: ["/none/"], dest: h.dir("empty.json"), format: .json),
      Mapping(name: "env", kind: .format, prefixes: ["/none/"], dest: h.dir("empty.env"), format: .env),
      Mapping(name: "tree", kind: .tree, prefixes: ["/none/"], dest: h.dir("tree")),
      Mapping(name: "tpl", kind: .template, prefixes: ["/none/"], template: h.dir("t.tmpl"), dest: h.dir("t.out")),
    ]
    let results = try await h.agent(h.configuration(mappings)).sync()
    #expect(results.allSatisfy { $0.error == nil }, "\(results.compactMap(\.error))")
    #expect(Disk.read(h.dir("empty.json")) == "{}\n")
    #expect(Disk.read(h.dir("empty.env")) == "")
    #expect(Disk.read(h.dir("t.out")) == "n=0\n")
    #expect(Disk.names(h.dir("tree")).filter { !$0.hasPrefix("..") }.isEmpty)
  }

  @Test("diff shows what sync would change and writes nothing")
  func diff() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let mappings = [
      Mapping(name: "motd", kind: .file, key: "/d/motd", dest: h.dir("motd")),
      Mapping(name: "tree", kind: .tree, prefixes: ["/d/tree/"], dest: h.dir("tree"), swap: .inPlace),
    ]
    try await h.put("/d/motd", "hello\n")
    try await h.put("/d/tree/a", "1")
    let agent = try h.agent(h.configuration(mappings))
    let changes = try await agent.diff()
    #expect(changes.map(\.path) == [h.dir("motd"), h.dir("tree") + "/a"])
    #expect(changes.allSatisfy { $0.old == nil })
    #expect(!Disk.exists(h.dir("motd")) && !Disk.exists(h.dir("tree")))
    _ = try await agent.sync()
    #expect(try await agent.diff().isEmpty)
    try await h.delete("/d/tree/a")
    let deletion = try await agent.diff()
    #expect(deletion.map(\.path) == [h.dir("tree") + "/a"])
    #expect(deletion.first?.old == Bytes.utf8("1") && deletion.first?.new == nil)
    #expect(Disk.read(h.dir("tree/a")) == "1")
  }
}
