import EtcdClient
import EtcdTestSupport
import Foundation
import Logging
import Testing

@testable import EtcSync

/// One rule for which keys a prefix covers (``KeyPrefix``): `/app/config` covers itself and
/// `/app/config/…`, never its siblings `/app/config2/…` or `/app/configX`, wherever the
/// question is asked (reads, watches, templates, trees, formats, write-back keys).
@Suite("Prefix rule: a prefix without its trailing slash is a directory")
struct PrefixRuleTests {
  static let siblings = ["/app/config2/b", "/app/configX", "/app/config-old/c"]

  @Test("KeyPrefix: both forms, byte-wise")
  func rule() {
    let bare = KeyPrefix("/app/config")
    let slashed = KeyPrefix("/app/config/")
    for prefix in [bare, slashed] {
      #expect(prefix.contains(Array("/app/config/a".utf8)))
      #expect(prefix.contains(Array("/app/config/a/b".utf8)))
      for sibling in Self.siblings { #expect(!prefix.contains(Array(sibling.utf8))) }
      #expect(prefix.key(forRelativePath: "db/url") == Array("/app/config/db/url".utf8))
    }
    #expect(bare.contains(Array("/app/config".utf8)))
    #expect(!slashed.contains(Array("/app/config".utf8)))
    #expect(KeyPrefix("").contains(Array("/anything".utf8)))
    #expect(bare.ranges == [.key("/app/config"), .prefix("/app/config/")])
    #expect(slashed.ranges == [.prefix("/app/config/")])
    #expect(slashed.isWithin(bare) && !bare.isWithin(slashed))
    // A `/` followed by a combining mark is one Character but still a `/` byte.
    #expect(KeyPrefix("/a/\u{301}").isDirectory == false)
  }

  @Test("the agent reads and watches only the covered keys; write-back names keys by the rule")
  func ranges() throws {
    let mappings = [
      Mapping(name: "tree", kind: .tree, prefixes: ["/app/config"], dest: "/nonexistent/tree"),
      Mapping(name: "format", kind: .format, prefixes: ["/app/config"], dest: "/nonexistent/f.json", format: .json),
    ]
    let agent = try Agent(
      configuration: AgentConfiguration(mappings: mappings, state: StateSettings(dir: "/nonexistent/state")),
      client: EtcdClient(configuration: EtcdConfiguration(endpoints: ["http://127.0.0.1:1"])),
      logger: .init(label: "test"))
    for sibling in Self.siblings {
      #expect(!agent.ranges.contains { $0.contains(Array(sibling.utf8)) })
      #expect(agent.mappings(touching: Array(sibling.utf8)).isEmpty)
    }
    #expect(agent.mappings(touching: Array("/app/config/a".utf8)) == ["tree", "format"])
    #expect(LocalScanner(mapping: mappings[0]).key(for: "a/b") == Array("/app/config/a/b".utf8))
  }

  @Test("a template sees its prefix's key and directory, never siblings, each key once in order")
  func dataSource() {
    let keys = ["/app/config", "/app/config-old/c", "/app/config/a", "/app/config/sub/b", "/app/config2/b", "/app/configX", "/b/1"]
    let space = KeySpace(revision: 1, kvs: keys.map { KeyValue(key: Array($0.utf8), value: Array($0.utf8), modRevision: 1) })
    let source = KeySpaceDataSource(keySpace: space, prefixes: ["/app/config", "/app/config/sub/", "/b/"])
    #expect(source.value(forKey: "/app/configX") == nil)
    #expect(source.value(forKey: "/app/config") == Array("/app/config".utf8))
    var walked: [String] = []
    source.forEachEntry(withPrefix: "/app/conf") { key, _ in walked.append(key); return true }
    #expect(walked == ["/app/config", "/app/config/a", "/app/config/sub/b"])
    walked = []
    source.forEachEntry(withPrefix: "/") { key, _ in walked.append(key); return true }
    #expect(walked == ["/app/config", "/app/config/a", "/app/config/sub/b", "/b/1"])
  }

  @Test("tree, format and template mappings with /app/config: only /app/config/a, siblings neither read nor reported")
  func endToEnd() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try Disk.write(h.dir("t.tmpl"), """
      a={{ getv "/app/config/a" }} x={{ getv "/app/configX" "hidden" }}
      {{- range gets "/app/config*" }} {{ .Key }}{{ end }}

      """)
    let yaml = """
      state: {dir: \(h.stateDirectory)}
      mappings:
        - {name: tree, kind: tree, prefix: /app/config, dest: \(h.dir("tree"))}
        - {name: format, kind: format, format: json, prefix: /app/config, dest: \(h.dir("f.json"))}
        - {name: template, prefix: /app/config, template: t.tmpl, dest: \(h.dir("t.out"))}
      """
    let configuration = try AgentConfiguration.load(yaml: yaml, baseDirectory: h.dir.path)
    try await h.put("/app/config/a", "1")
    for sibling in Self.siblings { try await h.put(sibling, "sibling") }
    let agent = try h.agent(configuration)
    let results = try await agent.sync()
    #expect(results[mapping: "tree"]?.written == ["a"])
    for result in results {
      #expect(result.error == nil)
      #expect(result.rejected.isEmpty, "\(result.mapping): \(result.rejected)")
    }
    #expect(Disk.names(h.dir("tree")).filter { !$0.hasPrefix("..") } == ["a"])
    #expect(Disk.read(h.dir("f.json"))?.contains("config2") == false)
    #expect(Disk.read(h.dir("t.out")) == "a=1 x=hidden\n")
    for sibling in Self.siblings { #expect(await agent.keySpace[Array(sibling.utf8)] == nil) }

    // Watched: a sibling put is dropped on arrival, a covered one lands.
    let daemon = Daemon(agent)
    try await h.put("/app/config2/late", "sibling")
    try await h.put("/app/config/late", "2")
    #expect(await eventually { Bytes.read(h.dir("tree/late")) == Bytes.utf8("2") })
    _ = await daemon.stop()
    #expect(await agent.keySpace[Array("/app/config2/late".utf8)] == nil)
    let warnings = h.messages(atLeast: .warning).filter { $0.contains("config2") || $0.contains("configX") || $0.contains("config-old") }
    #expect(warnings.isEmpty, "\(warnings)")
  }
}
