@testable import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Logging
import Prometheus
import Templates
import Testing

/// Drift repair: files of mappings without write-back that are changed, deleted or replaced
/// locally while the daemon runs are put back to etcd's bytes at the applied revision.
/// Against a real etcd and real files; every comparison is byte for byte with what etcd holds
/// at the revision the agent reports applied.
@Suite("Drift repair", .serialized)
struct DriftRepairTests {
  static let restoredMessage = "file changed locally; etcd's content put back"

  /// An agent with a Prometheus registry of its own, running as the daemon.
  static func start(
    _ h: AgentHarness, _ mappings: [Mapping], interval: Duration = .zero
  ) throws -> (agent: Agent, daemon: Daemon, registry: PrometheusCollectorRegistry) {
    var configuration = h.configuration(mappings)
    configuration.driftCheckInterval = interval
    let registry = PrometheusCollectorRegistry()
    let metrics = AgentMetrics(mappings: mappings.map(\.name), factory: PrometheusMetricsFactory(registry: registry))
    let agent = try Agent(configuration: configuration, client: h.client, logger: h.logger, metrics: metrics)
    return (agent, Daemon(agent), registry)
  }

  /// The value of `key` at `revision`, from etcd.
  static func value(_ h: AgentHarness, _ key: String, at revision: Int64) async throws -> [UInt8]? {
    try await h.client.get(key, options: GetOptions(revision: revision)).kvs.first?.value
  }

  /// Rewrites the file in place (same inode, O_TRUNC): inotify reports one IN_CLOSE_WRITE.
  static func overwrite(_ path: String, _ text: String) {
    let fd = open(path, O_WRONLY | O_TRUNC)
    precondition(fd >= 0, "cannot open \(path)")
    _ = text.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
    close(fd)
  }

  /// Removes the tree at `path` while the agent may be re-creating files in it (a removal that
  /// meets a file created meanwhile fails with EPERM or ENOTEMPTY): tries again until one
  /// removal succeeds (the agent may re-create the tree right after it; that is the point).
  static func removeTree(_ path: String) async throws {
    let deadline = ContinuousClock.now + .seconds(30)
    while true {
      do { return try FileManager.default.removeItem(atPath: path) } catch {
        if ContinuousClock.now > deadline { throw error }
        try await Task.sleep(for: .milliseconds(10))
      }
    }
  }

  /// Writes over the start of the file through a descriptor left open: inotify reports only
  /// IN_MODIFY, which the watcher does not ask for, until the descriptor is closed.
  static func scribble(_ path: String, _ text: String) -> Int32 {
    let fd = open(path, O_WRONLY)
    precondition(fd >= 0, "cannot open \(path)")
    _ = text.utf8CString.withUnsafeBufferPointer { pwrite(fd, $0.baseAddress, $0.count - 1, 0) }
    return fd
  }

  static func metric(_ registry: PrometheusCollectorRegistry) -> String {
    String(decoding: registry.emitToBuffer(), as: UTF8.self)
  }

  /// Whether the entry at `path` itself (not what a symlink leads to) is a regular file.
  static func isRegular(_ path: String) -> Bool {
    guard let info = Disk.lstat(path) else { return false }
    return info.st_mode & S_IFMT == S_IFREG
  }

