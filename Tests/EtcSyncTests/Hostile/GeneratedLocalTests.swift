import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Synchronization
import Testing

extension GeneratedHostileTests {
  /// The `file` kind and write-back destinations under generated hostile input, held to the
  /// same oracle as the rest of ``GeneratedHostileTests`` (nested in it so that it runs in the
  /// same test group): what `etcdctl get --prefix --rev=R -w json` prints.
  ///
  /// - A `file` mapping's file holds exactly its key's value (random bytes, empty, NUL, not
  ///   UTF-8, up to the size limit), never the value of a key canonically equal to it or
  ///   sharing its bytes as a prefix, through one-pass syncs and daemon changes, with
  ///   write-back off and on.
  /// - A "local user" fills write-back destinations (a tree and a file) with odd names, editor
  ///   leftovers, hard links, symlinks, FIFOs, oversized and foreign files and ordinary edits.
  ///   The pushes etcd must hold are computed here from the rules in docs/write-back.md, not
  ///   asked of the agent; every pushed key changed exactly once (its version), every other
  ///   key kept its mod revision, every file the agent did not push is still on disk as the
  ///   user left it, nothing else appeared, and the agent keeps running.
  @Suite("Hostile: generated file mappings and local write-back files, checked against etcdctl")
  struct GeneratedLocalTests {
    typealias Generator = SplitMix64

    // MARK: The oracle

    /// One key as etcdctl prints it.
    struct Record: Equatable {
      var value: [UInt8]
      var modRevision: Int64
      var version: Int64
    }

    /// Every key under `prefix` (a byte prefix, as etcdctl takes it) at `revision` (0: the
    /// current one), with the revision read.
    static func etcdctl(_ endpoint: String, prefix: String, revision: Int64 = 0) throws -> (revision: Int64, records: [[UInt8]: Record]) {
      let binary = FileManager.default.isExecutableFile(atPath: "/usr/bin/etcdctl") ? "/usr/bin/etcdctl" : "etcdctl"
      let directory = TemporaryDirectory("etcsync-etcdctl")
      let output = directory("output")
      var argv = [binary, "--endpoints=\(endpoint)", "get", "--prefix", prefix, "-w", "json"]
      if revision > 0 { argv.append("--rev=\(revision)") }
      let process = try ChildProcess(argv, environment: ["ETCDCTL_API": "3", "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"],
                                     output: output)
      guard process.waitUntilExit(within: .seconds(120)) else {
        process.signal(SIGKILL)
        throw TestSupportError("etcdctl still ran after 120 s")
      }
      let data = FileManager.default.contents(atPath: output) ?? Data()
      guard process.terminationStatus == 0, let json = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw TestSupportError("etcdctl failed: \(String(decoding: data, as: UTF8.self).prefix(2000))")
      }
      let header = json["header"] as? [String: Any]
      let read = (header?["revision"] as? NSNumber)?.int64Value ?? 0
      var records: [[UInt8]: Record] = [:]
      for kv in json["kvs"] as? [[String: Any]] ?? [] {
        let key = Data(base64Encoded: kv["key"] as? String ?? "").map { [UInt8]($0) } ?? []
        let value = (kv["value"] as? String).flatMap { Data(base64Encoded: $0) }.map { [UInt8]($0) } ?? []
        records[key] = Record(value: value, modRevision: (kv["mod_revision"] as? NSNumber)?.int64Value ?? 0,
                              version: (kv["version"] as? NSNumber)?.int64Value ?? 0)
      }
      return (revision > 0 ? revision : read, records)
    }

    // MARK: Generated values

    /// etcd's default request limit less the framing the agent keeps for itself: the most a
    /// key plus its value may be for write-back to push it (docs/write-back.md, "Limits").
    static let pushLimit = 1_572_864 - 512

    static func counterBytes(_ counter: Int) -> [UInt8] { Array("#\(counter)".utf8) }

    /// A hostile value: empty, NUL, random bytes, not UTF-8, NUL inside text, long, or up to
    /// `limit` bytes. Values of more than one byte end with `counter`, so that two generated
    /// values are never equal by chance.
    static func hostileValue(_ g: inout Generator, limit: Int, counter: Int) -> [UInt8] {
      switch g.below(9) {
      case 0: return []
      case 1: return [0]
      case 2: return (0..<(1 + g.below(200))).map { _ in UInt8(truncatingIfNeeded: g.next()) } + counterBytes(counter)
      case 3: return [0xFF, 0xFE, 0xC3] + Array("\u{1B}[2J not text".utf8) + [0xC0, 0xAF] + counterBytes(counter)
      case 4: return Array("nul".utf8) + [0] + Array("inside\r\n".utf8) + counterBytes(counter)
      case 5: return filler(count: 70_000 + g.below(1000), seed: g.next()) + counterBytes(counter)
      case 6: return filler(count: limit - counterBytes(counter).count - g.below(2), seed: g.next()) + counterBytes(counter)
      default: return Array("value \(g.next() % 10_000)\n".utf8) + counterBytes(counter)
      }
    }

    /// 2 MiB of every byte value, made once.
    static let noise: [UInt8] = {
      var bytes = [UInt8](repeating: 0, count: 2 << 20)
      var state: UInt32 = 0x9E37_79B9
      bytes.withUnsafeMutableBufferPointer { buffer in
        for index in buffer.indices {
          state ^= state << 13
          state ^= state >> 17
          state ^= state << 5
          buffer[index] = UInt8(truncatingIfNeeded: state)
        }
      }
      return bytes
    }()

    /// `count` bytes (at most 2 MiB less 4 KiB) of every value, taken from ``noise`` at an
    /// offset `seed` picks: cheap to make, so that a local user's burst of changes has no
    /// pause in which the agent scans half of it.
    static func filler(count: Int, seed: UInt64) -> [UInt8] {
      let offset = Int(seed % 4096)
      return Array(noise[offset..<(offset + max(0, min(count, noise.count - 4096)))])
    }

    /// Families of canonically equivalent spellings (Swift's `String` takes each family's
    /// members for one string; etcd and Linux take them for different keys and names).
    static let twinFamilies: [[String]] = [
      ["\u{E9}", "e\u{301}"],
      ["\u{C5}", "A\u{30A}", "\u{212B}"],
      ["\u{1E69}", "s\u{323}\u{307}", "\u{1E61}\u{323}"],
    ]

    // MARK: A file mapping

    /// Keys that must never reach a file mapping's file: its canonical twins, keys that start
    /// with its bytes (`K/x`, `Kx`, `K\0`, `K` + invalid UTF-8), and its case twin.
    static func neighbours(of mapped: [UInt8], stem: [UInt8], twins: [String]) -> [[UInt8]] {
      var keys = twins.map { stem + Array($0.utf8) }
      keys += [mapped + Array("/x".utf8), mapped + Array("x".utf8), mapped + [0], mapped + [0xFF], mapped + Array("\n".utf8)]
      keys.append(stem.map { (0x61...0x7A).contains($0) ? $0 - 32 : $0 } + Array(mapped.dropFirst(stem.count)))
      return keys
    }

