import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Testing

/// `status` and "current through": agents that map other prefixes are current through a put
/// they never saw, LAG is 0 for idle, healthy agents, and nothing is claimed before the files
/// and the reload are done. Real `etcsync run` processes, real etcd.
@Suite("Current through: status --wait-revision and LAG", .serialized)
struct CurrentThroughTests {
  static let prefix = "/etcsync/agents"

  /// A configuration for agent `name`: a tree of `prefix` into its own directory, plus `extra`
  /// mapping lines.
  static func configFile(_ h: AgentHarness, name: String, prefix: String, extra: String = "") throws -> String {
    let path = h.dir("\(name).yaml")
    try Disk.write(path, """
      etcd:
        endpoints: [\(h.server.endpoint)]
      state:
        dir: \(h.dir(name + ".state"))
      presence: {prefix: \(Self.prefix), name: \(name), ttl: 30s}
      mappings:
        - name: tree
          kind: tree
          prefix: \(prefix)
          dest: \(h.dir(name))
      \(extra)
      """)
    return path
  }

  static func start(_ h: AgentHarness, name: String, prefix: String, extra: String = "") throws -> EtcsyncProcess {
    try EtcsyncProcess(["run", "-c", try Self.configFile(h, name: name, prefix: prefix, extra: extra)], log: h.dir(name + ".log"))
  }

  static func record(_ h: AgentHarness, _ name: String) async -> PresenceRecord? {
    guard let kv = try? await h.client.get(Self.prefix + "/" + name).kvs.first else { return nil }
    return try? JSONDecoder().decode(PresenceRecord.self, from: Data(kv.value))
  }

  /// The table's rows by name: NAME HOST VERSION APPLIED CURRENT LAG …
  static func rows(_ output: String) -> [String: [String]] {
    var rows: [String: [String]] = [:]
    for line in output.split(separator: "\n") {
      let columns = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
      if let name = columns.first { rows[name] = columns }
    }
    return rows
  }

