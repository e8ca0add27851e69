import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Logging
import Templates
import Testing

/// Keys whose bytes differ but whose text is canonically equivalent (a precomposed `é`,
/// `C3 A9`, and `e` + combining acute, `65 CC 81`) are two keys in etcd and two names on
/// Linux. Swift's `String` compares them equal, so every map keyed by a key or a path must
/// compare bytes; these tests hold each mapping kind to etcd's bytes.
@Suite("Hostile: canonically equivalent twin keys")
struct CanonicalTwinTests {
  static let precomposed = "\u{E9}"
  static let decomposed = "e\u{301}"

  /// The names of `directory`'s entries as raw bytes, without `.`, `..` and hidden entries.
  static func rawNames(_ directory: String) -> [[UInt8]] {
    guard let handle = opendir(directory) else { return [] }
    defer { closedir(handle) }
    var names: [[UInt8]] = []
    while let entry = readdir(handle) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
        Array(raw.prefix { $0 != 0 })
      }
      if name.first == UInt8(ascii: ".") { continue }
      names.append(name)
    }
    return names.sorted { $0.lexicographicallyPrecedes($1) }
  }

  /// Every key under `prefix` at `revision`, read from etcd itself (the oracle).
  static func oracle(_ h: AgentHarness, _ prefix: String, revision: Int64) async throws -> [[UInt8]: [UInt8]] {
    let response = try await h.client.get(KeyRange.prefix(prefix), options: GetOptions(revision: revision))
    var keys: [[UInt8]: [UInt8]] = [:]
    for kv in response.kvs { keys[kv.key] = kv.value }
    return keys
  }

  /// Checks that the tree under `dest` holds exactly etcd's keys under `prefix`, byte for byte.
  static func expectTreeEqualsEtcd(_ h: AgentHarness, dest: String, prefix: String, revision: Int64) async throws {
    let keys = try await Self.oracle(h, prefix, revision: revision)
    var onDisk: [[UInt8]: [UInt8]] = [:]
    func walk(_ directory: String, _ relative: [UInt8]) {
      for name in Self.rawNames(directory) {
        let path = directory + "/" + String(decoding: name, as: UTF8.self)
        let rel = relative.isEmpty ? name : relative + [UInt8(ascii: "/")] + name
        var info = stat()
        guard stat(path, &info) == 0 else { continue }
        if info.st_mode & S_IFMT == S_IFDIR { walk(path, rel) } else { onDisk[Array(prefix.utf8) + rel] = Bytes.read(path) }
      }
    }
    walk(dest, [])
    #expect(onDisk == keys, "the tree is not etcd's content at revision \(revision)")
  }

  @Test("tree: twins are two files with their own values", arguments: [Mapping.Swap.symlink, .inPlace])
  func tree(swap: Mapping.Swap) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("tree")
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/t/"], dest: dest, swap: swap)
    try await h.put("/t/" + Self.precomposed, "precomposed")
    try await h.put("/t/" + Self.decomposed, "decomposed")
    try await h.put("/t/d" + Self.precomposed + "/x", "under the precomposed directory")
    try await h.put("/t/d" + Self.decomposed + "/y", "under the decomposed directory")
    let result = try await h.agent(h.configuration([mapping])).sync()[0]
    #expect(result.error == nil)
    #expect(result.written.count == 4)
    try await Self.expectTreeEqualsEtcd(h, dest: dest, prefix: "/t/", revision: result.revision)
    // Deleting one twin deletes exactly its file, also across a restart (the state file).
    try await h.delete("/t/" + Self.decomposed)
    let second = try await h.agent(h.configuration([mapping])).sync()[0]
    #expect(second.error == nil)
    #expect(second.deleted.map { Array($0.utf8) } == (swap == .inPlace ? [Array(Self.decomposed.utf8)] : []))
    try await Self.expectTreeEqualsEtcd(h, dest: dest, prefix: "/t/", revision: second.revision)
    // Unchanged now: nothing rewritten.
    let third = try await h.agent(h.configuration([mapping])).sync()[0]
    #expect(third.written.isEmpty && third.deleted.isEmpty)
  }

  @Test("tree daemon: a change to one twin rewrites that file only")
  func treeDaemon() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("tree")
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/t/"], dest: dest, swap: .inPlace)
    try await h.put("/t/" + Self.precomposed, "one")
    try await h.put("/t/" + Self.decomposed, "two")
    let agent = try h.agent(h.configuration([mapping]))
    let daemon = Daemon(agent)
    defer { Task { await daemon.stop() } }
    let precomposedPath = dest + "/" + Self.precomposed
    let decomposedPath = dest + "/" + Self.decomposed
    #expect(await eventually { Bytes.read(precomposedPath) == Bytes.utf8("one") && Bytes.read(decomposedPath) == Bytes.utf8("two") })
    let revision = try await h.put("/t/" + Self.decomposed, "three")
    #expect(await eventually { await agent.appliedRevision >= revision })
    #expect(await eventually { Bytes.read(decomposedPath) == Bytes.utf8("three") })
    #expect(Bytes.read(precomposedPath) == Bytes.utf8("one"))
    try await Self.expectTreeEqualsEtcd(h, dest: dest, prefix: "/t/", revision: revision)
    await daemon.stop()
  }

  /// Each name starts with `v` so that env can make a variable of it (`VE` and `V`: env maps
  /// what is not A-Z or 0-9 to `_` and trims it, so the twins are two variables there too).
  @Test("format: twins are two entries", arguments: [Mapping.Format.json, .yaml, .toml, .properties, .env])
  func format(format: Mapping.Format) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("doc")
    let mapping = Mapping(name: "doc", kind: .format, prefixes: ["/f/"], dest: dest, format: format)
    let (one, two) = ("v" + Self.precomposed, "v" + Self.decomposed)
    try await h.put("/f/" + one, "precomposed")
    try await h.put("/f/" + two, "decomposed")
    try await h.put("/f/" + one + "x/a", "nested precomposed")
    try await h.put("/f/" + two + "x/b", "nested decomposed")
    let result = try await h.agent(h.configuration([mapping])).sync()[0]
    #expect(result.error == nil)
    let text = Bytes.read(dest) ?? []
    let document = String(decoding: text, as: UTF8.self)
    for value in ["precomposed", "decomposed", "nested precomposed", "nested decomposed"] {
      #expect(document.contains("\"\(value)\"") || document.contains("=\(value)") || document.contains(": \(value)")
                || document.contains("='\(value)'"), "\(value) missing from \(format): \(document)")
    }
    switch format {
    case .json, .toml:
      // Both names appear as their own bytes. (Foundation's JSON reader would merge them:
      // it keys objects by String, so it cannot be the oracle here.)
      #expect(text.firstRange(of: Array(one.utf8)) != nil, "\(document)")
      #expect(text.firstRange(of: Array(two.utf8)) != nil, "\(document)")
    case .yaml:
      // Escaped, each as its own bytes: `\xE9` and `e\u0301`.
      #expect(document.contains(#""v\xE9": precomposed"#) && document.contains(#""ve\u0301": decomposed"#), "\(document)")
    case .properties:
      #expect(document.contains(#"v\u00E9=precomposed"#) && document.contains(#"ve\u0301=decomposed"#), "\(document)")
    case .env:
      let names = document.split(separator: "\n").map { $0.prefix { $0 != "=" } }.map(String.init)
      #expect(names.sorted() == ["V", "VE", "VE_X_B", "V_X_A"], "\(document)")
    }
  }

  @Test("template: gets, ls and getv see both twins")
  func template() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let template = h.dir("t.tmpl")
    try Disk.write(template, """
      {{range gets "/p/*"}}{{.Key}}={{.Value}}
      {{end}}ls:{{range ls "/p"}} {{.}}{{end}}
      getv:{{getv "/p/\(Self.decomposed)"}}
      """)
    let dest = h.dir("out")
    let mapping = Mapping(name: "tpl", kind: .template, prefixes: ["/p/"], template: template, dest: dest)
    try await h.put("/p/" + Self.precomposed, "1")
    try await h.put("/p/" + Self.decomposed, "2")
    let result = try await h.agent(h.configuration([mapping])).sync()[0]
    #expect(result.error == nil)
    let expected = "/p/\(Self.precomposed)=1\n/p/\(Self.decomposed)=2\nls: \(Self.precomposed) \(Self.decomposed)\ngetv:2"
    let sortedExpected = ["/p/\(Self.decomposed)=2", "/p/\(Self.precomposed)=1"]
    let output = Bytes.read(dest) ?? []
    // Key order is byte order: `65 …` (decomposed) before `C3 A9` (precomposed).
    let lines = String(decoding: output, as: UTF8.self).split(separator: "\n").map { Array($0.utf8) }
    #expect(lines.prefix(2).map { $0 } == sortedExpected.map { Array($0.utf8) }, "\(expected)")
    #expect(lines.dropFirst(2).first == Array("ls: \(Self.decomposed) \(Self.precomposed)".utf8))
    #expect(lines.last == Array("getv:2".utf8))
  }

  @Test("file: a twin of the mapped key is not the mapped key")
  func file() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("one")
    let mapping = Mapping(name: "one", kind: .file, key: "/k/" + Self.precomposed, dest: dest)
    try await h.put("/k/" + Self.decomposed, "the twin")
    let missing = try await h.agent(h.configuration([mapping])).sync()[0]
    #expect(missing.error != nil, "the twin must not stand in for the mapped key")
    #expect(!Disk.exists(dest))
    try await h.put("/k/" + Self.precomposed, "the key")
    let found = try await h.agent(h.configuration([mapping])).sync()[0]
    #expect(found.error == nil)
    #expect(Bytes.read(dest) == Bytes.utf8("the key"))
  }

  @Test("state file: twin paths survive a save and load")
  func stateRoundTrip() throws {
    let dir = TemporaryDirectory("etcsync-state")
    let file = StateFile(path: dir("state.json"), fsync: false)
    var state = SyncState()
    state[mapping: "m"].files[ExactString(Self.precomposed)] = ContentHash(of: [1])
    state[mapping: "m"].files[ExactString(Self.decomposed)] = ContentHash(of: [2])
    state[mapping: "m"].local[ExactString(Self.decomposed)] = LocalRecord(hash: ContentHash(of: [3]), revision: 7)
    try file.save(state)
    let loaded = file.load()
    #expect(loaded[mapping: "m"].files.count == 2)
    #expect(loaded[mapping: "m"].files[ExactString(Self.precomposed)] == ContentHash(of: [1]))
    #expect(loaded[mapping: "m"].files[ExactString(Self.decomposed)] == ContentHash(of: [2]))
    #expect(loaded[mapping: "m"].local[ExactString(Self.decomposed)]?.revision == 7)
    #expect(loaded[mapping: "m"].local[ExactString(Self.precomposed)] == nil)
  }

  @Test("state file: version 1's object form is still read")
  func stateVersionOne() throws {
    let dir = TemporaryDirectory("etcsync-state")
    let hash = ContentHash(of: [9])
    let json = """
      {"version": 1, "mappings": {"m": {"appliedRevision": 5, "files": {"a/b": "\(hash)"}, "pendingReload": false,
      "local": {}, "intended": {}}}}
      """
    try Disk.write(dir("state.json"), json)
    let loaded = StateFile(path: dir("state.json"), fsync: false).load()
    #expect(loaded[mapping: "m"].appliedRevision == 5)
    #expect(loaded[mapping: "m"].files[ExactString("a/b")] == hash)
  }

  @Test("ExactString compares bytes, String does not")
  func exactString() {
    #expect(Self.precomposed == Self.decomposed, "Swift's String equality is canonical equivalence")
    #expect(ExactString(Self.precomposed) != ExactString(Self.decomposed))
    #expect(Set([ExactString(Self.precomposed), ExactString(Self.decomposed)]).count == 2)
    #expect(ExactString(Self.decomposed) < ExactString(Self.precomposed), "memcmp order: 0x65 < 0xC3")
  }
}
