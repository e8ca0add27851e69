import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Logging
import Synchronization
import Templates
import Testing

/// Generated hostile keys and values against every mapping kind, held to one oracle: what
/// `etcdctl get --prefix --rev=R` prints (JSON, base64: exact bytes), not what the agent
/// thinks it wrote. Every file equals its key's value byte for byte, every acceptable key has
/// its file, nothing else exists under the destination or beside it, no temp file is left, and
/// the agent keeps running through changes.
@Suite("Hostile: generated keys and values, checked against etcdctl")
struct GeneratedHostileTests {
  /// Replayable by seed.
  typealias Generator = SplitMix64

  /// Segment material: plain names, canonically equivalent and case twins, control bytes,
  /// dot segments, empty segments, invalid UTF-8, NUL, reserved names and over-long names.
  static let segments: [[UInt8]] = [
    Array("a".utf8), Array("A".utf8), Array("b".utf8), Array("conf".utf8), Array("x.y".utf8),
    Array("\u{E9}".utf8), Array("e\u{301}".utf8), Array("\u{212B}".utf8), Array("\u{C5}".utf8), Array("A\u{30A}".utf8),
    Array("sp ace".utf8), Array("new\nline".utf8), [0x1B] + Array("[2J".utf8), Array("tab\t".utf8),
    Array(".".utf8), Array("..".utf8), [], Array("..data".utf8), Array(".hidden".utf8),
    [0xFF, 0xFE], [0xC3], Array("nul".utf8) + [0] + Array("x".utf8),
    Array(repeating: UInt8(ascii: "L"), count: 256), Array("%2e%2e".utf8), Array("~".utf8),
  ]

  static func key(_ g: inout Generator, prefix: [UInt8]) -> [UInt8] {
    let depth = g.below(10) == 0 ? 66 : 1 + g.below(4)
    var key = prefix
    for index in 0..<depth {
      if index > 0 { key.append(UInt8(ascii: "/")) }
      key += g.below(3) == 0 ? g.pick(segments) : Array("s\(g.below(4))".utf8)
    }
    if g.below(15) == 0 { key.append(UInt8(ascii: "/")) }
    return key
  }

  static func value(_ g: inout Generator) -> [UInt8] {
    switch g.below(6) {
    case 0: return []
    case 1: return (0..<g.below(64)).map { _ in UInt8(truncatingIfNeeded: g.next()) }
    case 2: return Array(repeating: UInt8(ascii: "v"), count: 70_000 + g.below(1000))
    case 3: return Array("{{ .Secret }} $(rm -rf /) `id` \u{1b}[31m".utf8)
    default: return Array("value-\(g.next() % 1000)\n".utf8)
    }
  }

  /// Every key and value under `prefix` at `revision`, as etcdctl prints them.
  static func etcdctl(_ endpoint: String, prefix: [UInt8], revision: Int64) throws -> [[UInt8]: [UInt8]] {
    let binary = FileManager.default.isExecutableFile(atPath: "/usr/bin/etcdctl") ? "/usr/bin/etcdctl" : "etcdctl"
    let directory = TemporaryDirectory("etcsync-etcdctl")
    let output = directory("output")
    // The prefix goes through argv as text: the generated prefixes are ASCII.
    let process = try ChildProcess([binary, "--endpoints=\(endpoint)", "get", "--prefix", String(decoding: prefix, as: UTF8.self),
                                    "--rev=\(revision)", "-w", "json"],
                                   environment: ["ETCDCTL_API": "3", "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"],
                                   output: output)
    guard process.waitUntilExit(within: .seconds(120)) else {
      process.signal(SIGKILL)
      throw TestSupportError("etcdctl still ran after 120 s")
    }
    let data = Data((Disk.read(output) ?? "").utf8)
    guard process.terminationStatus == 0,
      let json = try JSONSerialization.jsonObject(with: data) as? [String: Any]
    else { throw TestSupportError("etcdctl failed: \(String(decoding: data, as: UTF8.self))") }
    var result: [[UInt8]: [UInt8]] = [:]
    for kv in json["kvs"] as? [[String: Any]] ?? [] {
      let key = Data(base64Encoded: kv["key"] as? String ?? "").map { [UInt8]($0) } ?? []
      let value = (kv["value"] as? String).flatMap { Data(base64Encoded: $0) }.map { [UInt8]($0) } ?? []
      result[key] = value
    }
    return result
  }