  @Test("after a SIGHUP that adds a failing mapping, the record forgets the old progress: --wait-revision does not pass")
  func sighupForgetsOldProgress() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let agent = try Self.start(h, name: "hup", prefix: "/h1/")
    defer { agent.kill9() }
    // A put the first configuration never maps: it is current through it all the same.
    let revision = try await h.put("/h2/x", "1")
    let endpoint = ["--endpoints", h.server.endpoint, "--prefix", Self.prefix]
    let before = try await EtcsyncProcess.run(["status", "--wait-revision", "\(revision)", "--min-agents", "1", "--timeout", "60s"] + endpoint)
    #expect(before.status == 0, "\(before.error)\n\(agent.log)")
    // The new configuration maps /h2/ through a template that cannot render (a missing key):
    // its files never hold revision `revision`, so the agent must not be reported current.
    try Disk.write(h.dir("hup.tmpl"), "{{getv \"/h2/absent\"}}\n")
    _ = try Self.configFile(h, name: "hup", prefix: "/h1/", extra: """
        - {name: h2, kind: template, prefixes: [/h2/], template: \(h.dir("hup.tmpl")), dest: \(h.dir("hup.out"))}
      """)
    agent.signal(SIGHUP)
    #expect(await eventually { await Self.record(h, "hup")?.mappings.contains("h2") == true }, "\(agent.log)")
    #expect(await eventually { await Self.record(h, "hup")?.lastError != nil }, "\(agent.log)")
    let record = await Self.record(h, "hup")
    #expect((record?.currentThrough ?? .max) < revision, "\(String(describing: record))")
    let after = try await EtcsyncProcess.run(["status", "--wait-revision", "\(revision)", "--min-agents", "1", "--timeout", "3s"] + endpoint)
    #expect(after.status == 1, "\(after.output)\n\(after.error)\n\(agent.log)")
  }

  @Test("two agents on disjoint prefixes: a put to one, and --wait-revision finds both current; idle agents show LAG 0")
  func disjointPrefixes() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let one = try Self.start(h, name: "one", prefix: "/p1/")
    defer { one.kill9() }
    let two = try Self.start(h, name: "two", prefix: "/p2/")
    defer { two.kill9() }
    #expect(await eventually {
      let first = await Self.record(h, "one")?.ready == true
      let second = await Self.record(h, "two")?.ready == true
      return first && second
    }, "\(one.log)\n\(two.log)")
    let endpoint = ["--endpoints", h.server.endpoint, "--prefix", Self.prefix]

    // A put to /p1/ only: "two" never sees it, and is current through it all the same.
    let revision = try await h.put("/p1/x", "1")
    let waited = try await EtcsyncProcess.run(["status", "--wait-revision", "\(revision)", "--min-agents", "2", "--timeout", "60s"] + endpoint)
    #expect(waited.status == 0, "\(waited.error)\n\(one.log)\n\(two.log)")
    let rows = Self.rows(waited.output)
    for name in ["one", "two"] {
      let columns = try #require(rows[name], "\(waited.output)")
      #expect(columns.count >= 6 && (Int64(columns[4]) ?? 0) >= revision, "CURRENT of \(name): \(waited.output)")
    }
    #expect(Disk.read(h.dir("one/x")) == "1", "current through the put means its file is written")
    #expect((await Self.record(h, "two")?.currentRevision ?? 0) >= revision)
    #expect((await Self.record(h, "two")?.appliedRevision ?? .max) < revision, "\"two\" applied nothing of it")

    // Idle and healthy: LAG 0, though other agents' presence puts moved the cluster's revision.
    _ = try await h.put("/elsewhere/y", "2")
    var table = ""
    #expect(await eventually {
      table = (try? await EtcsyncProcess.run(["status"] + endpoint))?.output ?? ""
      let rows = Self.rows(table)
      return rows["one"]?[5] == "0" && rows["two"]?[5] == "0"
    }, "\(table)")
    #expect(table.hasPrefix("NAME"), "\(table)")
    #expect(!table.contains(".progress"), "the request key is no agent: \(table)")
  }

  @Test("a mapping that fails holds its agent back: --wait-revision times out naming it")
  func failingMappingIsNotCurrent() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let extra = """
        - name: checked
          kind: tree
          prefix: /checked/
          dest: \(h.dir("checked"))
          check: [sh, -c, '! grep -rqx bad "$1"', sh, "{{.src}}"]
      """
    try await h.put("/checked/a", "good")
    let agent = try Self.start(h, name: "failing", prefix: "/q/", extra: extra)
    defer { agent.kill9() }
    // Current through its first sync, while every mapping is fine.
    #expect(await eventually { (await Self.record(h, "failing")?.currentRevision ?? 0) > 0 }, "\(agent.log)")
    try await h.put("/checked/a", "bad")
    #expect(await eventually { await Self.record(h, "failing")?.lastError == "mapping checked: check_failed" }, "\(agent.log)")
    let revision = try await h.put("/elsewhere/x", "1")
    let endpoint = ["--endpoints", h.server.endpoint, "--prefix", Self.prefix]
    let waited = try await EtcsyncProcess.run(["status", "--wait-revision", "\(revision)", "--timeout", "3s"] + endpoint)
    #expect(waited.status == 1, "\(waited.output)\n\(waited.error)")
    #expect(waited.error.contains("0 of 1 agent(s) are current through revision \(revision); lagging: failing (current through "),
            "\(waited.error)")
    let record = await Self.record(h, "failing")
    #expect((record?.currentRevision ?? 0) < revision, "\(String(describing: record))\n\(agent.log)")
  }

  @Test("current through a put only once its reload has run")
  func notBeforeTheReload() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let marker = h.dir("reloaded")
    let extra = """
        - name: slow
          kind: tree
          prefix: /slow/
          dest: \(h.dir("slowout"))
          reload: [sh, -c, 'sleep 2; echo done >> \(marker)']
      """
    let agent = try Self.start(h, name: "slow", prefix: "/q/", extra: extra)
    defer { agent.kill9() }
    // Current through its first sync: any reload of it has run.
    #expect(await eventually { (await Self.record(h, "slow")?.currentRevision ?? 0) > 0 }, "\(agent.log)")
    let before = (Disk.read(marker) ?? "").split(separator: "\n").count
    let revision = try await h.put("/slow/a", "1")
    let endpoint = ["--endpoints", h.server.endpoint, "--prefix", Self.prefix]
    let waited = try await EtcsyncProcess.run(["status", "--wait-revision", "\(revision)", "--timeout", "60s"] + endpoint)
    #expect(waited.status == 0, "\(waited.error)\n\(agent.log)")
    let after = (Disk.read(marker) ?? "").split(separator: "\n").count
    #expect(after > before, "the wait ended before the reload had run: \(before) → \(after)\n\(agent.log)")
    #expect(Disk.read(h.dir("slowout/a")) == "1")
  }

  @Test("a range read filtered by mod revision still counts every key of the range (what the check relies on)")
  func filteredReadCountsEveryKey() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/r/a", "1")
    try await h.put("/r/b", "2")
    let before = try await h.put("/other", "x")
    var options = GetOptions(revision: before, keysOnly: true)
    options.minModRevision = before + 1
    let unchanged = try await h.client.get(.prefix("/r/"), options: options)
    #expect(unchanged.kvs.isEmpty && unchanged.count == 2)
    _ = try await h.client.delete(.key("/r/a"))
    let after = try await h.put("/other", "y")
    options.revision = after
    let deleted = try await h.client.get(.prefix("/r/"), options: options)
    #expect(deleted.kvs.isEmpty && deleted.count == 1, "a delete shows as one key fewer")
    // The snapshot's count of a range follows etcd's rule.
    let space = KeySpace(revision: before, kvs: try await h.client.get(.prefix("/"), options: GetOptions(revision: before)).kvs)
    #expect(space.count(in: .prefix("/r/")) == 2 && space.count(in: .key("/r/a")) == 1 && space.count(in: .key("/r/c")) == 0)
    #expect(space.count(in: KeyRange(key: Array("/r/b".utf8), rangeEnd: [0])) == 1)
  }
}

