import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Prometheus
import Testing

/// The agent's logic against ``InMemoryEtcd`` through its ``EtcdStore`` seam: consistency
/// across prefixes, the re-list after a compaction, write-back conflicts and retries. Every
/// test ends by comparing the files byte for byte with the store's content at the applied
/// revision. The live-etcd suites (`DaemonTests`, `WriteBackTests`, the fault suite) check the
/// same behaviour against the real thing.
@Suite("Agent: in-memory etcd")
struct InMemoryAgentTests {
  static let bothTemplate = "{{ range gets \"/a/*\" }}a/{{ base .Key }}={{ .Value }} {{ end }}{{ range gets \"/b/*\" }}b/{{ base .Key }}={{ .Value }} {{ end }}\n"

  /// `template` rendered the way ``bothTemplate`` does, from the store at `revision`.
  static func rendered(_ h: InMemoryHarness, at revision: Int64) async throws -> [UInt8] {
    var text: [UInt8] = []
    for prefix in ["a", "b"] {
      let kvs = try await h.expected("/\(prefix)/", at: revision)
      for (key, value) in kvs.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
        text += Array("\(prefix)/".utf8) + key + Array("=".utf8) + value + Array(" ".utf8)
      }
    }
    return text + Array("\n".utf8)
  }

  static func isTxn(_ request: InMemoryEtcd.Request) -> Bool {
    if case .txn = request { return true }
    return false
  }

  /// A snapshot read (not the readiness probe's count).
  static func isSnapshotRead(_ request: InMemoryEtcd.Request) -> Bool {
    if case .range(_, let options) = request { return !options.countOnly }
    return false
  }

  @Test("every render sees one revision across two prefixes, also when Txns touch both in a burst")
  func oneRevisionAcrossPrefixes() async throws {
    let h = InMemoryHarness()
    try Disk.write(h.dir("both.tmpl"), Self.bothTemplate)
    let mappings = [
      Mapping(name: "a", kind: .tree, prefixes: ["/a/"], dest: h.dir("a")),
      Mapping(name: "b", kind: .tree, prefixes: ["/b/"], dest: h.dir("b"), swap: .inPlace),
      // Each render's bytes are appended to a log by its reload: every one is checked.
      Mapping(name: "both", kind: .template, prefixes: ["/a/", "/b/"], template: h.dir("both.tmpl"), dest: h.dir("both"),
              reload: ["sh", "-c", "cat '\(h.dir("both"))' >> '\(h.dir("renders.log"))'"]),
    ]
    _ = try await h.etcd.txn(if: [], then: [.put("/a/x", "0"), .put("/b/x", "0"), .put("/a/only-a", "a")])
    let agent = try h.agent(mappings)
    let first = try await agent.sync()
    #expect(first.allSatisfy { !$0.failed })
    let synced = await agent.appliedRevision
    #expect(synced == h.etcd.revision)
    #expect(await h.converged([(h.dir("a"), "/a/"), (h.dir("b"), "/b/")], at: synced))
    #expect(try await Bytes.read(h.dir("both")) == Self.rendered(h, at: synced))

    let daemon = Daemon(agent)
    // A burst of Txns, each changing both prefixes at one revision (and one a key of /b/ only).
    for round in 1...30 {
      var ops: [Op] = [.put("/a/x", "\(round)"), .put("/b/x", "\(round)")]
      if round % 10 == 0 { ops.append(.delete(KeyRange.prefix("/a/only-"))) }
      if round % 7 == 0 { ops.append(.put("/b/seven", "\(round)")) }
      _ = try await h.etcd.txn(if: [], then: ops)
    }
    let last = h.etcd.revision
    let expectedBoth = try await Self.rendered(h, at: last)
    let converged = await eventually {
      guard Bytes.read(h.dir("both")) == expectedBoth else { return false }
      return await h.converged([(h.dir("a"), "/a/"), (h.dir("b"), "/b/")], at: last)
    }
    #expect(converged, "both: \(Disk.read(h.dir("both")) ?? "-")")
    #expect(await daemon.agent.appliedRevision == last)
    #expect(await eventually { (Bytes.read(h.dir("renders.log")) ?? []).suffix(expectedBoth.count).elementsEqual(expectedBoth) },
            "the last render's reload ran")
    #expect(await daemon.stop() == nil)
    // Every render the reload saw holds one revision: /a/x and /b/x are always equal.
    let renders = (Disk.read(h.dir("renders.log")) ?? "").split(separator: "\n")
    #expect(renders.count >= 2)
    for render in renders {
      let fields = Dictionary(uniqueKeysWithValues: render.split(separator: " ").map { field in
        let parts = field.split(separator: "=", maxSplits: 1)
        return (String(parts[0]), String(parts.count > 1 ? parts[1] : ""))
      })
      #expect(fields["a/x"] != nil && fields["a/x"] == fields["b/x"], "a render mixed two revisions: \(render)")
    }
  }

  /// The read the daemon makes of a watched range behind the newest revision (see
  /// `RevisionBarrier`): keys modified after the revision its watcher is known through.
  static func rangeCheck(_ request: InMemoryEtcd.Request, of range: KeyRange, at revision: Int64) -> Bool {
    if case .range(let read, let options) = request {
      return read == range && options.revision == revision && options.minModRevision > 0
    }
    return false
  }

  @Test("one watcher per range: a Txn over two ranges is held back while one watcher has not delivered it")
  func delayedWatcherHoldsTheRevision() async throws {
    let h = InMemoryHarness()
    try Disk.write(h.dir("both.tmpl"), Self.bothTemplate)
    let mappings = [
      Mapping(name: "both", kind: .template, prefixes: ["/a/", "/b/"], template: h.dir("both.tmpl"), dest: h.dir("both"),
              reload: ["sh", "-c", "cat '\(h.dir("both"))' >> '\(h.dir("renders.log"))'"]),
    ]
    _ = try await h.etcd.txn(if: [], then: [.put("/a/x", "0"), .put("/b/x", "0")])
    let agent = try h.agent(mappings)
    #expect(try await agent.sync().allSatisfy { !$0.failed })
    let synced = await agent.appliedRevision
    let daemon = Daemon(agent)
    // Two watchers, one per prefix (a key in between, /a0 say, is never watched).
    #expect(await eventually { h.etcd.watchCount == 2 })
    h.etcd.disconnectWatches { $0 == .prefix("/b/") }
    _ = try await h.etcd.txn(if: [], then: [.put("/a/x", "1"), .put("/b/x", "1")])
    let both = h.etcd.revision
    // /a/'s watcher delivered it; /b/'s did not: the daemon reads /b/ at that revision and
    // finds it changed (the watch will bring it).
    #expect(await eventually { h.etcd.requests.contains { Self.rangeCheck($0, of: .prefix("/b/"), at: both) } })
    // A change of /a/ alone: another round of reads, so the first one's answer was taken.
    _ = try await h.etcd.txn(if: [], then: [.put("/a/y", "2")])
    let later = h.etcd.revision
    #expect(await eventually { h.etcd.requests.contains { Self.rangeCheck($0, of: .prefix("/b/"), at: later) } })
    #expect(await daemon.agent.appliedRevision == synced)
    #expect(try await Bytes.read(h.dir("both")) == Self.rendered(h, at: synced), "half of a Txn was rendered")
    h.etcd.reconnectWatches()
    let expected = try await Self.rendered(h, at: later)
    #expect(await eventually { Bytes.read(h.dir("both")) == expected })
    #expect(await daemon.agent.appliedRevision == later)
    #expect(await daemon.stop() == nil)
    for render in (Disk.read(h.dir("renders.log")) ?? "").split(separator: "\n") {
      #expect(!render.contains("a/x=1 ") || render.contains("b/x=1 "), "a render mixed two revisions: \(render)")
    }
  }

  @Test("one watcher per range: an idle range confirmed by reads resumes from there after a reconnect, not from a compacted revision")
  func idleRangeResumesAfterConfirmation() async throws {
    let h = InMemoryHarness()
    try Disk.write(h.dir("both.tmpl"), Self.bothTemplate)
    let mappings = [
      Mapping(name: "both", kind: .template, prefixes: ["/a/", "/b/"], template: h.dir("both.tmpl"), dest: h.dir("both")),
    ]
    _ = try await h.etcd.txn(if: [], then: [.put("/a/x", "0"), .put("/b/x", "0")])
    let agent = try h.agent(mappings)
    _ = try await agent.sync()
    let daemon = Daemon(agent)
    #expect(await eventually { h.etcd.watchCount == 2 })
    // /b/ stays idle while /a/ changes: each change confirms /b/ by a read.
    for round in 1...5 { _ = try await h.etcd.txn(if: [], then: [.put("/a/x", "\(round)")]) }
    let changed = h.etcd.revision
    #expect(await eventually { await daemon.agent.appliedRevision == changed })
    // History up to now is compacted, then the streams break and come back.
    _ = try await h.etcd.compact(changed)
    h.etcd.disconnectWatches()
    h.etcd.reconnectWatches()
    _ = try await h.etcd.txn(if: [], then: [.put("/b/x", "after")])
    let expected = try await Self.rendered(h, at: h.etcd.revision)
    #expect(await eventually { Bytes.read(h.dir("both")) == expected })
    #expect(!h.logged("watch compacted; re-read everything"), "the idle range resumed from before the compaction")
    #expect(await daemon.stop() == nil)
  }

  @Test("etcd.watch: covering watches one range over every mapping, and also renders whole revisions")
  func coveringWatch() async throws {
    let h = InMemoryHarness()
    try Disk.write(h.dir("both.tmpl"), Self.bothTemplate)
    let mappings = [
      Mapping(name: "both", kind: .template, prefixes: ["/a/", "/b/"], template: h.dir("both.tmpl"), dest: h.dir("both")),
    ]
    var configuration = h.configuration(mappings)
    configuration.etcd.watch = .covering
    let agent = try Agent(configuration: configuration, store: h.etcd, logger: h.logger)
    _ = try await agent.sync()
    let daemon = Daemon(agent)
    #expect(await eventually { h.etcd.watchCount == 1 })
    _ = try await h.etcd.txn(if: [], then: [.put("/a/x", "1"), .put("/b/x", "1"), .put("/a0", "between")])
    let expected = try await Self.rendered(h, at: h.etcd.revision)
    #expect(await eventually { Bytes.read(h.dir("both")) == expected })
    #expect(!h.etcd.requests.contains { if case .range(_, let options) = $0 { options.minModRevision > 0 } else { false } },
            "one watcher: no range is ever behind another")
    #expect(await daemon.stop() == nil)
  }

  @Test("a watch that falls behind a compaction re-lists everything and applies the deletes")
  func compactionRelist() async throws {
    let h = InMemoryHarness()
    try Disk.write(h.dir("list.tmpl"), "{{ range gets \"/c/*\" }}{{ base .Key }}={{ .Value }}\n{{ end }}")
    let mappings = [
      Mapping(name: "flat", kind: .tree, prefixes: ["/c/"], dest: h.dir("flat"), swap: .inPlace),
      Mapping(name: "swap", kind: .tree, prefixes: ["/c/"], dest: h.dir("swap")),
      Mapping(name: "list", kind: .template, prefixes: ["/c/"], template: h.dir("list.tmpl"), dest: h.dir("list")),
    ]
    for key in ["a", "b", "c"] { try await h.etcd.put("/c/\(key)", key) }
    let daemon = Daemon(try h.agent(mappings))
    let start = h.etcd.revision
    #expect(await eventually { (try? await h.matches(h.dir("flat"), "/c/", at: start)) == true })

    // The watch's stream breaks; meanwhile keys are deleted, changed and created, and the
    // history is compacted past all of it.
    // The daemon's watch exists (it starts after the first sync): it is the one that breaks.
    #expect(await eventually { h.etcd.watchCount == 1 })
    h.etcd.disconnectWatches()
    try await h.etcd.delete("/c/a")
    try await h.etcd.put("/c/b", "bb")
    try await h.etcd.put("/c/d", "d")
    try await h.etcd.delete("/c/d")
    let revision = try await h.etcd.put("/c/e", "e")
    try await h.etcd.compact(revision)
    let readsBefore = h.etcd.requests.filter(Self.isSnapshotRead).count
    h.etcd.reconnectWatches()

    let converged = await eventually {
      guard Disk.read(h.dir("list")) == "b=bb\nc=c\ne=e\n" else { return false }
      return await h.converged([(h.dir("flat"), "/c/"), (h.dir("swap"), "/c/")], at: revision)
    }
    #expect(converged, "flat: \(Disk.names(h.dir("flat")))")
    #expect(!Disk.exists(h.dir("flat/a")) && !Disk.exists(h.dir("swap/a")), "the delete the watch never delivered is applied")
    #expect(h.logged("watch compacted; re-read everything"))
    #expect(h.etcd.requests.filter(Self.isSnapshotRead).count > readsBefore, "the snapshot was read again")
    #expect(await daemon.agent.appliedRevision == revision)

    // The watch goes on from the re-read revision.
    let next = try await h.etcd.put("/c/f", "f")
    #expect(await eventually { await h.converged([(h.dir("flat"), "/c/"), (h.dir("swap"), "/c/")], at: next) })
    #expect(await daemon.stop() == nil)
  }

  @Test("a re-read after compaction that finds etcd unavailable is retried until it succeeds")
  func compactionRelistRetried() async throws {
    let h = InMemoryHarness()
    let mappings = [Mapping(name: "flat", kind: .tree, prefixes: ["/c/"], dest: h.dir("flat"), swap: .inPlace)]
    for key in ["a", "b"] { try await h.etcd.put("/c/\(key)", key) }
    let daemon = Daemon(try h.agent(mappings))
    let start = h.etcd.revision
    #expect(await eventually { (try? await h.matches(h.dir("flat"), "/c/", at: start)) == true })

    // The daemon's watch exists (it starts after the first sync): it is the one that breaks.
    #expect(await eventually { h.etcd.watchCount == 1 })
    h.etcd.disconnectWatches()
    try await h.etcd.delete("/c/a")
    let revision = try await h.etcd.put("/c/b", "bb")
    try await h.etcd.compact(revision)
    // The next two snapshot reads fail, as while etcd is unreachable.
    h.etcd.failNext(2, when: Self.isSnapshotRead)
    h.etcd.reconnectWatches()

    #expect(await eventually { (try? await h.matches(h.dir("flat"), "/c/", at: revision)) == true })
    #expect(h.logged("re-read after compaction failed"))
    #expect(await daemon.agent.appliedRevision == revision)
    #expect(!daemon.hasEnded, "an unreachable etcd does not end the daemon")
    #expect(await daemon.stop() == nil)
  }

  /// A write-back tree of `/w/` into `w`.
  static func writeBack(_ h: InMemoryHarness) -> [Mapping] {
    [Mapping(name: "w", kind: .tree, prefixes: ["/w/"], dest: h.dir("w"), writeBack: true, conflict: .etcdWins)]
  }

  @Test("write-back conflict: the CAS loses, etcd's value stays and reaches the file, the local edit is kept beside it")
  func writeBackConflict() async throws {
    let h = InMemoryHarness()
    try await h.etcd.put("/w/k", "etcd 1")
    try await h.etcd.put("/w/other", "o")
    let daemon = Daemon(try h.agent(Self.writeBack(h)))
    let start = h.etcd.revision
    #expect(await eventually { (try? await h.matches(h.dir("w"), "/w/", at: start)) == true })

    // etcd moves on while the watch cannot tell the agent; then the file is edited locally.
    // The daemon's watch exists (it starts after the first sync): it is the one that breaks.
    #expect(await eventually { h.etcd.watchCount == 1 })
    h.etcd.disconnectWatches()
    let winner = try await h.etcd.put("/w/k", "etcd 2")
    try Disk.write(h.dir("w/k"), "local edit")
    let copy = h.dir("w/k.conflict.\(winner)")
    #expect(await eventually { Disk.read(copy) == "local edit" }, "files: \(Disk.names(h.dir("w")))")
    // The push lost: etcd keeps its value, and the file is not rendered over before the
    // winner's revision has come through the watch.
    #expect(try h.etcd.contents(.key("/w/k")).kvs.first?.value == Bytes.utf8("etcd 2"))
    #expect(Disk.read(h.dir("w/k")) == "local edit")

    h.etcd.reconnectWatches()
    #expect(await eventually { Disk.read(h.dir("w/k")) == "etcd 2" })
    let applied = await daemon.agent.appliedRevision
    #expect(applied == h.etcd.revision && applied == winner, "nothing was pushed")
    #expect(try await h.matches(h.dir("w"), "/w/", at: applied, except: [Array("k.conflict.\(winner)".utf8)]))
    #expect(Disk.read(copy) == "local edit")
    let stats = await daemon.agent.writeBackStats
    #expect(stats.conflicts == 1 && stats.pushed == 0)
    #expect(await daemon.stop() == nil)
  }

  @Test("a local edit pushed while etcd is unavailable is retried with the same compare and lands")
  func writeBackRetried() async throws {
    let h = InMemoryHarness()
    try await h.etcd.put("/w/k", "v1")
    let daemon = Daemon(try h.agent(Self.writeBack(h)))
    let start = h.etcd.revision
    #expect(await eventually { (try? await h.matches(h.dir("w"), "/w/", at: start)) == true })

    let txnsBefore = h.etcd.requests.filter(Self.isTxn).count
    h.etcd.failNext(1, when: Self.isTxn)
    try Disk.write(h.dir("w/k"), "edited")
    #expect(await eventually { (try? h.etcd.contents(.key("/w/k")).kvs.first?.value) == Bytes.utf8("edited") })
    #expect(h.etcd.requests.filter(Self.isTxn).count >= txnsBefore + 2, "the failed push was tried again")
    let kv = try #require(try h.etcd.contents(.key("/w/k")).kvs.first)
    #expect(kv.version == 2 && kv.createRevision == start, "one put over v1, compared with its revision")
    #expect(await eventually { await daemon.agent.appliedRevision == h.etcd.revision })
    #expect(await eventually { await h.converged([(h.dir("w"), "/w/")], at: h.etcd.revision) })
    let stats = await daemon.agent.writeBackStats
    #expect(stats.pushed == 1 && stats.conflicts == 0)
    #expect(await daemon.stop() == nil)
  }

  @Test("a watch etcd ends for good (permission denied) ends run() with its error")
  func watchEndsForGood() async throws {
    let h = InMemoryHarness()
    try await h.etcd.put("/c/a", "a")
    let daemon = Daemon(try h.agent([Mapping(name: "flat", kind: .tree, prefixes: ["/c/"], dest: h.dir("flat"), swap: .inPlace)]))
    #expect(await eventually { Disk.read(h.dir("flat/a")) == "a" && h.etcd.watchCount == 1 })
    h.etcd.endWatches(with: EtcdError(.permissionDenied, "etcdserver: permission denied"))
    #expect(await eventually { daemon.hasEnded })
    let error = await daemon.stop()
    #expect((error as? EtcdError)?.code == .permissionDenied)
  }

  @Test("watch responses that made no sense are counted in etcsync_watch_protocol_violations_total, with a warning")
  func watchProtocolViolationsMetric() async throws {
    let h = InMemoryHarness()
    try await h.etcd.put("/v/a", "a")
    let mappings = [Mapping(name: "flat", kind: .tree, prefixes: ["/v/"], dest: h.dir("flat"), swap: .inPlace)]
    let registry = PrometheusCollectorRegistry()
    let metrics = AgentMetrics(mappings: ["flat"], factory: PrometheusMetricsFactory(registry: registry))
    let daemon = Daemon(try Agent(configuration: h.configuration(mappings), store: h.etcd, logger: h.logger, metrics: metrics))
    func counted() -> String? {
      String(decoding: registry.emitToBuffer(), as: UTF8.self).split(separator: "\n")
        .first { $0.hasPrefix("etcsync_watch_protocol_violations_total ") }.map(String.init)
    }
    #expect(await eventually { Disk.read(h.dir("flat/a")) == "a" })
    h.etcd.countWatchProtocolViolation()
    h.etcd.countWatchProtocolViolation()
    #expect(await eventually { counted() == "etcsync_watch_protocol_violations_total 2" }, "\(counted() ?? "-")")
    #expect(h.logged("etcd's watch stream sent responses that made no sense; it was re-created and resumed"))
    h.etcd.countWatchProtocolViolation()
    #expect(await eventually { counted() == "etcsync_watch_protocol_violations_total 3" }, "\(counted() ?? "-")")
    #expect(await daemon.stop() == nil)
  }
}