    @Test("a file mapping holds exactly its key's value, never a twin's, through syncs and daemon changes", arguments: [
      (UInt64(31), false), (32, false), (33, true), (34, true),
    ])
    func fileMapping(seed: UInt64, writeBack: Bool) async throws {
      let h = try await AgentHarness.start(etcdArguments: ["--max-request-bytes=4194304"])
      defer { h.stop() }
      var g = Generator(seed: seed)
      var counter = 0
      func value(_ g: inout Generator, limit: Int) -> [UInt8] {
        counter += 1
        return Self.hostileValue(&g, limit: limit, counter: counter)
      }
      let family = g.pick(Self.twinFamilies)
      let form = g.pick(family)
      let stem = Array("/f/cfg-".utf8)
      let keyText = "/f/cfg-" + form
      let mapped = Array(keyText.utf8)
      let twins = Self.neighbours(of: mapped, stem: stem, twins: family.filter { Array($0.utf8) != Array(form.utf8) })
      let limit = Self.pushLimit - mapped.count
      let sandbox = h.dir("sandbox")
      try FileManager.default.createDirectory(atPath: sandbox, withIntermediateDirectories: true)
      let destName = "conf"
      let dest = sandbox + "/" + destName
      let mapping = Mapping(name: "file", kind: .file, key: keyText, dest: dest, writeBack: writeBack)
      let sentinel = Mapping(name: "sentinel", kind: .file, key: "/s/sentinel", dest: sandbox + "/sentinel")
      // Every value the mapped key ever held: any version of the file must be one of them.
      var held: Set<[UInt8]> = []

      // One pass with the key missing: an error, no file, nothing written.
      for key in twins { try await h.put(key, value(&g, limit: 1000)) }
      let missing = try await h.agent(h.configuration([mapping])).sync()[mapping: "file"]
      #expect(missing?.error != nil, "a missing key is an error")
      #expect(Disk.names(sandbox).isEmpty, "nothing written for a missing key: \(Disk.names(sandbox))")

      // One pass with the key and its neighbours: exactly the key's value.
      var first = value(&g, limit: limit)
      if first.count < 1000 { first = Self.filler(count: limit, seed: g.next()) }  // the limit once, always
      try await h.put(mapped, first)
      held.insert(first)
      for key in twins where g.below(2) == 0 { try await h.put(key, value(&g, limit: 100_000)) }
      let synced = try await h.agent(h.configuration([mapping])).sync()[mapping: "file"]
      #expect(synced?.error == nil, "\(synced?.error ?? "")")
      try Self.verifyFile(h, dest: dest, mapped: mapped, revision: synced?.revision ?? 0, context: "first sync")
      #expect(Disk.names(sandbox) == [destName])

      // Neighbours change, the key does not: the file is not even rewritten.
      let before = Bytes.identity(dest)
      for key in twins {
        if g.below(3) == 0 { _ = try await h.client.delete(KeyRange(key: key)) } else { try await h.put(key, value(&g, limit: 100_000)) }
      }
      let unchanged = try await h.agent(h.configuration([mapping])).sync()[mapping: "file"]
      #expect(unchanged?.error == nil && unchanged?.written.isEmpty == true, "\(String(describing: unchanged))")
      try Self.verifyFile(h, dest: dest, mapped: mapped, revision: unchanged?.revision ?? 0, context: "neighbours changed")
      #expect(Bytes.identity(dest) == before, "the file was rewritten for a neighbour's change")

      // Write-back: a local edit of hostile bytes reaches exactly the mapped key, once.
      if writeBack {
        let edit = value(&g, limit: limit)
        try ByteFS.write(sandbox, [Array(destName.utf8)], edit, atomic: g.below(2) == 0)
        let old = try Self.etcdctl(h.server.endpoint, prefix: "/f/")
        let pushed = try await h.agent(h.configuration([mapping])).sync()[mapping: "file"]
        #expect(pushed?.error == nil, "\(pushed?.error ?? "")")
        held.insert(edit)
        let new = try Self.etcdctl(h.server.endpoint, prefix: "/f/")
        Self.expectPushes(before: old.records, after: new.records, puts: [mapped: edit], deletes: [], context: "a local edit, one pass")
        let written = Bytes.read(dest) == edit  // compared outside #expect: it would print the bytes
        #expect(written, "the pushed edit is not the file any more")
      }

      // The daemon, with a sentinel mapping whose applied revision shows that every mapping
      // has caught up. Every version of the file is recorded as it is renamed into place.
      let writes = Mutex<[[UInt8]]>([])
      let destination = dest
      let agent = try h.agent(h.configuration([mapping, sentinel])) { step, path in
        if step == .afterRename, path == destination { writes.withLock { $0.append(Bytes.read(path) ?? []) } }
        return .proceed
      }
      var sentinelValue = 0
      let daemon = Daemon(agent)
      sentinelValue += 1
      _ = try await Self.barrier(h, agent, sentinelValue, "start")
      for round in 0..<3 {
        for _ in 0..<6 {
          switch g.below(4) {
          case 0:
            let next = value(&g, limit: limit)
            held.insert(next)
            try await h.put(mapped, next)
          case 1: _ = try await h.client.delete(KeyRange(key: g.pick(twins)))
          default: try await h.put(g.pick(twins), value(&g, limit: 100_000))
          }
        }
        sentinelValue += 1
        let applied = try await Self.barrier(h, agent, sentinelValue, "round \(round)")
        try Self.verifyFile(h, dest: dest, mapped: mapped, revision: applied, context: "round \(round)")
        if writeBack {
          // The file is etcd's now (an edit based on an older revision would be a conflict).
          // A local edit (up to the limit), then one a byte over it: refused, the file kept;
          // then an ordinary edit, pushed, so that etcd's changes reach the file again.
          let edit = round == 0 ? Self.filler(count: limit, seed: g.next()) : value(&g, limit: limit)
          try ByteFS.write(sandbox, [Array(destName.utf8)], edit, atomic: true)
          held.insert(edit)
          try await Self.awaitPush(h, mapped, edit, mapping: "file", "round \(round): a local edit of \(edit.count) bytes")
          if round == 1 {
            let refusals = Self.refusals(h, mapping: "file")
            let over = Self.filler(count: limit + 1, seed: g.next())
            let mark = Self.logCount(h)
            try ByteFS.write(sandbox, [Array(destName.utf8)], over, atomic: true)
            #expect(await eventually { Self.refusals(h, mapping: "file") > refusals && Self.rendered(h, "file", after: mark) }, "a file over the limit was not refused")
            let unpushed = try await h.client.get(KeyRange(key: mapped)).kvs.first?.value == edit
            #expect(unpushed, "a file over the limit reached etcd")
            let kept = Bytes.read(dest) == over
            #expect(kept, "the refused file was not kept")
            let fix = value(&g, limit: limit)
            try ByteFS.write(sandbox, [Array(destName.utf8)], fix, atomic: true)
            held.insert(fix)
            try await Self.awaitPush(h, mapped, fix, mapping: "file", "the edit after a refusal")
          }
        }
        sentinelValue += 1
        let revision = try await Self.barrier(h, agent, sentinelValue, "round \(round), after local edits")
        try Self.verifyFile(h, dest: dest, mapped: mapped, revision: revision, context: "round \(round), after local edits")
        if writeBack { #expect(try await h.client.status().revision == revision, "round \(round): write-back pushed what nobody edited") }
        if round == 1 {
          // The key deleted: the file stays as it is while its neighbours change.
          let kept = Bytes.read(dest)
          _ = try await h.client.delete(KeyRange(key: mapped))
          #expect(await eventually { await agent.progress.errors["file"] != nil }, "a deleted key is an error")
          for key in twins where g.below(2) == 0 { try await h.put(key, value(&g, limit: 100_000)) }
          let target = try await h.put("/s/sentinel", "while missing")
          #expect(await eventually { await agent.appliedRevision >= target && Bytes.read(sandbox + "/sentinel") == Array("while missing".utf8) })
          let same = Bytes.read(dest) == kept
          #expect(same, "the file changed while its key was missing")
          let back = value(&g, limit: limit)
          held.insert(back)
          try await h.put(mapped, back)
          sentinelValue += 1
          let revision = try await Self.barrier(h, agent, sentinelValue, "key back")
          try Self.verifyFile(h, dest: dest, mapped: mapped, revision: revision, context: "key back")
        }
      }
      let versions = writes.withLock { $0 }
      #expect(!versions.isEmpty, "the daemon never wrote the file")
      let foreign = versions.filter { !held.contains($0) }
      #expect(foreign.isEmpty, "the file held \(foreign.count) value(s) its key never had: \(foreign.map { escapeBytes($0.prefix(60)) })")
      #expect(Set(Disk.names(sandbox)) == [destName, "sentinel"], "\(Disk.names(sandbox))")
      #expect(Disk.temporaryFiles(sandbox).isEmpty)
      #expect(!daemon.hasEnded, "the agent stopped")
      let ended = await daemon.stop()
      #expect(ended == nil, "\(String(describing: ended))")
    }

    /// Waits until etcd holds `value` under `key` (a local edit pushed) and the render that
    /// follows the push has ended.
    static func awaitPush(_ h: AgentHarness, _ key: [UInt8], _ value: [UInt8], mapping: String, _ context: String) async throws {
      let pushed = await eventually { (try? await h.client.get(KeyRange(key: key)).kvs.first?.value) == value }
      #expect(pushed, "\(context) was not pushed: \(Self.logTail(h))")
      let revision = try await h.client.get(KeyRange(key: key)).kvs.first?.modRevision ?? 0
      let rendered = await eventually { Self.rendered(h, mapping, revision: revision) }
      #expect(rendered, "\(context): no render of \(mapping) at revision \(revision) after the push")
    }

    /// Puts the sentinel key and waits until the agent has published its revision: every
    /// mapping's files hold etcd's content through it (nothing dirty, written or failing).
    static func barrier(_ h: AgentHarness, _ agent: Agent, _ value: Int, _ context: String) async throws -> Int64 {
      let revision = try await h.put("/s/sentinel", "\(value)")
      let reached = await eventually { await agent.progress.appliedRevision >= revision }
      let errors = await agent.progress.errors
      #expect(reached, "\(context): revision \(revision) not published: \(errors)")
      return revision
    }

    /// The file holds exactly what etcdctl prints for the mapped key at `revision`.
    static func verifyFile(_ h: AgentHarness, dest: String, mapped: [UInt8], revision: Int64, context: String) throws {
      let keys = try Self.etcdctl(h.server.endpoint, prefix: "/f/", revision: revision).records
      guard let expected = keys[mapped]?.value else {
        Issue.record("\(context): the mapped key is missing at revision \(revision)")
        return
      }
      let actual = Bytes.read(dest)
      let same = actual == expected  // compared outside #expect: it would print every byte
      #expect(same, "\(context): the file holds \(actual.map { "\($0.count) bytes \(escapeBytes($0.prefix(40)))" } ?? "nothing"), etcd \(expected.count) bytes \(escapeBytes(expected.prefix(40))) at revision \(revision)")
    }

    /// What the agent logs once a render of a mapping has ended (every level is recorded).
    static let renderMessages: Set<String> = ["applied", "unchanged", "mapping failed; its files are unchanged", "mapping failed after changing files"]

    /// Whether a render of `mapping` at `revision` or later has ended, or (with `after`) one
    /// logged after the log's first `after` records. A write-back mapping's files are only
    /// the user's to change again once the render that follows a push has ended: an edit made
    /// between the render's last comparison and its write is overwritten (docs/write-back.md,
    /// "Limits of this version"), and a test must not race it.
    static func rendered(_ h: AgentHarness, _ mapping: String, revision: Int64 = 0, after: Int = 0) -> Bool {
      h.logs.details.withLock { records in
        records.dropFirst(after).contains { record in
          renderMessages.contains(record.message) && record.metadata["mapping.name"] == mapping
            && (Int64(record.metadata["etcd.revision"] ?? "") ?? 0) >= revision
        }
      }
    }

    /// How many records the log holds now.
    static func logCount(_ h: AgentHarness) -> Int { h.logs.details.withLock { $0.count } }

    /// How many local files of `mapping` were refused so far, as logged.
    static func refusals(_ h: AgentHarness, mapping: String) -> Int {
      ["local file not pushed", "local file too large for etcd; not pushed, the local file is kept"]
        .flatMap { h.logs.metadata(of: $0) }.filter { $0["mapping.name"] == mapping }.count
    }

    /// etcd after a scan, against etcd before it: exactly `puts` (each key's version one
    /// higher, or 1 for a new key) and `deletes` happened, every other key is as it was.
    static func expectPushes(before: [[UInt8]: Record], after: [[UInt8]: Record], puts: [[UInt8]: [UInt8]], deletes: Set<[UInt8]>,
                             context: String) {
      var problems: [String] = []
      for (key, value) in puts {
        guard let record = after[key] else {
          problems.append("\(escapeBytes(key).prefix(100)): not pushed")
          continue
        }
        if record.value != value { problems.append("\(escapeBytes(key).prefix(100)): \(record.value.count) bytes \(escapeBytes(record.value.prefix(40))), pushed \(value.count) bytes \(escapeBytes(value.prefix(40)))") }
        if record.version != (before[key]?.version ?? 0) + 1 { problems.append("\(escapeBytes(key).prefix(100)): version \(record.version), was \(before[key]?.version ?? 0): not pushed exactly once") }
      }
      for key in deletes where after[key] != nil { problems.append("\(escapeBytes(key).prefix(100)): not deleted") }
      for (key, record) in after where puts[key] == nil && before[key] != record {
        problems.append("\(escapeBytes(key).prefix(100)): \(before[key] == nil ? "created" : "changed") (\(record.value.count) bytes \(escapeBytes(record.value.prefix(40)))) though no pushable local edit made it")
      }
      for key in before.keys where after[key] == nil && !deletes.contains(key) { problems.append("\(escapeBytes(key).prefix(100)): deleted though no local delete was pushable") }
      #expect(problems.isEmpty, "\(context): \(problems.count) differences from the documented pushes: \(problems.sorted().prefix(20))")
    }

    // MARK: Hostile local files

    /// Whether a new local file at `path` (components) becomes a key, by docs/write-back.md:
    /// not hidden (nor in a hidden directory), no editor leftover or conflict copy, and a
    /// path the key rules accept (UTF-8, at most 64 segments and 4096 bytes).
    static func pushableName(_ path: [[UInt8]]) -> Bool {
      let joined = join(path)
      guard String(validating: joined, as: UTF8.self) != nil, path.count <= 64, joined.count <= 4096 else { return false }
      guard !path.contains(where: { $0.first == UInt8(ascii: ".") }) else { return false }
      let name = path.last ?? []
      func ends(_ suffix: String) -> Bool { name.count >= suffix.utf8.count && name.suffix(suffix.utf8.count).elementsEqual(suffix.utf8) }
      func starts(_ prefix: String) -> Bool { name.starts(with: prefix.utf8) }
      if ends("~") || (name.count >= 2 && starts("#") && ends("#")) || ends(".swp") || ends(".swx") || ends(".tmp") || name == Array("4913".utf8) { return false }
      let alphanumeric = { (byte: UInt8) in (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) }
      if name.count == 9 && starts("sed") && name.dropFirst(3).allSatisfy(alphanumeric) { return false }
      if ends("___jb_tmp___") || ends("___jb_old___") { return false }
      // NAME.conflict.REV or NAME.conflict.REV.N
      let text = String(decoding: name, as: UTF8.self)
      if let range = text.range(of: ".conflict.", options: .backwards) {
        let rest = text[range.upperBound...].split(separator: ".", omittingEmptySubsequences: false)
        if !rest.isEmpty && rest.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } }) { return false }
      }
      return true
    }

    static func join(_ path: [[UInt8]]) -> [UInt8] { Array(path.joined(separator: [UInt8(ascii: "/")])) }

    /// New file names: ones the docs accept (control bytes, twins, near misses of the
    /// leftover rules, 255 bytes) and ones they do not (leftovers, conflict copies, hidden,
    /// not UTF-8).
    static let localNames: [String] = [
      "plain", "new\nline", "tab\tx", "\u{1B}[2J", "del\u{7F}", "sp ace", "\u{E9}", "e\u{301}", "\u{212B}", "q\"uote",
      // near misses, pushed
      "~x", "x.swpx", "sedAb12C", "sed_b12Cd", "sedAb12Cde", "49130", "x.conflict.", "x.conflict.1a", "x.conflictX12", "x.tmpx", "x___jb_tmp",
      // leftovers, never pushed
      "sedAb12Cd", "sed123456", "x___jb_tmp___", "x___jb_old___", ".#x", "#x#", "x~", "x.swp", "x.swx", "x.tmp", "4913",
      "x.conflict.12", "x.conflict.12.1", ".hidden", "..dots",
    ]

    /// What a test expects at a path: a regular file's bytes (nil when too large to read
    /// back: its size then), a symlink's target, or a FIFO; with its link count and owner.
    typealias Entry = ByteFS.Entry

    static func regular(_ bytes: [UInt8], links: UInt64 = 1, owner: uid_t = 0) -> Entry {
      Entry(kind: S_IFREG, size: Int64(bytes.count), links: links, owner: owner, content: bytes)
    }

    /// What the test knows about the local side: the expected entries under the sandbox
    /// (tree and file directory) and outside it, and which tree files are the agent's
    /// unspoiled records (regular, etcd's bytes, one link, ours).
    struct Local {
      var sandbox: [[UInt8]: Entry] = [:]
      var outside: [[UInt8]: Entry] = [:]
      var clean: [[[UInt8]]] = []
      /// Paths touched in this scan (or round): recorded by the agent only once it has seen
      /// them, so not touched again before then; back in `clean` when the round is checked.
      var touched: [[[UInt8]]] = []
      var used: Set<[UInt8]> = []
      var counter = 0
      var deletesLeft = 0
      var largeLeft = 0
      /// The file mapping's file: true when it is the agent's (a refusal spoils it until
      /// the user puts a regular file there again).
      var fileClean = true
      /// What the generated actions covered, by kind.
      var seen: Set<String> = []
      var junkWritten = false

      /// The round is over and checked: what it pushed is the agent's record now.
      mutating func settle() {
        clean += touched
        touched = []
      }

      mutating func next() -> Int {
        counter += 1
        return counter
      }
    }

    /// Expected pushes of one scan.
    struct Pushes {
      var puts: [[UInt8]: [UInt8]] = [:]
      var deletes: Set<[UInt8]> = []
    }

    static let treePrefix = Array("/w/".utf8)
    static let fileKey = "/wf/\u{C5}"
    static let fileName = "conf-\u{C5}"
    static let fileTwins = ["/wf/A\u{30A}", "/wf/\u{212B}"]

    /// The local user's change to the tree: one generated action, its effect on disk in
    /// `local`, and what the docs say it pushes in `pushes`.
    static func treeAction(_ g: inout Generator, _ local: inout Local, _ pushes: inout Pushes, root: String, outside: String, atomic: Bool,
                           kind: Int? = nil, variant: Int? = nil) throws {
      let tree = Array("tree".utf8)
      func key(_ path: [[UInt8]]) -> [UInt8] { treePrefix + join(path) }
      func entry(_ path: [[UInt8]]) -> [UInt8] { join([tree] + path) }
      func value(_ g: inout Generator, _ path: [[UInt8]]) -> [UInt8] {
        let counter = local.next()
        var limit = 200_000
        if local.largeLeft > 0 && g.below(4) == 0 {
          local.largeLeft -= 1
          limit = pushLimit - key(path).count
        }
        return hostileValue(&g, limit: limit, counter: counter)
      }
      /// New bytes for a recorded file: never what it holds (that would be no edit).
      func edit(_ g: inout Generator, _ path: [[UInt8]]) -> [UInt8] {
        let bytes = value(&g, path)
        return bytes == local.sandbox[entry(path)]?.content ? bytes + Array("+".utf8) : bytes
      }
      /// A fresh path for `name`: at the top, or in a new directory when taken.
      func fresh(_ name: [UInt8]) -> [[UInt8]] {
        var path = [name]
        if local.used.contains(join(path)) || g.below(3) == 0 { path = [Array("d\(local.next())".utf8), name] }
        local.used.insert(join(path))
        return path
      }
      func newFile(_ path: [[UInt8]], _ bytes: [UInt8], pushable: Bool) throws {
        local.seen.insert(pushableName(path) ? "a new file with a pushable name" : "a new file with a name never pushed")
        try ByteFS.write(root, [tree] + path, bytes, atomic: atomic)
        local.sandbox[entry(path)] = regular(bytes)
        if pushable && pushableName(path) {
          pushes.puts[key(path)] = bytes
          local.touched.append(path)
        }
      }
      func outsideFile(_ bytes: [UInt8]) throws -> String {
        let name = "secret\(local.next())"
        try ByteFS.write(outside, [Array(name.utf8)], bytes, atomic: false)
        local.outside[Array(name.utf8)] = regular(bytes)
        return outside + "/" + name
      }
      /// A recorded, unspoiled file, taken out of `clean` (the caller puts it back if it stays so).
      func takeClean() -> [[UInt8]]? {
        guard !local.clean.isEmpty else { return nil }
        return local.clean.remove(at: g.below(local.clean.count))
      }

      switch kind ?? g.below(24) {
      case 0, 1, 2, 3:  // a new file with a generated name
        let path = fresh(Array(g.pick(localNames).utf8))
        try newFile(path, value(&g, path), pushable: true)
        local.seen.insert("a new file with a generated name")
      case 4:  // a new file deep down: 64 segments are a key, 65 and 70 are not
        let depth = variant.map { [64, 65, 70][$0 % 3] } ?? g.pick([64, 65, 70])
        let path = [Array("deep\(local.next())".utf8)] + (1..<depth).map { Array("\($0 % 10)".utf8) }
        local.used.insert(join(path))
        try newFile(path, value(&g, path), pushable: true)
        local.seen.insert(depth <= 64 ? "a file 64 segments deep" : "a file deeper than 64 segments")
      case 5:  // long names: up to 4096 bytes a key, beyond not
        // 15 or 16 segments of 254 bytes (3824, 4079 bytes), or 16 directories of 240 bytes
        // and a name of 250 (4106 bytes). The directories' absolute paths stay below
        // PATH_MAX (paths beyond it: `directoryBeyondPathMax`).
        let shape = variant.map { $0 % 3 } ?? g.below(3)
        let (segments, length, last) = [(15, 254, 254), (16, 254, 254), (17, 240, 250)][shape]
        let mark = Array("long\(local.next())-".utf8)
        let path = (0..<segments).map { index in
          (index == 0 ? mark : []) + Array(repeating: UInt8(ascii: "L"), count: (index == segments - 1 ? last : length) - (index == 0 ? mark.count : 0))
        }
        local.used.insert(join(path))
        try newFile(path, value(&g, path), pushable: true)
        local.seen.insert(join(path).count <= 4096 ? "a path of up to 4096 bytes" : "a path over 4096 bytes")
      case 6:  // canonically equal twins, side by side: two keys
        let directory = Array("tw\(local.next())".utf8)
        for name in g.pick(twinFamilies) {
          let path = [directory, Array(name.utf8)]
          local.used.insert(join(path))
          try newFile(path, value(&g, path), pushable: true)
        }
        local.seen.insert("canonically equal twins, side by side")
      case 7:  // names that are not UTF-8: never keys
        let path = g.below(2) == 0 ? [[0xFF, 0xFE] + Array("x\(local.next())".utf8)] : [[0xC3] + Array("dir\(local.next())".utf8), Array("inner".utf8)]
        try newFile(path, value(&g, path), pushable: true)
        local.seen.insert("names that are not UTF-8")
      case 8:  // a symlink to a file outside the tree: never followed
        let target = try outsideFile(Array("outside secret \(local.next())".utf8))
        let path = fresh(Array("link\(local.next())".utf8))
        try ByteFS.symlink(Array(target.utf8), root, [tree] + path)
        local.sandbox[entry(path)] = Entry(kind: S_IFLNK, size: Int64(target.utf8.count), links: 1, owner: 0, content: Array(target.utf8))
        local.seen.insert("a symlink to a file outside the tree")
      case 9:  // a FIFO: never opened
        let path = fresh(Array("fifo\(local.next())".utf8))
        try ByteFS.fifo(root, [tree] + path)
        local.sandbox[entry(path)] = Entry(kind: S_IFIFO, size: 0, links: 1, owner: 0, content: nil)
        local.seen.insert("a FIFO")
      case 10:  // a hard link to a file outside: refused
        let bytes = Array("not for etcd \(local.next())".utf8)
        let source = try outsideFile(bytes)
        let path = fresh(Array("hard\(local.next())".utf8))
        try ByteFS.link(source, root, [tree] + path)
        local.sandbox[entry(path)] = regular(bytes, links: 2)
        local.outside[Array(source.utf8.split(separator: UInt8(ascii: "/")).last!)] = regular(bytes, links: 2)
        local.seen.insert("a hard link to a file outside")
      case 11:  // a file of another user: refused
        let path = fresh(Array("foreign\(local.next())".utf8))
        let bytes = value(&g, path)
        try ByteFS.write(root, [tree] + path, bytes, owner: 12345, atomic: atomic)
        local.sandbox[entry(path)] = regular(bytes, owner: 12345)
        local.seen.insert("a file of another user")
      case 12:  // over the limit: sparse, from one byte over to 8 GiB; refused unread
        let path = fresh(Array("big\(local.next())".utf8))
        let size = variant.map { [pushLimit + 1, 2 << 20, 8 << 30][$0 % 3] } ?? g.pick([pushLimit + 1, 2 << 20, 8 << 30])
        try ByteFS.write(root, [tree] + path, [], sparse: size, atomic: atomic)
        local.sandbox[entry(path)] = Entry(kind: S_IFREG, size: Int64(size), links: 1, owner: 0, content: size <= ByteFS.readLimit ? [UInt8](repeating: 0, count: size) : nil)
        local.seen.insert("over the limit")
      case 13:  // a key plus value a byte over etcd's limit: refused; exactly at it: pushed
        let path = fresh(Array("edge\(local.next())".utf8))
        let over = variant.map { $0 % 2 == 1 } ?? (g.below(2) == 0)
        guard over || local.largeLeft > 0 else { return }
        if !over { local.largeLeft -= 1 }
        let bytes = filler(count: pushLimit - key(path).count + (over ? 1 : 0), seed: g.next())
        try newFile(path, bytes, pushable: !over)
        local.seen.insert(over ? "a key plus value a byte over the limit" : "a key plus value at the limit")
      case 14, 15, 16:  // an ordinary edit of a recorded file (in place, by rename, as sed -i or JetBrains do)
        guard let path = takeClean() else { return }
        let bytes = edit(&g, path)
        let directory = Array(path.dropLast())
        // Editors' companion files need room for their suffixes in a name.
        let choice = g.below(4)
        switch path.last!.count > 200 ? 3 : choice {
        case 0:
          let digits = String(local.next() % 1_000_000)
          let temp = directory + [Array(("sed" + String(repeating: "0", count: 6 - digits.count) + digits).utf8)]
          try ByteFS.write(root, [tree] + temp, bytes, atomic: false)
          try ByteFS.rename(root, [tree] + temp, to: [tree] + path)
        case 1:
          let name = path.last!
          let old = directory + [name + Array("___jb_old___".utf8)]
          let temp = directory + [name + Array("___jb_tmp___".utf8)]
          let previous = local.sandbox[entry(path)]?.content ?? []
          try ByteFS.write(root, [tree] + old, previous, atomic: false)
          local.sandbox[entry(old)] = regular(previous)
          try ByteFS.write(root, [tree] + temp, bytes, atomic: false)
          try ByteFS.rename(root, [tree] + temp, to: [tree] + path)
        case 2:
          let name = path.last!
          let swap = directory + [Array(".".utf8) + name + Array(".swp".utf8)]
          let backup = directory + [name + Array("~".utf8)]
          try ByteFS.write(root, [tree] + swap, Array("b0VIM 9.0".utf8), atomic: false)
          local.sandbox[entry(swap)] = regular(Array("b0VIM 9.0".utf8))
          let previous = local.sandbox[entry(path)]?.content ?? []
          try ByteFS.write(root, [tree] + backup, previous, atomic: false)
          local.sandbox[entry(backup)] = regular(previous)
          try ByteFS.write(root, [tree] + path, bytes, atomic: atomic)
        default:
          try ByteFS.write(root, [tree] + path, bytes, atomic: atomic)
        }
        local.sandbox[entry(path)] = regular(bytes)
        pushes.puts[key(path)] = bytes
        local.touched.append(path)
        local.seen.insert("an ordinary edit of a recorded file (in place, by rename, as sed -i or JetBrains do)")
      case 17:  // a recorded file deleted: its key deleted (deletes: true), a few at a time
        guard local.deletesLeft > 0, let path = takeClean() else { return }
        local.deletesLeft -= 1
        try ByteFS.unlink(root, [tree] + path)
        local.sandbox[entry(path)] = nil
        pushes.deletes.insert(key(path))
        local.seen.insert("a recorded file deleted")
      case 18:  // a recorded file edited and hard-linked outside: refused, etcd keeps its value
        guard let path = takeClean() else { return }
        let bytes = edit(&g, path)
        let name = Array("kept\(local.next())".utf8)
        try ByteFS.write(root, [tree] + path, bytes, linkTo: outside + "/" + String(decoding: name, as: UTF8.self), atomic: atomic)
        local.sandbox[entry(path)] = regular(bytes, links: 2)
        local.outside[name] = regular(bytes, links: 2)
        local.seen.insert("a recorded file edited and hard-linked outside")
      case 19:  // a recorded file edited by another user: refused
        guard let path = takeClean() else { return }
        let bytes = edit(&g, path)
        try ByteFS.write(root, [tree] + path, bytes, owner: 12345, atomic: true)
        local.sandbox[entry(path)] = regular(bytes, owner: 12345)
        local.seen.insert("a recorded file edited by another user")
      case 20:  // a recorded file replaced by a symlink to a file outside: refused, never a delete
        guard let path = takeClean() else { return }
        let target = try outsideFile(Array("replacement secret \(local.next())".utf8))
        try ByteFS.symlink(Array(target.utf8), root, [tree] + path, replacing: true)
        local.sandbox[entry(path)] = Entry(kind: S_IFLNK, size: Int64(target.utf8.count), links: 1, owner: 0, content: Array(target.utf8))
        local.seen.insert("a recorded file replaced by a symlink to a file outside")
      case 21:  // a recorded file replaced by a FIFO: refused, never a delete, never opened
        guard let path = takeClean() else { return }
        try ByteFS.fifo(root, [tree] + path, replacing: true)
        local.sandbox[entry(path)] = Entry(kind: S_IFIFO, size: 0, links: 1, owner: 0, content: nil)
        local.seen.insert("a recorded file replaced by a FIFO")
      case 22:  // a recorded file grown sparse past the limit: refused unread
        guard let path = takeClean() else { return }
        let size = variant.map { [pushLimit + 1, 8 << 30][$0 % 2] } ?? g.pick([pushLimit + 1, 8 << 30])
        try ByteFS.write(root, [tree] + path, [], sparse: size, atomic: true)
        local.sandbox[entry(path)] = Entry(kind: S_IFREG, size: Int64(size), links: 1, owner: 0, content: size <= ByteFS.readLimit ? [UInt8](repeating: 0, count: size) : nil)
        local.seen.insert("a recorded file grown sparse past the limit")
      default:  // a canonical twin of a recorded name beside it: a key of its own
        /// The names canonically equal to a path's last segment (its ending swapped for
        /// another spelling of the same text), beside it.
        func twins(_ path: [[UInt8]]) -> [[[UInt8]]] {
          let name = path.last!
          guard let family = twinFamilies.first(where: { family in family.contains { name.ends(with: Array($0.utf8)) } }),
            let form = family.first(where: { name.ends(with: Array($0.utf8)) })
          else { return [] }
          return family.filter { Array($0.utf8) != Array(form.utf8) }.map { other in
            Array(path.dropLast()) + [Array(name.dropLast(form.utf8.count)) + Array(other.utf8)]
          }.filter { !local.used.contains(join($0)) }
        }
        guard let path = local.clean.first(where: { !twins($0).isEmpty }) else { return }
        for twin in twins(path) {
          local.used.insert(join(twin))
          try newFile(twin, value(&g, twin), pushable: true)
        }
        local.seen.insert("a canonical twin of a recorded name")
      }
    }

    /// Every kind of tree action (``treeAction``'s `kind`, with the variants of the limits'
    /// edges), so that each seed covers all of them besides its random ones: a key plus value
    /// at the limit first (before random values take the large ones).
    static let everyTreeAction: [(kind: Int, variant: Int?)] = [
      (13, 0), (13, 1), (0, nil), (4, 0), (4, 1), (5, 1), (5, 2), (6, nil), (7, nil), (8, nil), (9, nil), (10, nil), (11, nil), (12, 0), (12, 2),
      (14, nil), (17, nil), (18, nil), (19, nil), (20, nil), (21, nil), (22, 0), (22, 1), (23, nil),
    ]

    /// What ``everyTreeAction`` covers, as `Local.seen` names it.
    static let everyTreeActionSeen: Set<String> = [
      "a key plus value at the limit", "a key plus value a byte over the limit", "a new file with a generated name",
      "a new file with a pushable name", "a new file with a name never pushed", "a file 64 segments deep", "a file deeper than 64 segments",
      "a path of up to 4096 bytes", "a path over 4096 bytes", "canonically equal twins, side by side", "names that are not UTF-8",
      "a symlink to a file outside the tree", "a FIFO", "a hard link to a file outside", "a file of another user", "over the limit",
      "an ordinary edit of a recorded file (in place, by rename, as sed -i or JetBrains do)", "a recorded file deleted",
      "a recorded file edited and hard-linked outside", "a recorded file edited by another user",
      "a recorded file replaced by a symlink to a file outside", "a recorded file replaced by a FIFO",
      "a recorded file grown sparse past the limit", "a canonical twin of a recorded name",
    ]

    /// The local user's change to the file mapping's directory: leftovers and a twin-named
    /// file beside it (never pushed), then one change of the file itself.
    static func fileAction(_ g: inout Generator, _ local: inout Local, _ pushes: inout Pushes, root: String, outside: String,
                           etcdValue: [UInt8], atomic: Bool) throws -> FileOutcome {
      let directory = Array("filedir".utf8)
      let name = Array(fileName.utf8)
      for junk in ["conf-A\u{30A}", "conf-\u{212B}", "conf-\u{C5}~", ".conf-\u{C5}.swp", "sedAb12Cd", "conf-\u{C5}.conflict.7"] where g.below(2) == 0 || !local.junkWritten {
        let bytes = Array("junk \(local.next())".utf8)
        try ByteFS.write(root, [directory, Array(junk.utf8)], bytes, atomic: atomic)
        local.sandbox[join([directory, Array(junk.utf8)])] = regular(bytes)
      }
      local.junkWritten = true
      let path = join([directory, name])
      let mapped = Array(fileKey.utf8)
      if !local.fileClean {
        // A regular file of ours again: pushed.
        var bytes = hostileValue(&g, limit: pushLimit - mapped.count, counter: local.next())
        if bytes == etcdValue { bytes += Array("+".utf8) }
        try ByteFS.write(root, [directory, name], bytes, atomic: true)
        local.sandbox[path] = regular(bytes)
        pushes.puts[mapped] = bytes
        local.fileClean = true
        return .pushed
      }
      switch g.below(8) {
      case 0, 1, 2:
        var bytes = hostileValue(&g, limit: pushLimit - mapped.count, counter: local.next())
        if bytes == etcdValue { bytes += Array("+".utf8) }
        try ByteFS.write(root, [directory, name], bytes, atomic: atomic)
        local.sandbox[path] = regular(bytes)
        pushes.puts[mapped] = bytes
        return .pushed
      case 3:  // deleted (deletes: false): restored from etcd
        try ByteFS.unlink(root, [directory, name])
        local.sandbox[path] = regular(etcdValue)
        return .restored
      case 4:
        let target = outside + "/file-secret\(local.next())"
        try ByteFS.write(outside, [Array(target.utf8.split(separator: UInt8(ascii: "/")).last!)], Array("outside".utf8), atomic: false)
        local.outside[Array(target.utf8.split(separator: UInt8(ascii: "/")).last!)] = regular(Array("outside".utf8))
        try ByteFS.symlink(Array(target.utf8), root, [directory, name], replacing: true)
        local.sandbox[path] = Entry(kind: S_IFLNK, size: Int64(target.utf8.count), links: 1, owner: 0, content: Array(target.utf8))
      case 5:
        try ByteFS.fifo(root, [directory, name], replacing: true)
        local.sandbox[path] = Entry(kind: S_IFIFO, size: 0, links: 1, owner: 0, content: nil)
      case 6:
        var bytes = hostileValue(&g, limit: 1000, counter: local.next())
        if bytes == etcdValue { bytes += Array("+".utf8) }
        let linked = Array("file-link\(local.next())".utf8)
        if g.below(2) == 0 {
          try ByteFS.write(root, [directory, name], bytes, linkTo: outside + "/" + String(decoding: linked, as: UTF8.self), atomic: true)
          local.sandbox[path] = regular(bytes, links: 2)
          local.outside[linked] = regular(bytes, links: 2)
        } else {
          try ByteFS.write(root, [directory, name], bytes, owner: 12345, atomic: true)
          local.sandbox[path] = regular(bytes, owner: 12345)
        }
      default:
        let size = g.pick([pushLimit + 1, 8 << 30])
        try ByteFS.write(root, [directory, name], [], sparse: size, atomic: true)
        local.sandbox[path] = Entry(kind: S_IFREG, size: Int64(size), links: 1, owner: 0, content: size <= ByteFS.readLimit ? [UInt8](repeating: 0, count: size) : nil)
      }
      local.fileClean = false
      return .refused
    }

    enum FileOutcome { case pushed, restored, refused }

    /// Everything on disk under the sandbox and outside it is what the test expects, entry
    /// for entry (directories aside): no file lost, changed, added, or left behind.
    static func verifyDisk(_ local: Local, sandbox: String, outside: String, context: String) {
      for (name, expected, root) in [("sandbox", local.sandbox, sandbox), ("outside", local.outside, outside)] {
        let found = ByteFS.inventory(root)
        var problems: [String] = []
        for (path, entry) in expected where found[path] != entry {
          problems.append("\(escapeBytes(path).prefix(100)): \(found[path].map { "\($0)" } ?? "missing"), expected \(entry)")
        }
        for (path, entry) in found where expected[path] == nil {
          problems.append("\(escapeBytes(path).prefix(100)): unexpected \(entry)")
        }
        #expect(problems.isEmpty, "\(context): \(name) differs in \(problems.count) entries: \(problems.sorted().prefix(15))")
      }
    }

    @Test("hostile local files in write-back destinations: etcd holds exactly the documented pushes", arguments: [UInt64(41), 42])
    func localFiles(seed: UInt64) async throws {
      let h = try await AgentHarness.start(etcdArguments: ["--max-request-bytes=4194304"])
      defer { h.stop() }
      var g = Generator(seed: seed)
      let sandbox = h.dir("sandbox")
      let outside = h.dir("outside")
      for directory in [sandbox + "/filedir", outside] { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
      let tree = Mapping(name: "tree", kind: .tree, prefixes: ["/w/"], dest: sandbox + "/tree", writeBack: true, deletes: true)
      let file = Mapping(name: "file", kind: .file, key: Self.fileKey, dest: sandbox + "/filedir/" + Self.fileName, writeBack: true)
      let configuration = h.configuration([tree, file])

      // etcd's side: keys the tree holds (odd but valid names, twins, names that look like
      // leftovers or are hidden: a file that is already a key is pushed whatever its name),
      // keys it cannot hold (never touched), the file's key and its canonical twins.
      var counter = 0
      for index in 0..<30 {
        let name: String
        switch index % 8 {
        case 1: name = "dir\(index % 3)/k\(index)"
        case 0, 2:
          let family = g.pick(Self.twinFamilies)
          name = "tf\(index)-" + g.pick(family)
        case 3: name = "k\(index)~"
        case 4: name = ".hid\(index)"
        case 5: name = "k\(index)\nnl\t\u{1B}"
        case 6: name = "sedKey\(100 + index)"
        default: name = "dir\(index % 3)/deeper/k\(index).swp"
        }
        counter += 1
        try await h.put(Self.treePrefix + Array(name.utf8), Self.hostileValue(&g, limit: 100_000, counter: counter))
      }
      for bad in [Self.treePrefix + [0xFF] + Array("bad".utf8), Array("/w/a//b".utf8), Array("/w/nul".utf8) + [0] + Array("x".utf8)] {
        try await h.put(bad, Array("not a path".utf8))
      }
      counter += 1
      try await h.put(Array(Self.fileKey.utf8), Self.hostileValue(&g, limit: 100_000, counter: counter))
      for twin in Self.fileTwins { try await h.put(twin, "twin of the file's key") }

      let first = try await h.agent(configuration).sync()
      #expect(first[mapping: "tree"]?.error == nil && first[mapping: "file"]?.error == nil, "\(first.map { $0.error ?? "" })")
      var local = Local()
      do {
        let keys = try Self.etcdctl(h.server.endpoint, prefix: "/w").records
        let files = GeneratedHostileTests.expectedTree(keys.mapValues(\.value).filter { $0.key.starts(with: Self.treePrefix) }, prefix: Self.treePrefix)
        // In byte order: the actions pick recorded files by index, and a seed must replay.
        for (path, value) in files.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
          local.sandbox[Array("tree/".utf8) + path] = Self.regular(value)
          let components = path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).map(Array.init)
          local.clean.append(components)
          local.used.insert(path)
          for index in components.indices.dropLast() { local.used.insert(Self.join(Array(components[...index]))) }
        }
        local.sandbox[Array("filedir/".utf8) + Array(Self.fileName.utf8)] = Self.regular(keys[Array(Self.fileKey.utf8)]?.value ?? [])
        Self.verifyDisk(local, sandbox: sandbox, outside: outside, context: "first sync")
      }
      local.counter = 1000

      // One scan: the user changes the destinations while the agent is stopped; the next
      // start finds every change.
      do {
        var pushes = Pushes()
        local.deletesLeft = 2
        local.largeLeft = 2
        for (kind, variant) in Self.everyTreeAction {
          let atomic = g.below(2) == 0
          try Self.treeAction(&g, &local, &pushes, root: sandbox, outside: outside, atomic: atomic, kind: kind, variant: variant)
        }
        #expect(local.seen.isSuperset(of: Self.everyTreeActionSeen), "not covered: \(Self.everyTreeActionSeen.subtracting(local.seen).sorted())")
        for _ in 0..<25 {
          let atomic = g.below(2) == 0
          try Self.treeAction(&g, &local, &pushes, root: sandbox, outside: outside, atomic: atomic)
        }
        let before = try Self.etcdctl(h.server.endpoint, prefix: "/w")
        let etcdValue = before.records[Array(Self.fileKey.utf8)]?.value ?? []
        let atomic = g.below(2) == 0
        _ = try Self.fileAction(&g, &local, &pushes, root: sandbox, outside: outside, etcdValue: etcdValue, atomic: atomic)
        let results = try await h.agent(configuration).sync()
        let after = try Self.etcdctl(h.server.endpoint, prefix: "/w")
        let context = "one scan: \(results.map { "\($0.mapping): \($0.error ?? "ok")" }) \(Self.logTail(h))"
        Self.expectPushes(before: before.records, after: after.records, puts: pushes.puts, deletes: pushes.deletes, context: context)
        Self.verifyDisk(local, sandbox: sandbox, outside: outside, context: context)
        // Again, with a new agent: refusals stay refusals, nothing is pushed twice.
        _ = try await h.agent(configuration).sync()
        let again = try Self.etcdctl(h.server.endpoint, prefix: "/w")
        #expect(again.revision == after.revision, "a second pass pushed again: revision \(after.revision) → \(again.revision)")
        Self.verifyDisk(local, sandbox: sandbox, outside: outside, context: "second pass")
        local.settle()
      }

      // The daemon: the same, seen through inotify. Every change of a name that could be a
      // key is atomic (a rename, a link, a symlink), as editors make them, so that no scan
      // sees a half-written file.
      let agent = try h.agent(configuration)
      let started = Self.logCount(h)
      let daemon = Daemon(agent)
      do {
        var pushes = Pushes()
        let start = try Self.etcdctl(h.server.endpoint, prefix: "/w")
        _ = try await Self.marker(h, sandbox: sandbox, &pushes, &local)
        #expect(await eventually { Self.rendered(h, "file", after: started) }, "the daemon never rendered the file mapping")
        Self.expectPushes(before: start.records, after: try Self.etcdctl(h.server.endpoint, prefix: "/w").records, puts: pushes.puts, deletes: [], context: "daemon start")
        local.settle()
      }
      var daemonSeen: Set<String> = []
      for round in 0..<2 {
        var pushes = Pushes()
        local.deletesLeft = 1
        local.largeLeft = 1
        let before = try Self.etcdctl(h.server.endpoint, prefix: "/w")
        let refusals = Self.refusals(h, mapping: "file")
        let mark = Self.logCount(h)
        let etcdValue = before.records[Array(Self.fileKey.utf8)]?.value ?? []
        let outcome = try Self.fileAction(&g, &local, &pushes, root: sandbox, outside: outside, etcdValue: etcdValue, atomic: true)
        // Half of every kind in each round (so all of them through inotify), and random ones.
        local.seen = []
        for (index, action) in Self.everyTreeAction.enumerated() where index % 2 == round {
          try Self.treeAction(&g, &local, &pushes, root: sandbox, outside: outside, atomic: true, kind: action.kind, variant: action.variant)
        }
        daemonSeen.formUnion(local.seen)
        for _ in 0..<12 { try Self.treeAction(&g, &local, &pushes, root: sandbox, outside: outside, atomic: true) }
        // The file mapping has no marker of its own: its outcome is the barrier.
        let filePath = sandbox + "/filedir/" + Self.fileName
        switch outcome {
        case .pushed:
          try await Self.awaitPush(h, Array(Self.fileKey.utf8), pushes.puts[Array(Self.fileKey.utf8)] ?? [], mapping: "file", "round \(round): the file's edit")
        case .restored:
          #expect(await eventually { Bytes.read(filePath) == etcdValue && Self.rendered(h, "file", after: mark) }, "round \(round): the deleted file was not restored")
        case .refused:
          #expect(await eventually { Self.refusals(h, mapping: "file") > refusals && Self.rendered(h, "file", after: mark) }, "round \(round): the file was not refused")
        }
        _ = try await Self.marker(h, sandbox: sandbox, &pushes, &local)
        // Once the agent has rendered its own pushes, one more marker: nothing may have been
        // pushed between the two.
        let last = try await Self.marker(h, sandbox: sandbox, &pushes, &local)
        let after = try Self.etcdctl(h.server.endpoint, prefix: "/w")
        let context = "round \(round): \(await agent.progress.errors) \(Self.logTail(h))"
        #expect(after.revision == last, "\(context): etcd moved on after the last marker (\(last) → \(after.revision))")
        Self.expectPushes(before: before.records, after: after.records, puts: pushes.puts, deletes: pushes.deletes, context: context)
        Self.verifyDisk(local, sandbox: sandbox, outside: outside, context: context)
        local.settle()
      }
      let missed = Self.everyTreeActionSeen.subtracting(daemonSeen)
      #expect(missed.isEmpty, "not covered by the daemon: \(missed.sorted())")
      #expect(!daemon.hasEnded, "the agent stopped")
      let ended = await daemon.stop()
      #expect(ended == nil, "\(String(describing: ended))")
      // Nothing beside the destinations.
      #expect(Set(Disk.names(sandbox)) == ["tree", "filedir"], "\(Disk.names(sandbox))")
      #expect(Set(Disk.names(h.dir.path)).isSubset(of: ["sandbox", "outside", "state", "commands.log"]), "\(Disk.names(h.dir.path))")
    }

    /// Renames a new top-level file into the tree and waits until etcd holds it: every
    /// local change made before it has been scanned then. Returns the marker's revision.
    static func marker(_ h: AgentHarness, sandbox: String, _ pushes: inout Pushes, _ local: inout Local) async throws -> Int64 {
      let name = Array("zz-marker-\(local.next())".utf8)
      let bytes = Array("marker".utf8) + name
      try ByteFS.write(sandbox, [Array("tree".utf8), name], bytes, atomic: true)
      local.sandbox[Array("tree/".utf8) + name] = Self.regular(bytes)
      local.used.insert(name)
      local.touched.append([name])
      pushes.puts[Self.treePrefix + name] = bytes
      let key = Self.treePrefix + name
      try await Self.awaitPush(h, key, bytes, mapping: "tree", "the marker")
      return try await h.client.get(KeyRange(key: key)).kvs.first?.modRevision ?? 0
    }

    /// docs/write-back.md names Emacs' auto-save files `#x#` among the editor leftovers that
    /// are never pushed; `LocalScanner.isIgnored` used to skip every name that starts with `#`.
    /// By the docs a new file `#notes` is a key, and `#autosave#` is not.
    @Test("a new file named #x (not an Emacs #x#) is pushed, as docs/write-back.md says")
    func hashPrefixedName() async throws {
      let h = try await AgentHarness.start()
      defer { h.stop() }
      try await h.put("/w/f", "1")
      let tree = Mapping(name: "tree", kind: .tree, prefixes: ["/w/"], dest: h.dir("tree"), writeBack: true)
      _ = try await h.agent(h.configuration([tree])).sync()
      try Disk.write(h.dir("tree/#notes"), "mine")
      try Disk.write(h.dir("tree/#autosave#"), "emacs")
      _ = try await h.agent(h.configuration([tree])).sync()
      let keys = try Self.etcdctl(h.server.endpoint, prefix: "/w/").records
      #expect(keys[Array("/w/#autosave#".utf8)] == nil, "an Emacs auto-save file was pushed")
      #expect(keys[Array("/w/#notes".utf8)]?.value == Array("mine".utf8), "a file named #notes was taken for an editor's leftover")
    }

    /// A directory whose absolute path is longer than PATH_MAX (4096 bytes) under a
    /// write-back tree, made by a local user (or by etcd keys near the 4096-byte path limit
    /// under a long destination path) is watched like any other: `DirectoryWatcher` used to add
    /// its watches by absolute path, `inotify_add_watch` failed with ENAMETOOLONG, the
    /// watcher's start failed as a whole, and the agent logged `local edits cannot be watched;
    /// write-back is off for this mapping`: no local edit anywhere in the tree was pushed until
    /// the next start. It now opens each directory from the root by descriptor and watches
    /// `/proc/self/fd/N`.
    @Test("a directory whose absolute path is beyond PATH_MAX does not turn write-back off", arguments: ["local", "etcd"])
    func directoryBeyondPathMax(origin: String) async throws {
      let h = try await AgentHarness.start()
      defer { h.stop() }
      try await h.put("/w/f", "1")
      // A destination of 300 bytes for etcd's keys: with a 4079-byte key path below it, its
      // deepest directory is about 4130 bytes from /.
      let dest = origin == "etcd" ? h.dir(String(repeating: "d", count: 250) + "/tree") : h.dir("tree")
      let long = (0..<16).map { index in Array((index == 0 ? "long-" : "").utf8) + Array(repeating: UInt8(ascii: "L"), count: index == 0 ? 249 : 254) }
      if origin == "etcd" { try await h.put(Self.treePrefix + Self.join(long), Array("deep".utf8)) }
      let tree = Mapping(name: "tree", kind: .tree, prefixes: ["/w/"], dest: dest, writeBack: true)
      let first = try await h.agent(h.configuration([tree])).sync()[mapping: "tree"]
      #expect(first?.error == nil, "\(first?.error ?? "")")
      if origin == "local" {
        // 17 directories of 254 bytes: 4335 bytes below the root, a file at the bottom.
        try ByteFS.write(dest, long + [Array(repeating: UInt8(ascii: "M"), count: 254), Array("file".utf8)], Array("x".utf8), atomic: false)
      }
      #expect(ByteFS.inventory(dest).keys.contains { $0.count + dest.utf8.count > 4096 }, "no path beyond PATH_MAX was made")
      let agent = try h.agent(h.configuration([tree]))
      let mark = Self.logCount(h)
      let daemon = Daemon(agent)
      // Once the first sync has rendered, a new file is pushed by the watcher or by the full
      // scan the daemon makes once its watchers are started (or failed to start).
      let started = await eventually { Self.rendered(h, "tree", after: mark) }
      #expect(started)
      try ByteFS.write(dest, [Array("new".utf8)], Array("new".utf8), atomic: true)
      let watching = await eventually { (try? await h.client.get("/w/new").kvs.first?.value) == Array("new".utf8) }
      #expect(watching, "the daemon's scan after starting its watchers did not push a new file")
      try ByteFS.write(dest, [Array("f".utf8)], Array("edited".utf8), atomic: true)
      let pushed = await eventually(within: .seconds(5)) { (try? await h.client.get("/w/f").kvs.first?.value) == Array("edited".utf8) }
      let off = h.logs.metadata(of: "local edits cannot be watched; write-back is off for this mapping")
      #expect(off.isEmpty, "\(off.map { $0["error"].map { String($0.prefix(200)) } ?? "" })")
      #expect(pushed, "a local edit was not pushed: \(Self.logTail(h))")
      #expect(!daemon.hasEnded)
      _ = await daemon.stop()
    }

    /// The last log lines that say something (not the keys rejected at every render).
    static func logTail(_ h: AgentHarness) -> String {
      let quiet: Set<String> = ["mapping failure details", "key rejected", "unchanged"]
      let lines = h.logs.details.withLock { $0.filter { !quiet.contains($0.message) }.suffix(12).map { "\($0.message) \($0.metadata.filter { $0.key != "duration" })" } }
      return String(String(describing: lines).prefix(4000))
    }
  }
}