  @Test("an edited, deleted or symlinked file, template or format is put back to etcd's bytes, logged and counted, without a reload")
  func singleFiles() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try Disk.write(h.dir("t.tmpl"), "{{ range gets \"/d/t/*\" }}{{ base .Key }}={{ .Value }}\n{{ end }}")
    try Disk.write(h.dir("decoy"), "decoy")
    let mappings = [
      Mapping(name: "motd", kind: .file, key: "/d/motd", dest: h.dir("out/motd"), mode: 0o640, reload: h.logCommand("motd")),
      Mapping(name: "tpl", kind: .template, prefixes: ["/d/t/"], template: h.dir("t.tmpl"), dest: h.dir("out/list"), reload: h.logCommand("tpl")),
      Mapping(name: "env", kind: .format, prefixes: ["/d/t/"], dest: h.dir("out/app.env"), format: .env),
    ]
    try await h.put("/d/motd", "hello\n")
    try await h.put("/d/t/a", "1")
    try await h.put("/d/t/b", "2")
    let (agent, daemon, registry) = try Self.start(h, mappings)
    #expect(await eventually { await agent.history.count >= 3 && h.count("motd") == 1 && h.count("tpl") == 1 })
    let applied = await agent.appliedRevision
    let a = try #require(try await Self.value(h, "/d/t/a", at: applied))
    let b = try #require(try await Self.value(h, "/d/t/b", at: applied))
    let motd = try #require(try await Self.value(h, "/d/motd", at: applied))
    let list = Bytes.utf8("a=") + a + Bytes.utf8("\nb=") + b + Bytes.utf8("\n")
    let env = Bytes.utf8("A=") + a + Bytes.utf8("\nB=") + b + Bytes.utf8("\n")
    #expect(Bytes.read(h.dir("out/motd")) == motd && Bytes.read(h.dir("out/list")) == list && Bytes.read(h.dir("out/app.env")) == env)

    // Edited in place.
    Self.overwrite(h.dir("out/motd"), "edited by hand\n")
    #expect(await eventually { Bytes.read(h.dir("out/motd")) == motd })
    #expect(Bytes.attributes(h.dir("out/motd"))?.mode == 0o640, "the mapping's mode, as written")
    // Deleted.
    #expect(unlink(h.dir("out/list")) == 0)
    #expect(await eventually { Bytes.read(h.dir("out/list")) == list })
    // Replaced by a symlink renamed over it (what `ln -sf` and editors' renames do): the link
    // is replaced, never followed.
    try Disk.symlink(h.dir("decoy"), at: h.dir("out/link"))
    #expect(rename(h.dir("out/link"), h.dir("out/app.env")) == 0)
    #expect(await eventually { Self.isRegular(h.dir("out/app.env")) && Bytes.read(h.dir("out/app.env")) == env })
    #expect(Disk.read(h.dir("decoy")) == "decoy", "the symlink's target is untouched")

