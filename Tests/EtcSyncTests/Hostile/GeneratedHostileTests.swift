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

  // MARK: Documents of text

  /// Segment material for documents: valid UTF-8, hostile to each format's syntax (quotes,
  /// backslashes, line breaks, `=`, `#`, `:`, `!`, leading and trailing spaces, YAML's and
  /// shells' special words and marks, control characters, non-ASCII). U+FEFF only inside a
  /// name: Foundation's JSON reader and Yams drop it at the start of any string they read
  /// (a reader's limit, not the document's: etcsync writes it, escaped as `\uFEFF` in YAML,
  /// and JSON allows it anywhere). No two items are
  /// canonically equivalent and none starts with a combining mark: Foundation's JSON reader
  /// and Yams key maps by `String`, which would merge twins (`CanonicalTwinTests` covers
  /// those). No `ß`, `ı`, `ſ` or ligatures, whose upper case is ASCII or longer: the env name
  /// below is computed per scalar.
  static let textSegments: [String] = [
    "a", "B", "conf", "x.y", "a.b.c", "sp ace", " lead", "trail ", "q\"uote", "'single'", "back\\slash", "new\nline",
    "cr\rx", "tab\t", "eq=als", "=", "ha#sh", "#", "co:lon", ":", "bang!", "!x", "\u{E9}t\u{E9}", "\u{C5}", "\u{65E5}\u{672C}",
    "emoji \u{1F389}", "$HOME", "`id`", "[br]", "{cu}", "-dash", "true", "null", "~", "123", "0x1F", "<<", "...", "a..b",
    "\u{1B}[2J", "del\u{7F}", "line\u{2028}sep", "bo\u{FEFF}m", "nel\u{85}", "y", "-", "? q", "&anchor", "*alias", "%tag",
    "@at", "|pipe", ">gt", "key: value", "- item", String(repeating: "L", count: 200),
  ]

  /// Value material (joined 1–4 at a time): the same hostility, plus empty values, values that
  /// are only spaces or line breaks, escapes spelled out, and long values; U+FEFF not first
  /// (see above). No NUL: env refuses
  /// it by design (no environment can hold one; its error names the key) and YAML's emitter
  /// cannot carry it, so a value with NUL is no text document's content.
  static let textValuePieces: [String] = [
    "", "plain", " ", "  lead", "trail  ", "\"", "'", "\\", "\\n", "\\u0041", "\n", "\n\n", "\r\n", "\r", "\t", "=", "==x",
    "#c", " #c", "!bang", ":", ": ", "key: value", "- item", "${X}", "$(id)", "`id`", "$", "\u{E9}", "\u{1F389}", "\u{1B}[31m",
    "\u{7F}", "\u{85}", "\u{2028}", "x\u{FEFF}", "true", "null", "~", "0123", "1e3", "<<", "yes", "y", "2001-12-14", "[a, b]",
    "{a: b}", "&a", "*a", "|", ">", "%", "@", "...", "---", "\\\n", "x\\", "a=b:c#d!e", "\u{C}", "\u{8}",
  ]

  static func textKey(_ g: inout Generator, index: Int) -> String {
    let depth = g.below(12) == 0 ? 20 + g.below(30) : 1 + g.below(4)
    var segments = (0..<depth).map { _ in g.below(2) == 0 ? g.pick(Self.textSegments) : "s\(g.below(3))" }
    // Most keys carry their own mark so that their env and property names differ; the rest
    // may meet another key (`s1` beside `s1/s2`: a conflict, both reported and left out).
    if g.below(5) != 0 { segments[depth - 1] += "k\(index)" }
    return segments.joined(separator: "/")
  }

  static func textValue(_ g: inout Generator, long: Bool) -> String {
    if long { return String(repeating: "a\"b\\c\nd=e#f:g \u{E9}\u{1F389}\t", count: 3_000 + g.below(500)) }
    return (0..<(1 + g.below(4))).map { _ in g.pick(Self.textValuePieces) }.joined()
  }

  /// The env variable of a relative key, by the documented rule (`db/host` → `DB_HOST`):
  /// ASCII letters upper-cased, digits kept, every other scalar `_`, `_` trimmed at both
  /// ends; nil where no variable can be made (empty, or starting with a digit).
  static func envName(_ relative: [UInt8]) -> [UInt8]? {
    var name: [UInt8] = String(decoding: relative, as: UTF8.self).unicodeScalars.map { scalar -> UInt8 in
      switch scalar {
      case "a"..."z": UInt8(scalar.value) - 32
      case "A"..."Z", "0"..."9": UInt8(scalar.value)
      default: UInt8(ascii: "_")
      }
    }
    while name.first == UInt8(ascii: "_") { name.removeFirst() }
    while name.last == UInt8(ascii: "_") { name.removeLast() }
    guard let first = name.first, !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else { return nil }
    return name
  }

  /// The property name of a relative key: `/` becomes `.` (`db/host` → `db.host`).
  static func propertyName(_ relative: [UInt8]) -> [UInt8] {
    relative.map { $0 == UInt8(ascii: "/") ? UInt8(ascii: ".") : $0 }
  }

  /// Adds `count` generated text keys to `keys` (full key → value). A key whose env variable
  /// or property name another acceptable key already makes is generated around: two keys that
  /// make one name are refused whole by design (`FormatRendererTests`). The check runs over
  /// every acceptable key, conflicts included, so deleting keys later never makes a clash.
  static func addTextKeys(_ g: inout Generator, to keys: inout [[UInt8]: [UInt8]], count: Int, prefix: [UInt8], index: inout Int) -> [([UInt8], [UInt8])] {
    var added: [([UInt8], [UInt8])] = []
    while added.count < count {
      index += 1
      let key = prefix + Array(Self.textKey(&g, index: index).utf8)
      let value = Array(Self.textValue(&g, long: index % 20 == 0).utf8)
      let relative = Array(key.dropFirst(prefix.count))
      if Self.acceptable(relative) {
        guard let env = Self.envName(relative) else { continue }
        let clash = keys.keys.contains { other in
          let otherRelative = Array(other.dropFirst(prefix.count))
          guard other != key, Self.acceptable(otherRelative) else { return false }
          return Self.envName(otherRelative) == env || Self.propertyName(otherRelative) == Self.propertyName(relative)
        }
        if clash { continue }
      }
      keys[key] = value
      added.append((key, value))
    }
    return added
  }

  static let documentFormats: [(Mapping.Format, String)] = [(.json, "doc.json"), (.yaml, "doc.yaml"), (.toml, "doc.toml"), (.env, "doc.env"), (.properties, "doc.properties")]

  /// Reads each document back with its format's reader and compares it to etcdctl at
  /// `revision`: the entries a tree would hold (acceptable keys without file/directory
  /// conflicts), named as the format names them. Also: only the documents in `sandbox`, no temp file.
  static func verifyDocuments(_ h: AgentHarness, sandbox: String, prefix: [UInt8], revision: Int64, context: String) throws {
    let keys = try Self.etcdctl(h.server.endpoint, prefix: prefix, revision: revision)
    let entries = Self.expectedTree(keys, prefix: prefix)
    for (format, file) in Self.documentFormats {
      var expected: [[UInt8]: [UInt8]] = [:]
      for (relative, value) in entries {
        switch format {
        case .json, .yaml, .toml: expected[relative] = value
        case .env: expected[Self.envName(relative) ?? []] = value
        case .properties: expected[Self.propertyName(relative)] = value
        }
      }
      guard let bytes = Bytes.read(sandbox + "/" + file) else {
        Issue.record("\(file) missing at revision \(revision): \(context.prefix(2000))")
        continue
      }
      let read: [[UInt8]: [UInt8]]
      do {
        switch format {
        case .json: read = try DocumentReaders.json(bytes)
        case .yaml: read = try DocumentReaders.yaml(bytes)
        case .toml: read = try DocumentReaders.toml(bytes)
        case .env: read = try DocumentReaders.env(bytes)
        case .properties: read = try DocumentReaders.properties(bytes)
        }
      } catch {
        Issue.record("\(file) at revision \(revision) does not read as \(format.rawValue): \(error)")
        continue
      }
      let missing = expected.keys.filter { read[$0] == nil }.map { escapeBytes($0).prefix(120) }
      let extra = read.keys.filter { expected[$0] == nil }.map { escapeBytes($0).prefix(120) }
      let wrong = expected.keys.filter { read[$0] != nil && read[$0] != expected[$0] }
        .map { "\(escapeBytes($0).prefix(80)): \(escapeBytes(read[$0]!).prefix(80)) for \(escapeBytes(expected[$0]!).prefix(80))" }
      #expect(missing.isEmpty, "\(file) at revision \(revision): missing \(missing.prefix(10)) \(context.prefix(2000))")
      #expect(extra.isEmpty, "\(file) at revision \(revision): extra \(extra.prefix(10))")
      #expect(wrong.isEmpty, "\(file) at revision \(revision): wrong value \(wrong.prefix(10))")
    }
    let names = Set(((try? FileManager.default.contentsOfDirectory(atPath: sandbox)) ?? []))
    #expect(names == Set(Self.documentFormats.map(\.1)), "entries in the documents' directory: \(names.sorted())")
    #expect(Disk.temporaryFiles(sandbox).isEmpty)
  }

  @Test("format documents of generated text read back as etcdctl's keys, through a sync and daemon changes", arguments: [UInt64(21), 22])
  func textDocuments(seed: UInt64) async throws {
    let h = try await AgentHarness.start(etcdArguments: ["--max-request-bytes=4194304"])
    defer { h.stop() }
    var g = Generator(seed: seed)
    let prefix = Array("/t/".utf8)
    let sandbox = h.dir("documents")
    try FileManager.default.createDirectory(atPath: sandbox, withIntermediateDirectories: true)
    let mappings = Self.documentFormats.map { format, file in
      Mapping(name: format.rawValue, kind: .format, prefixes: ["/t/"], dest: sandbox + "/" + file, format: format)
    }
    var keys: [[UInt8]: [UInt8]] = [:]
    var index = 0
    var revision: Int64 = 0
    for (key, value) in Self.addTextKeys(&g, to: &keys, count: 80, prefix: prefix, index: &index) { revision = try await h.put(key, value) }
    let results = try await h.agent(h.configuration(mappings)).sync()
    for (format, _) in Self.documentFormats {
      let result = results[mapping: format.rawValue]
      #expect(result?.error == nil, "\(format.rawValue): \(result?.error ?? "")")
      #expect(result?.revision == revision)
      // Rejected and reported: exactly the keys a tree could not hold either.
      let all = try Self.etcdctl(h.server.endpoint, prefix: prefix, revision: revision)
      let held = Set(Self.expectedTree(all, prefix: prefix).keys.map { prefix + $0 })
      #expect(Set(result?.rejected.map(\.key) ?? []) == Set(all.keys.filter { !held.contains($0) }), "\(format.rawValue): rejected keys")
    }
    // The set is what it claims: many entries, and the hostile material in them.
    let entries = Self.expectedTree(try Self.etcdctl(h.server.endpoint, prefix: prefix, revision: revision), prefix: prefix)
    #expect(entries.count >= 40, "only \(entries.count) entries")
    for needle in "\"\\\n=#: ".utf8 {
      #expect(entries.values.contains { $0.contains(needle) }, "no value holds \(escapeBytes([needle]))")
      #expect(entries.keys.contains { $0.contains(needle) }, "no key holds \(escapeBytes([needle]))")
    }
    #expect(entries.keys.contains { $0.contains { $0 >= 0x80 } } && entries.values.contains { $0.contains { $0 >= 0x80 } })
    #expect(entries.keys.contains { $0.filter { $0 == UInt8(ascii: "/") }.count >= 20 }, "no deep key")
    #expect(entries.values.contains { $0.count > 60_000 }, "no long value")
    try Self.verifyDocuments(h, sandbox: sandbox, prefix: prefix, revision: revision, context: "sync")

    // The daemon through generated puts and deletes.
    let agent = try h.agent(h.configuration(mappings))
    let daemon = Daemon(agent)
    // The published revision, which every mapping's files hold (`appliedRevision` is the key
    // space's: the last mappings' documents may still be being written).
    #expect(await eventually { await agent.progress.appliedRevision >= revision })
    for round in 0..<3 {
      var last: Int64 = 0
      for (key, value) in Self.addTextKeys(&g, to: &keys, count: 12, prefix: prefix, index: &index) { last = try await h.put(key, value) }
      for key in keys.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) where g.below(5) == 0 {
        keys[key] = nil
        last = try await h.client.delete(KeyRange(key: key)).header.revision
      }
      let target = last
      #expect(await eventually { await agent.progress.appliedRevision >= target }, "round \(round)")
      try Self.verifyDocuments(h, sandbox: sandbox, prefix: prefix, revision: target,
                               context: "round \(round): \(await agent.progress.errors)")
    }
    #expect(!daemon.hasEnded, "the agent stopped")
    let ended = await daemon.stop()
    #expect(ended == nil, "\(String(describing: ended))")
  }
}