extension Array where Element == UInt8 {
  fileprivate func ends(with suffix: [UInt8]) -> Bool { count >= suffix.count && self.suffix(suffix.count).elementsEqual(suffix) }
}

/// File operations on byte names below a root, through descriptors: names may hold any byte
/// but `/` and NUL, and paths may be longer than `PATH_MAX`. Independent of the code under test.
enum ByteFS {
  struct Failure: Error, CustomStringConvertible {
    let description: String
  }

  /// What stands at a path: its type, size, link count, owner, and a regular file's bytes
  /// (up to ``readLimit``) or a symlink's target.
  struct Entry: Equatable, CustomStringConvertible {
    var kind: mode_t
    var size: Int64
    var links: UInt64
    var owner: uid_t
    var content: [UInt8]?

    var description: String {
      let type = kind == S_IFREG ? "file" : kind == S_IFLNK ? "symlink" : kind == S_IFIFO ? "fifo" : "type \(kind)"
      return "\(type) \(size) bytes, \(links) links, uid \(owner)\(content.map { " \(escapeBytes($0.prefix(32)))" } ?? "")"
    }
  }

  static let readLimit = 4 << 20

  static func cName(_ name: [UInt8]) -> [CChar] { name.map { CChar(bitPattern: $0) } + [0] }