    #expect(await agent.appliedRevision == applied, "nothing changed in etcd meanwhile: the bytes are those of the applied revision")
    // A file is back before its repair is logged and counted (the log line, then the counter).
    #expect(await eventually {
      h.logs.metadata(of: Self.restoredMessage).count >= 3
        && ["motd", "tpl", "env"].allSatisfy { Self.metric(registry).contains("etcsync_drift_repairs_total{mapping=\"\($0)\"} 1") }
    })
    let logged = h.logs.metadata(of: Self.restoredMessage)
    #expect(logged.map { $0["file.path"] ?? "" }.sorted() == [h.dir("out/app.env"), h.dir("out/list"), h.dir("out/motd")])
    #expect(Set(logged.map { $0["drift"] ?? "" }) == ["changed", "deleted", "replaced"])
    #expect(logged.allSatisfy { $0["etcd.revision"] == "\(applied)" })
    let text = Self.metric(registry)
    for name in ["motd", "tpl", "env"] {
      #expect(text.contains("etcsync_drift_repairs_total{mapping=\"\(name)\"} 1"), "\(name): \(text)")
    }

    // The restores ran no reload: the next change from etcd runs the second one of each.
    let revision = try await h.put("/d/motd", "bye\n")
    try await h.put("/d/t/a", "3")
    #expect(await eventually { h.count("motd") == 2 && h.count("tpl") == 2 })
    #expect(await agent.appliedRevision >= revision)
    #expect(Bytes.read(h.dir("out/motd")) == (try await Self.value(h, "/d/motd", at: await agent.appliedRevision)))
    #expect(await daemon.stop() == nil)
    #expect(h.count("motd") == 2 && h.count("tpl") == 2, "no reload beyond the two etcd changes'")
    #expect(Disk.temporaryFiles(h.dir("out")).isEmpty)
  }

  @Test("a tree's deleted or edited file is recreated, in place and swapped; an extra file in an in-place tree stays")
  func trees() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let mappings = [
      Mapping(name: "flat", kind: .tree, prefixes: ["/t/"], dest: h.dir("flat"), swap: .inPlace),
      Mapping(name: "swap", kind: .tree, prefixes: ["/t/"], dest: h.dir("swap")),
    ]
    try await h.put("/t/a", "alpha")
    try await h.put("/t/sub/b", "beta")
    let (agent, daemon, registry) = try Self.start(h, mappings)
    #expect(await eventually { await agent.history.count >= 2 })
    let applied = await agent.appliedRevision
    let a = try #require(try await Self.value(h, "/t/a", at: applied))
    let b = try #require(try await Self.value(h, "/t/sub/b", at: applied))

    // In place: a deleted file comes back; a file nobody wrote stays (the tree sync only ever
    // deletes files of keys it wrote that etcd deleted).
    try Disk.write(h.dir("flat/extra"), "mine")
    #expect(unlink(h.dir("flat/sub/b")) == 0)
    #expect(await eventually { Bytes.read(h.dir("flat/sub/b")) == b })
    Self.overwrite(h.dir("flat/a"), "tampered")
    #expect(await eventually { Bytes.read(h.dir("flat/a")) == a })
    #expect(Disk.read(h.dir("flat/extra")) == "mine")

    // Swapped: the top-level symlink deleted, and a file edited through its link (the
    // write lands in the revision directory `..data` points at).
    let before = Disk.link(h.dir("swap/..data"))
    #expect(unlink(h.dir("swap/a")) == 0)
    #expect(await eventually { Disk.link(h.dir("swap/a")) == "..data/a" && Bytes.read(h.dir("swap/a")) == a })
    // The link is back before the repair's publish ends (the new `..data` and the previous
    // revision directory's removal come after it): wait for the repair to be logged, or the
    // next edit may land in the revision directory being retired.
    #expect(await eventually { h.logs.metadata(of: Self.restoredMessage).contains { $0["file.path"] == h.dir("swap/a") } })
    Self.overwrite(h.dir("swap/sub/b"), "tampered")
    // `..data` moves before the previous revision directory is removed and the repair logged.
    #expect(await eventually {
      Bytes.read(h.dir("swap/sub/b")) == b && h.logs.metadata(of: Self.restoredMessage).contains { $0["file.path"] == h.dir("swap/sub/b") }
    })
    #expect(Disk.link(h.dir("swap/..data")) != before, "a new revision directory was published")
    #expect(Disk.names(h.dir("swap")).filter { $0.hasPrefix("..") && $0 != "..data" }.count == 1, "the tampered revision is gone")

    #expect(await agent.appliedRevision == applied)
    // The counter moves just after the repair's log line.
    #expect(await eventually { Self.metric(registry).contains("etcsync_drift_repairs_total{mapping=\"swap\"} 2") })
    let logged = h.logs.metadata(of: Self.restoredMessage).map { $0["file.path"] ?? "" }
    #expect(Set(logged) == [h.dir("flat/sub/b"), h.dir("flat/a"), h.dir("swap/a"), h.dir("swap/sub/b")])
    let text = Self.metric(registry)
    #expect(text.contains("etcsync_drift_repairs_total{mapping=\"flat\"} 2") && text.contains("etcsync_drift_repairs_total{mapping=\"swap\"} 2"), "\(text)")
    #expect(await daemon.stop() == nil)
  }

  @Test("without the periodic check, a change inotify does not report waits; closing the file reports it")
  func inotifyOnly() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let mappings = [
      Mapping(name: "motd", kind: .file, key: "/p/motd", dest: h.dir("motd")),
      Mapping(name: "other", kind: .file, key: "/p/other", dest: h.dir("other")),
    ]
    try await h.put("/p/motd", "etcd's motd")
    try await h.put("/p/other", "1")
    let (agent, daemon, _) = try Self.start(h, mappings, interval: .zero)
    #expect(await eventually { await agent.history.count >= 2 })
    let motd = try #require(try await Self.value(h, "/p/motd", at: await agent.appliedRevision))
    // Written through a descriptor left open: only IN_MODIFY, which is not watched.
    let fd = Self.scribble(h.dir("motd"), "XXXXX")
    let edited = Bytes.read(h.dir("motd"))
    #expect(edited != motd)
    // The daemon's loop goes on (it applies a later change of another mapping) and leaves
    // the unreported change alone: nothing but inotify looks with the interval at 0.
    try await h.put("/p/other", "2")
    #expect(await eventually { Disk.read(h.dir("other")) == "2" })
    #expect(Bytes.read(h.dir("motd")) == edited)
    // Closing it reports IN_CLOSE_WRITE: put back.
    close(fd)
    #expect(await eventually { Bytes.read(h.dir("motd")) == motd })
    #expect(await daemon.stop() == nil)
  }

  @Test("the periodic check puts back a change inotify does not report")
  func periodicCheck() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let mappings = [Mapping(name: "motd", kind: .file, key: "/p/motd", dest: h.dir("motd"))]
    try await h.put("/p/motd", "etcd's motd")
    let (agent, daemon, registry) = try Self.start(h, mappings, interval: .milliseconds(200))
    #expect(await eventually { await agent.history.count >= 1 })
    let motd = try #require(try await Self.value(h, "/p/motd", at: await agent.appliedRevision))
    let fd = Self.scribble(h.dir("motd"), "XXXXX")
    defer { close(fd) }
    #expect(Bytes.read(h.dir("motd")) != motd)
    // The descriptor is still open, so inotify has reported nothing: the hash check found it.
    #expect(await eventually { Bytes.read(h.dir("motd")) == motd })
    // Counted just after the repair's write (and its log line): waited for, not read at once.
    #expect(await eventually { Self.metric(registry).contains("etcsync_drift_repairs_total{mapping=\"motd\"} 1") })
    #expect(await daemon.stop() == nil)
  }

  @Test("a repair that fails reports the mapping as failing and holds its revision, until its file is etcd's again (by itself or by a repair)")
  func failedRepairIsReported() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("motd")
    let mappings = [Mapping(name: "motd", kind: .file, key: "/p/motd", dest: dest),
                    Mapping(name: "other", kind: .file, key: "/p/other", dest: h.dir("other"))]
    try await h.put("/p/motd", "etcd's motd")
    let initial = try await h.put("/p/other", "1")
    let (agent, daemon, _) = try Self.start(h, mappings, interval: .milliseconds(200))
    #expect(await eventually { await agent.progress.appliedRevision >= initial && Disk.read(dest) == "etcd's motd" })
    #expect(await agent.progress.errors.isEmpty)
    // A file bind-mounted over it: it reads otherwise, and a rename onto it fails (EBUSY).
    try Disk.write(h.dir("mounted"), "mounted")
    try RetryBackoffTests.mount(["--bind", h.dir("mounted"), dest])
    var mounted = true
    defer { if mounted { runTool(["umount", "-l", dest]) } }
    #expect(await eventually { await agent.progress.errors["motd"] == MappingFailure.writeFailed.rawValue })
    #expect(h.messages(atLeast: .error).contains("file changed locally and could not be put back"))
    // Another mapping's change applies, but the agent does not claim its revision: motd's
    // file is not etcd's.
    let later = try await h.put("/p/other", "2")
    #expect(await eventually { await agent.history.contains { $0.mapping == "other" && $0.revision >= later } })
    // Several turns of the daemon's loop (a periodic check every 200 ms) after that apply:
    // had it published the revision, it would have by now.
    try await Task.sleep(for: .milliseconds(600))
    #expect(Disk.read(h.dir("other")) == "2")
    #expect(await agent.progress.appliedRevision < later)
    #expect(await agent.progress.errors["motd"] != nil, "checked again and still failing")

    // The mount gone, the file under it is etcd's again: the next whole check says so.
    runTool(["umount", dest])
    mounted = false
    #expect(await eventually { await agent.progress.errors.isEmpty })
    let motd = try #require(try await Self.value(h, "/p/motd", at: later))
    #expect(Bytes.read(dest) == motd)
    #expect(await eventually { await agent.progress.appliedRevision >= later })
    // Said by the check that found the file etcd's again, or by a repair that was under way
    // when the mount went (its rename then succeeded).
    let ended = h.messages(atLeast: .notice)
    #expect(ended.contains("local files hold etcd's content again") || ended.contains(Self.restoredMessage), "\(ended)")

    // Failing again, and the file under the mount edited meanwhile (through a descriptor
    // opened before the mount): once the mount is gone the file is still wrong, so only the
    // repair that puts it back ends the failure.
    let underneath = open(dest, O_WRONLY)
    try #require(underneath >= 0)
    defer { close(underneath) }
    try RetryBackoffTests.mount(["--bind", h.dir("mounted"), dest])
    mounted = true
    #expect(await eventually { await agent.progress.errors["motd"] == MappingFailure.writeFailed.rawValue })
    ftruncate(underneath, 0)
    _ = "edited".utf8CString.withUnsafeBufferPointer { pwrite(underneath, $0.baseAddress, $0.count - 1, 0) }
    let repairsBefore = h.messages(atLeast: .warning).filter { $0 == Self.restoredMessage }.count
    runTool(["umount", dest])
    mounted = false
    #expect(await eventually { await agent.progress.errors.isEmpty && Bytes.read(dest) == motd })
    #expect(h.messages(atLeast: .warning).filter { $0 == Self.restoredMessage }.count == repairsBefore + 1)
    #expect(await daemon.stop() == nil)
  }

  @Test("a failed reload's error, replaced by a failed repair's, comes back when the repair's ends")
  func failedRepairKeepsAFailedReload() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("motd")
    let marker = h.dir("reload-fails")
    try Disk.write(marker, "")
    let mappings = [Mapping(name: "motd", kind: .file, key: "/p/motd", dest: dest, reload: ["sh", "-c", "test ! -e '\(marker)'"])]
    try await h.put("/p/motd", "etcd's motd")
    let (agent, daemon, _) = try Self.start(h, mappings, interval: .milliseconds(200))
    #expect(await eventually { await agent.progress.errors["motd"] == MappingFailure.reloadFailed.rawValue })
    try Disk.write(h.dir("mounted"), "mounted")
    try RetryBackoffTests.mount(["--bind", h.dir("mounted"), dest])
    var mounted = true
    defer { if mounted { runTool(["umount", "-l", dest]) } }
    #expect(await eventually { await agent.progress.errors["motd"] == MappingFailure.writeFailed.rawValue })
    runTool(["umount", dest])
    mounted = false
    // Found etcd's again by a check, or put back by a repair under way when the mount went.
    #expect(await eventually {
      let messages = h.messages(atLeast: .notice)
      return messages.contains("local files hold etcd's content again") || messages.contains(Self.restoredMessage)
    })
    // The reload that failed is still owed: the mapping still fails, and says why.
    #expect(await agent.progress.errors["motd"] == MappingFailure.reloadFailed.rawValue)
    #expect(await daemon.stop() == nil)
  }

  @Test("repairDrift: false leaves a local edit alone; a write-back mapping pushes it instead")
  func optOut() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    var keep = Mapping(name: "keep", kind: .file, key: "/o/keep", dest: h.dir("out/keep"))
    keep.repairDrift = false
    let mappings = [
      keep,
      Mapping(name: "fix", kind: .file, key: "/o/fix", dest: h.dir("out/fix")),
      Mapping(name: "wb", kind: .file, key: "/o/wb", dest: h.dir("out/wb"), writeBack: true),
    ]
    try await h.put("/o/keep", "keep")
    try await h.put("/o/fix", "fix")
    try await h.put("/o/wb", "wb")
    let (agent, daemon, registry) = try Self.start(h, mappings, interval: .milliseconds(200))
    #expect(await eventually { await agent.history.count >= 3 })
    Self.overwrite(h.dir("out/keep"), "edited keep")
    Self.overwrite(h.dir("out/wb"), "edited wb")
    // A change only the periodic check finds, made after the others: once it is put back, a
    // periodic pass has run after the edits (and their inotify events were handled before).
    let fd = Self.scribble(h.dir("out/fix"), "XXX")
    defer { close(fd) }
    #expect(await eventually { Disk.read(h.dir("out/fix")) == "fix" })
    #expect(await eventually { (try? await h.client.get("/o/wb").kvs.first?.value) == Bytes.utf8("edited wb") })
    #expect(Disk.read(h.dir("out/keep")) == "edited keep")
    #expect(Disk.read(h.dir("out/wb")) == "edited wb")
    let text = Self.metric(registry)
    #expect(!text.contains("etcsync_drift_repairs_total{mapping=\"keep\"} 1") && !text.contains("etcsync_drift_repairs_total{mapping=\"wb\"} 1"))
    #expect(Set(h.logs.metadata(of: Self.restoredMessage).map { $0["mapping.name"] ?? "" }) == ["fix"])
    #expect(await daemon.stop() == nil)
  }

  /// The `drift.checked` of each "local files checked" debug record of mapping `name`.
  static func checks(_ h: AgentHarness, _ name: String) -> [Int] {
    h.logs.metadata(of: "local files checked").filter { $0["mapping.name"] == name }.compactMap { Int($0["drift.checked"] ?? "") }
  }

  @Test("a swapped tree's own publish is not checked again: only the files a later edit touches are read")
  func ownPublishNotChecked() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let mappings = [Mapping(name: "swap", kind: .tree, prefixes: ["/s/"], dest: h.dir("swap"))]
    for index in 0..<40 { try await h.put("/s/d\(index % 4)/k\(index)", "v\(index)") }
    let (agent, daemon, _) = try Self.start(h, mappings)
    #expect(await eventually { await agent.history.count >= 1 })
    // The check at the start reads every file once.
    #expect(await eventually { Self.checks(h, "swap") == [40] })
    let before = Disk.link(h.dir("swap/..data"))
    // An etcd change publishes a new revision directory: its 40 files are all reported by
    // inotify, and `..data` moves to it.
    try await h.put("/s/d0/k0", "new")
    #expect(await eventually { Disk.read(h.dir("swap/d0/k0")) == "new" && Disk.link(h.dir("swap/..data")) != before })
    // An edit made after the publish: inotify's queue is ordered, so once its repair is
    // logged, every event of the publish has been handled before it.
    Self.overwrite(h.dir("swap/d1/k1"), "tampered")
    #expect(await eventually { h.logs.metadata(of: Self.restoredMessage).contains { $0["file.path"] == h.dir("swap/d1/k1") } })
    #expect(Disk.read(h.dir("swap/d1/k1")) == "v1")
    let checks = Self.checks(h, "swap")
    #expect(checks.first == 40 && checks.dropFirst().allSatisfy { $0 <= 1 }, "no whole-tree check after the publish: \(checks)")
    #expect(await daemon.stop() == nil)
  }

  @Test("a change in a revision that was live when it came is a candidate in the current one (a publish links unchanged files); ..data_tmp is not")
  func changeInReplacedRevisionIsCandidate() async throws {
    let dir = TemporaryDirectory()
    let mapping = Mapping(name: "swap", kind: .tree, prefixes: ["/s/"], dest: dir("swap"))
    let runner = try MappingRunner(mapping: mapping, commandTimeout: .seconds(5), logger: Logger(label: "test"))
    let swap = TreeSwap(root: dir("swap"))
    let file = DesiredFile(bytes: Array("1".utf8), attributes: FileAttributes())
    try await swap.publish(["a": file, "b/c": file], revision: 1)
    let replaced = try #require(try swap.currentDirectory())
    try await swap.publish(["a": file, "b/c": DesiredFile(bytes: Array("2".utf8), attributes: FileAttributes())], revision: 2)
    let current = try #require(try swap.currentDirectory())
    #expect(current != replaced)
    let recorded: [ExactString: ContentHash] = ["a": ContentHash(of: Array("1".utf8)), "b/c": ContentHash(of: Array("2".utf8))]
    #expect(runner.driftCandidates([ExactString(replaced + "/a")], recorded: recorded) == ["a"])
    #expect(runner.driftCandidates([ExactString(current + "/b/c")], recorded: recorded) == ["b/c"])
    #expect(runner.driftCandidates([ExactString("..data_tmp/a")], recorded: recorded) == [])
  }

  @Test("a file rewritten again and again is put back each time, spaced out after a burst, with one warning")
  func repairsAreSpacedOut() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let mappings = [Mapping(name: "motd", kind: .file, key: "/r/motd", dest: h.dir("motd"))]
    try await h.put("/r/motd", "etcd's motd")
    let (agent, daemon, registry) = try Self.start(h, mappings)
    #expect(await eventually { await agent.history.count >= 1 })
    let spaced = "files keep changing locally; their repairs are spaced out"
    for round in 1...(DriftRepairLimit.burst + 2) {
      Self.overwrite(h.dir("motd"), "edit \(round)")
      #expect(await eventually { Disk.read(h.dir("motd")) == "etcd's motd" && h.logs.metadata(of: Self.restoredMessage).count == round })
      // Logged in the same step as the repair, just after it.
      if round > DriftRepairLimit.burst { #expect(await eventually { !h.logs.metadata(of: spaced).isEmpty }) }
      let warnings = h.logs.metadata(of: spaced)
      #expect(warnings.count == (round > DriftRepairLimit.burst ? 1 : 0), "round \(round): \(warnings)")
    }
    #expect(h.logs.metadata(of: spaced).first?["mapping.name"] == "motd")
    #expect(await eventually { Self.metric(registry).contains("etcsync_drift_repairs_total{mapping=\"motd\"} \(DriftRepairLimit.burst + 2)") })
    #expect(await daemon.stop() == nil)
  }

  @Test("..data re-pointed elsewhere is put back; so is a revision directory of another name")
  func dataRetargeted() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let mappings = [Mapping(name: "swap", kind: .tree, prefixes: ["/t/"], dest: h.dir("swap"))]
    try await h.put("/t/a", "alpha")
    try await h.put("/t/sub/b", "beta")
    let (agent, daemon, _) = try Self.start(h, mappings)
    #expect(await eventually { await agent.history.count >= 1 })
    for (round, planted) in ["..planted", "..1.abcdef"].enumerated() {
      try Disk.write(h.dir("swap/\(planted)/a"), "planted a")
      try Disk.write(h.dir("swap/\(planted)/sub/b"), "planted b")
      try Disk.symlink(planted, at: h.dir("swap/..retarget"))
      #expect(rename(h.dir("swap/..retarget"), h.dir("swap/..data")) == 0)
      #expect(await eventually {
        Disk.link(h.dir("swap/..data")) != planted && Disk.read(h.dir("swap/a")) == "alpha" && Disk.read(h.dir("swap/sub/b")) == "beta"
          && h.logs.metadata(of: Self.restoredMessage).count == 2 * (round + 1)
      })
    }
    #expect(Set(h.logs.metadata(of: Self.restoredMessage).map { $0["file.path"] ?? "" }) == [h.dir("swap/a"), h.dir("swap/sub/b")])
    #expect(await daemon.stop() == nil)
  }

  @Test("a watched directory deleted or moved away is watched again once the repair recreates it")
  func watchedDirectoryComesBack() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let mappings = [
      Mapping(name: "motd", kind: .file, key: "/w/motd", dest: h.dir("out/motd")),
      Mapping(name: "flat", kind: .tree, prefixes: ["/w/t/"], dest: h.dir("flat"), swap: .inPlace),
    ]
    try await h.put("/w/motd", "etcd's motd")
    try await h.put("/w/t/a", "alpha")
    let (agent, daemon, _) = try Self.start(h, mappings)
    #expect(await eventually { await agent.history.count >= 2 })
    // Deleted, then moved away: each time the files come back, and an edit after that is
    // still seen (the periodic check is off, so only a watcher can see it).
    try await Self.removeTree(h.dir("out"))
    try await Self.removeTree(h.dir("flat"))
    #expect(await eventually { Disk.read(h.dir("out/motd")) == "etcd's motd" && Disk.read(h.dir("flat/a")) == "alpha" })
    #expect(await eventually { h.logs.metadata(of: "watched directory is back; watching it again").count >= 2 })
    Self.overwrite(h.dir("out/motd"), "edited")
    Self.overwrite(h.dir("flat/a"), "edited")
    #expect(await eventually { Disk.read(h.dir("out/motd")) == "etcd's motd" && Disk.read(h.dir("flat/a")) == "alpha" })
    #expect(rename(h.dir("out"), h.dir("out.moved")) == 0)
    #expect(await eventually { Disk.read(h.dir("out/motd")) == "etcd's motd" })
    #expect(await eventually { h.logs.metadata(of: "watched directory is back; watching it again").count >= 3 })
    Self.overwrite(h.dir("out/motd"), "edited again")
    #expect(await eventually { Disk.read(h.dir("out/motd")) == "etcd's motd" })
    #expect(await daemon.stop() == nil)
  }

  @Test("an in-place tree with more directories than the watch limit is left to the periodic check, with a warning")
  func watchLimit() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let mappings = [Mapping(name: "flat", kind: .tree, prefixes: ["/l/"], dest: h.dir("flat"), swap: .inPlace)]
    for directory in ["a", "b", "c"] { try await h.put("/l/\(directory)/f", directory) }
    var configuration = h.configuration(mappings)
    configuration.driftCheckInterval = .milliseconds(300)
    configuration.driftWatchLimit = 3
    let agent = try Agent(configuration: configuration, client: h.client, logger: h.logger)
    let daemon = Daemon(agent)
    #expect(await eventually { await agent.history.count >= 1 })
    let message = "local changes cannot be watched; drift is repaired by the periodic check only"
    #expect(await eventually { !h.logs.metadata(of: message).isEmpty })
    let warnings = h.logs.metadata(of: message)
    #expect(warnings.count == 1)
    #expect(warnings.first?["mapping.name"] == "flat")
    #expect(warnings.first?["error"]?.contains("limit of 3 inotify watches") == true, "\(warnings)")
    Self.overwrite(h.dir("flat/b/f"), "edited")
    #expect(await eventually { Disk.read(h.dir("flat/b/f")) == "b" })
    #expect(await daemon.stop() == nil)
  }

  // MARK: Configuration

  @Test("driftCheckInterval and repairDrift in the configuration file")
  func configuration() throws {
    let base = "mappings:\n  - {name: a, key: /a, dest: /srv/a}\n"
    #expect(try loadConfiguration(base).driftCheckInterval == .seconds(60))
    #expect(try loadConfiguration("driftCheckInterval: 0\n" + base).driftCheckInterval == .zero)
    #expect(try loadConfiguration("driftCheckInterval: 5m\n" + base).driftCheckInterval == .seconds(300))
    #expect(try loadConfiguration(base).mappings[0].repairDrift)
    #expect(try !loadConfiguration("mappings:\n  - {name: a, key: /a, dest: /srv/a, repairDrift: false}\n").mappings[0].repairDrift)
    let short = try #require(loadConfigurationError(base + "driftCheckInterval: 500ms\n"))
    #expect("\(short)".hasPrefix("etcsync.yaml:3:"), "\(short)")
    #expect(short.field == "driftCheckInterval")
    let negative = try #require(loadConfigurationError("driftCheckInterval: -1s\n" + base))
    #expect("\(negative)".hasPrefix("etcsync.yaml:1:"), "\(negative)")
    let writeBack = try #require(loadConfigurationError(
      "mappings:\n  - name: a\n    key: /a\n    dest: /srv/a\n    writeBack: true\n    repairDrift: true\n"))
    #expect("\(writeBack)".hasPrefix("etcsync.yaml:6:"), "\(writeBack)")
    #expect(writeBack.field == "mappings[0].repairDrift")
    // Turning repair off beside write-back says nothing new: accepted.
    #expect(try !loadConfiguration("mappings:\n  - {name: a, key: /a, dest: /srv/a, writeBack: true, repairDrift: false}\n").mappings[0].repairDrift)
  }
}