/// `diff` and `sync --dry-run` exit like diff(1); every duration flag takes the configuration's
/// form and refuses a bare number with one message.
@Suite("diff exit codes and duration flags", .serialized)
struct DiffExitAndDurationTests {
  @Test("diff and sync --dry-run: 1 with differences, 0 without, 2 for trouble, 3 for no etcd")
  func diffExitCodes() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let config = h.dir("diff.yaml")
    try Disk.write(config, """
      etcd: {endpoints: [\(h.server.endpoint)]}
      state: {dir: \(h.dir("state"))}
      mappings:
        - {name: tree, kind: tree, prefix: /d/, dest: \(h.dir("out"))}
      """)
    // The destination does not exist yet: a first diff shows every file as new (it used to
    // fail with ENOENT opening the missing root).
    try await h.put("/d/a", "1")
    let differs = try await EtcsyncProcess.run(["diff", "-c", config])
    #expect(differs.status == 1 && differs.output.contains("+1"), "\(differs)")
    let dryRun = try await EtcsyncProcess.run(["sync", "--dry-run", "-c", config])
    #expect(dryRun.status == 1 && dryRun.output == differs.output, "\(dryRun)")
    #expect(Disk.read(h.dir("out/a")) == nil, "a dry run writes nothing")
    #expect(try await EtcsyncProcess.run(["sync", "-c", config, "--timeout", "10s"]).status == 0)
    let same = try await EtcsyncProcess.run(["diff", "-c", config])
    #expect(same.status == 0 && same.output.isEmpty, "\(same)")
    #expect(try await EtcsyncProcess.run(["sync", "--dry-run", "-c", config]).status == 0)

    // A template that fails to render is trouble, not a difference.
    try Disk.write(h.dir("t.tmpl"), "{{ atoi (getv \"/t/n\") }}\n")
    let broken = h.dir("broken.yaml")
    try Disk.write(broken, """
      etcd: {endpoints: [\(h.server.endpoint)]}
      state: {dir: \(h.dir("state2"))}
      mappings:
        - {name: t, kind: template, prefix: /t/, template: \(h.dir("t.tmpl")), dest: \(h.dir("t.out"))}
      """)
    try await h.put("/t/n", "not a number")
    let trouble = try await EtcsyncProcess.run(["diff", "-c", broken])
    #expect(trouble.status == 2 && trouble.error.contains("etcsync: "), "\(trouble)")

    // No etcd within the timeout: 3.
    let port = try freePorts(1)[0]
    let gone = try await EtcsyncProcess.run(["diff", "-c", config, "--endpoints", "http://127.0.0.1:\(port)", "--timeout", "500ms"])
    #expect(gone.status == 3, "\(gone)")
  }

  @Test("every duration flag takes 10s, 1m30s, 500ms and refuses a bare number with the same message")
  func durationFlags() async throws {
    let message = #""10" has no unit; write it with one, such as "10s" or "10ms""#
    for command in [["sync"], ["sync", "--dry-run"], ["run"], ["diff"], ["status"], ["ping"]] {
      let refused = try await EtcsyncProcess.run(command + ["--timeout", "10"])
      #expect(refused.status == 64, "\(command): \(refused)")
      #expect(refused.error.contains("The value '10' is invalid for '--timeout <timeout>': \(message)"), "\(command): \(refused.error)")
      let help = try await EtcsyncProcess.run(Array(command.prefix(1)) + ["--help"])
      let words = help.output.split(whereSeparator: \.isWhitespace).joined(separator: " ")
      #expect(words.contains("a bare number is refused"), "\(command): \(help.output)")
    }
    // Accepted where a duration is: an endpoint where nothing listens gives up after it.
    let port = try freePorts(1)[0]
    let ping = try await EtcsyncProcess.run(["ping", "--endpoints", "http://127.0.0.1:\(port)", "--timeout", "500ms"])
    #expect(ping.status == 3, "\(ping)")
    // 1m30s is read (the refusal that follows is --min-agents's, not the duration's).
    let status = try await EtcsyncProcess.run(["status", "--timeout", "1m30s", "--min-agents", "2"])
    #expect(status.status == 64 && status.error.contains("--min-agents needs --wait-revision"), "\(status)")
  }
}