  static func failure(_ what: String, _ path: [[UInt8]]) -> Failure {
    Failure(description: "\(what) \(escapeBytes(Array(path.joined(separator: [UInt8(ascii: "/")]))).prefix(200)): \(String(cString: strerror(errno)))")
  }

  /// The directory `path` below `root` (created where missing), open.
  static func directory(_ root: String, _ path: ArraySlice<[UInt8]>) throws -> Int32 {
    var fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { throw failure("open", [Array(root.utf8)]) }
    for name in path {
      _ = mkdirat(fd, cName(name), 0o755)
      let child = openat(fd, cName(name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
      close(fd)
      guard child >= 0 else { throw failure("openat", Array(path)) }
      fd = child
    }
    return fd
  }

  /// Writes `bytes` (then `sparse` as the size, owner `owner`, a hard link at `linkTo`) at
  /// `path`: in place, or staged under a hidden name and renamed over it.
  static func write(_ root: String, _ path: [[UInt8]], _ bytes: [UInt8], sparse: Int? = nil, owner: uid_t? = nil, linkTo: String? = nil,
                    atomic: Bool) throws {
    let parent = try directory(root, path.dropLast())
    defer { close(parent) }
    let name = path.last!
    let staged = atomic ? Array(".stage-\(UUID().uuidString)".utf8) : name
    let fd = openat(parent, cName(staged), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw failure("create", path) }
    var written = 0
    while written < bytes.count {
      let count = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, bytes.count - written) }
      guard count > 0 else {
        close(fd)
        throw failure("write", path)
      }
      written += count
    }
    if let sparse, ftruncate(fd, off_t(sparse)) != 0 {
      close(fd)
      throw failure("truncate", path)
    }
    if let owner, fchown(fd, owner, owner) != 0 {
      close(fd)
      throw failure("chown", path)
    }
    close(fd)
    if let linkTo, linkat(parent, cName(staged), AT_FDCWD, linkTo, 0) != 0 { throw failure("link", path) }
    if atomic, renameat(parent, cName(staged), parent, cName(name)) != 0 { throw failure("rename", path) }
  }