  /// Whether a relative path is one a tree can hold, by the documented rules, written here
  /// independently of the code under test.
  static func acceptable(_ relative: [UInt8]) -> Bool {
    guard !relative.isEmpty, relative.first != UInt8(ascii: "/"), !relative.contains(0),
      String(validating: relative, as: UTF8.self) != nil, relative.count <= 4096
    else { return false }
    let parts = relative.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
    guard parts.count <= 64 else { return false }
    for (index, part) in parts.enumerated() {
      if part.isEmpty || part.elementsEqual(".".utf8) || part.elementsEqual("..".utf8) || part.count > 255 { return false }
      if index == 0 && part.starts(with: "..".utf8) { return false }
    }
    return true
  }

  /// The files a tree must hold for `keys` (relative path bytes → value): acceptable keys
  /// without file/directory conflicts.
  static func expectedTree(_ keys: [[UInt8]: [UInt8]], prefix: [UInt8], previous: [[UInt8]: [UInt8]] = [:]) -> [[UInt8]: [UInt8]] {
    var files: [[UInt8]: [UInt8]] = [:]
    for (key, value) in keys {
      let relative = Array(key.dropFirst(prefix.count))
      if acceptable(relative) { files[relative] = value }
    }
    var directories = Set<[UInt8]>()
    for path in files.keys {
      for (index, byte) in path.enumerated() where byte == UInt8(ascii: "/") { directories.insert(Array(path[..<index])) }
    }
    let conflicts = Set(files.keys.filter { path in
      directories.contains(path)
        || path.enumerated().contains { $0.element == UInt8(ascii: "/") && files[Array(path[..<$0.offset])] != nil }
    })
    var expected = files.filter { !conflicts.contains($0.key) }
    // Documented: a file already written for a key that now conflicts (`a` beside `a/b`)
    // stays as it was, rather than being deleted.
    for path in conflicts { if let old = previous[path] { expected[path] = old } }
    return expected
  }

  /// Conflicting paths (`a` beside `a/b`) whose file may stand, held from an earlier apply
  /// the test did not observe: path → its key's value now (the held bytes may be that, or
  /// what the previous check saw).
  static func conflictValues(_ keys: [[UInt8]: [UInt8]], prefix: [UInt8]) -> [[UInt8]: [UInt8]] {
    var files: [[UInt8]: [UInt8]] = [:]
    for (key, value) in keys {
      let relative = Array(key.dropFirst(prefix.count))
      if acceptable(relative) { files[relative] = value }
    }
    let full = Self.expectedTree(keys, prefix: prefix)
    return files.filter { full[$0.key] == nil }
  }