  static func rename(_ root: String, _ from: [[UInt8]], to: [[UInt8]]) throws {
    let parent = try directory(root, from.dropLast())
    defer { close(parent) }
    let target = try directory(root, to.dropLast())
    defer { close(target) }
    guard renameat(parent, cName(from.last!), target, cName(to.last!)) == 0 else { throw failure("rename", from) }
  }

  static func unlink(_ root: String, _ path: [[UInt8]]) throws {
    let parent = try directory(root, path.dropLast())
    defer { close(parent) }
    guard unlinkat(parent, cName(path.last!), 0) == 0 else { throw failure("unlink", path) }
  }

  /// A symlink to `target` at `path` (over what is there, by rename, when `replacing`).
  static func symlink(_ target: [UInt8], _ root: String, _ path: [[UInt8]], replacing: Bool = false) throws {
    let parent = try directory(root, path.dropLast())
    defer { close(parent) }
    let staged = replacing ? Array(".stage-\(UUID().uuidString)".utf8) : path.last!
    guard symlinkat(cName(target), parent, cName(staged)) == 0 else { throw failure("symlink", path) }
    if replacing, renameat(parent, cName(staged), parent, cName(path.last!)) != 0 { throw failure("rename", path) }
  }

  static func fifo(_ root: String, _ path: [[UInt8]], replacing: Bool = false) throws {
    let parent = try directory(root, path.dropLast())
    defer { close(parent) }
    let staged = replacing ? Array(".stage-\(UUID().uuidString)".utf8) : path.last!
    guard mkfifoat(parent, cName(staged), 0o644) == 0 else { throw failure("mkfifo", path) }
    if replacing, renameat(parent, cName(staged), parent, cName(path.last!)) != 0 { throw failure("rename", path) }
  }

  /// A hard link at `path` to the file at the absolute path `source`.
  static func link(_ source: String, _ root: String, _ path: [[UInt8]]) throws {
    let parent = try directory(root, path.dropLast())
    defer { close(parent) }
    guard linkat(AT_FDCWD, source, parent, cName(path.last!), 0) == 0 else { throw failure("link", path) }
  }

  /// Every entry below `root` but directories, by relative path bytes; never follows a
  /// symlink, never opens a FIFO.
  static func inventory(_ root: String) -> [[UInt8]: Entry] {
    var result: [[UInt8]: Entry] = [:]
    func walk(_ fd: Int32, _ relative: [UInt8]) {
      let listing = dup(fd)
      guard listing >= 0, let handle = fdopendir(listing) else { return }
      defer { closedir(handle) }
      while let item = readdir(handle) {
        let name = withUnsafeBytes(of: item.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
        if name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")] { continue }
        let path = relative.isEmpty ? name : relative + [UInt8(ascii: "/")] + name
        var info = stat()
        guard fstatat(fd, cName(name), &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
        let kind = info.st_mode & S_IFMT
        var entry = Entry(kind: kind, size: Int64(info.st_size), links: UInt64(info.st_nlink), owner: info.st_uid, content: nil)
        switch kind {
        case S_IFDIR:
          let child = openat(fd, cName(name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
          if child >= 0 {
            walk(child, path)
            close(child)
          }
          continue
        case S_IFLNK:
          var buffer = [CChar](repeating: 0, count: 8192)
          let count = readlinkat(fd, cName(name), &buffer, buffer.count)
          entry.content = count >= 0 ? buffer.prefix(count).map { UInt8(bitPattern: $0) } : nil
        case S_IFREG where info.st_size <= readLimit:
          let file = openat(fd, cName(name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
          if file >= 0 {
            var bytes = [UInt8](repeating: 0, count: Int(info.st_size) + 1)
            var count = 0
            while count < bytes.count {
              let got = bytes.withUnsafeMutableBytes { Glibc.read(file, $0.baseAddress! + count, $0.count - count) }
              if got <= 0 { break }
              count += got
            }
            close(file)
            entry.content = Array(bytes.prefix(count))
          }
        default: break
        }
        result[path] = entry
      }
    }
    let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return [:] }
    walk(fd, [])
    close(fd)
    return result
  }
}