  /// Every regular file under `root` (following the tree swap's top-level links into
  /// `..data`), as relative path bytes → content; and every other entry found.
  static func readTree(_ root: String) -> (files: [[UInt8]: [UInt8]], strays: [String]) {
    var files: [[UInt8]: [UInt8]] = [:]
    var strays: [String] = []
    func walk(_ directory: String, _ relative: [UInt8], top: Bool) {
      guard let handle = opendir(directory) else { return }
      defer { closedir(handle) }
      while let entry = readdir(handle) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
        if name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")] { continue }
        // The swap layout's own entries: `..data` and the hidden revision directories.
        if top && name.starts(with: "..".utf8) { continue }
        let path = directory + "/" + String(decoding: name, as: UTF8.self)
        if String(decoding: name, as: UTF8.self).contains(".etcsync-tmp-") { strays.append(path) }
        let rel = relative.isEmpty ? name : relative + [UInt8(ascii: "/")] + name
        var info = stat()
        guard stat(path, &info) == 0 else {
          strays.append(path)
          continue
        }
        if info.st_mode & S_IFMT == S_IFDIR {
          walk(path, rel, top: false)
        } else {
          files[rel] = Bytes.read(path) ?? []
        }
      }
    }
    walk(root, [], top: true)
    return (files, strays)
  }

  static func put(_ h: AgentHarness, _ g: inout Generator, prefix: [UInt8], count: Int) async throws -> Int64 {
    var revision: Int64 = 0
    for _ in 0..<count { revision = try await h.put(Self.key(&g, prefix: prefix), Self.value(&g)) }
    return revision
  }

  @Test("trees hold exactly etcd's keys, through syncs and daemon changes", arguments: [
    // Write-back needs an in-place tree (a swapped tree is a read-only view; configuration
    // refuses the pair).
    (Mapping.Swap.symlink, false, UInt64(1)), (.inPlace, false, 2), (.inPlace, true, 3), (.inPlace, true, 4),
  ])
  func trees(swap: Mapping.Swap, writeBack: Bool, seed: UInt64) async throws {
    let h = try await AgentHarness.start(etcdArguments: ["--max-request-bytes=4194304"])
    defer { h.stop() }
    var g = Generator(seed: seed)
    let prefix = Array("/h/".utf8)
    let sandbox = h.dir("sandbox")
    try FileManager.default.createDirectory(atPath: sandbox, withIntermediateDirectories: true)
    let dest = sandbox + "/tree"
    var mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/h/"], dest: dest, swap: swap)
    if writeBack {
      mapping.writeBack = true
      mapping.deletes = true
    }
    _ = try await Self.put(h, &g, prefix: prefix, count: 60)
    let result = try await h.agent(h.configuration([mapping])).sync()[0]
    #expect(result.error == nil, "\(result.error ?? "")")
    var onDisk = try Self.verify(h, dest: dest, sandbox: sandbox, prefix: prefix, revision: result.revision, previous: [:], context: "\(result.error ?? "")")

    // The daemon through generated puts and deletes.
    let agent = try h.agent(h.configuration([mapping]))
    let daemon = Daemon(agent)
    #expect(await eventually { await agent.appliedRevision >= result.revision })
    var last: Int64 = 0
    for round in 0..<4 {
      last = try await Self.put(h, &g, prefix: prefix, count: 15)
      let keys = try await h.client.get(KeyRange.prefix(prefix)).kvs.map(\.key)
      for key in keys where g.below(4) == 0 { last = try await h.client.delete(KeyRange(key: key)).header.revision }
      let target = last
      #expect(await eventually { await agent.appliedRevision >= target }, "round \(round)")
      // A write-back mapping must not push anything of its own: etcd stays where the test left it.
      let settled = try await h.client.status().revision
      onDisk = try Self.verify(h, dest: dest, sandbox: sandbox, prefix: prefix, revision: settled, previous: onDisk,
                               context: "round \(round): \(await agent.progress.errors) \(h.logs.details.withLock { $0.suffix(12).map { "\($0.message) \($0.metadata)" } })")
      if writeBack { #expect(settled == target, "write-back pushed changes nobody made") }
    }
    #expect(!daemon.hasEnded, "the agent stopped")
    let ended = await daemon.stop()
    #expect(ended == nil, "\(String(describing: ended))")
  }

  /// Checks the tree against etcdctl at `revision`; returns what is on disk now.
  @discardableResult
  static func verify(_ h: AgentHarness, dest: String, sandbox: String, prefix: [UInt8], revision: Int64,
                     previous: [[UInt8]: [UInt8]], context: String) throws -> [[UInt8]: [UInt8]] {
    let keys = try Self.etcdctl(h.server.endpoint, prefix: prefix, revision: revision)
    let expected = Self.expectedTree(keys, prefix: prefix, previous: previous)
    let (files, strays) = Self.readTree(dest)
    #expect(strays.isEmpty, "stray entries: \(strays)")
    let missing = expected.keys.filter { files[$0] == nil }.map { escapeBytes($0) }
    let held = Self.conflictValues(keys, prefix: prefix)
    let extra = files.keys.filter { path in
      expected[path] == nil && !(held[path] != nil && (files[path] == held[path] || files[path] == previous[path]))
    }.map { escapeBytes($0) }
    let wrong = expected.keys.filter { files[$0] != nil && files[$0] != expected[$0] }.map { escapeBytes($0) }
    #expect(missing.isEmpty, "revision \(revision): missing \(missing.map { $0.prefix(120) }) \(context.prefix(2000))")
    #expect(extra.isEmpty, "revision \(revision): extra \(extra.map { $0.prefix(120) }) \(context.prefix(2000))")
    #expect(wrong.isEmpty, "revision \(revision): wrong content \(wrong.map { $0.prefix(120) }) \(context.prefix(2000))")
    // Nothing beside the destination (a `../` key, a symlink escape).
    let beside = ((try? FileManager.default.contentsOfDirectory(atPath: sandbox)) ?? []).filter { $0 != "tree" }
    #expect(beside.isEmpty, "entries beside the destination: \(beside)")
    return files
  }

  @Test("format and template mappings over generated keys match etcdctl", arguments: [UInt64(11), 12])
  func documents(seed: UInt64) async throws {
    let h = try await AgentHarness.start(etcdArguments: ["--max-request-bytes=4194304"])
    defer { h.stop() }
    var g = Generator(seed: seed)
    let prefix = Array("/d/".utf8)
    let revision = try await Self.put(h, &g, prefix: prefix, count: 50)
    let template = h.dir("t.tmpl")
    // One line per key: base64 of its key and value, so the output is checkable byte for byte.
    try Disk.write(template, "{{range gets \"/d/*\"}}{{base64Encode .Key}} {{base64Encode .Value}}\n{{end}}")
    let mappings = [
      Mapping(name: "tpl", kind: .template, prefixes: ["/d/"], template: template, dest: h.dir("out/tpl")),
      Mapping(name: "json", kind: .format, prefixes: ["/d/"], dest: h.dir("out/doc.json"), format: .json),
    ]
    let results = try await h.agent(h.configuration(mappings)).sync()
    let keys = try Self.etcdctl(h.server.endpoint, prefix: prefix, revision: revision)
    // The template: every key that is text, with its exact value, in etcd's key order.
    // `gets "/d/*"` is confd's glob: `*` does not match `/`.
    let textKeys = keys.keys.filter { String(validating: $0, as: UTF8.self) != nil && !$0.dropFirst(prefix.count).contains(UInt8(ascii: "/")) }
      .sorted { $0.lexicographicallyPrecedes($1) }
    let expected = textKeys.map { Data($0).base64EncodedString() + " " + Data(keys[$0]!).base64EncodedString() + "\n" }.joined()
    #expect(results[mapping: "tpl"]?.error == nil)
    let output = String(decoding: Bytes.read(h.dir("out/tpl")) ?? [], as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
    let wanted = expected.split(separator: "\n", omittingEmptySubsequences: false)
    let firstDifference = zip(output, wanted).first { $0.0 != $0.1 }
    #expect(output == wanted, "the template's output differs from etcd's keys: \(output.count) lines, \(wanted.count) expected; first difference \(String(describing: firstDifference).prefix(300))")
    let rejected = Set(results[mapping: "tpl"]?.rejected.map(\.key) ?? [])
    #expect(rejected == Set(keys.keys.filter { String(validating: $0, as: UTF8.self) == nil }), "non-UTF-8 keys are reported")
    // The JSON document: written only when every value is text; then it holds every entry.
    if let error = results[mapping: "json"]?.error {
      #expect(!Disk.exists(h.dir("out/doc.json")), "a failed document must not be written: \(error)")
    }
    #expect(Disk.temporaryFiles(h.dir("out")).isEmpty)
  }
}
