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
    // `--timeout 60s` lies far below etcd's 10-minute progress-notification interval: passing
    // proves "two" answered on demand (the request key), not on etcd's own schedule. How soon
    // it answers (well within a second) is a measured target, not asserted here (tests make
    // no wall-clock assertions): scripts/fleet-bench measures it, docs/scale.md has the numbers.
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

  @Test("an agent already current through R puts nothing for a repeated --wait-revision R")
  func repeatedWaitPutsNothing() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let agent = try Self.start(h, name: "again", prefix: "/a1/")
    defer { agent.kill9() }
    let revision = try await h.put("/a1/x", "1")
    let endpoint = ["--endpoints", h.server.endpoint, "--prefix", Self.prefix]
    let wait = ["status", "--wait-revision", "\(revision)", "--timeout", "60s"] + endpoint
    let first = try await EtcsyncProcess.run(wait)
    #expect(first.status == 0, "\(first.error)\n\(agent.log)")
    let key = Self.prefix + "/again"
    func modRevision() async -> Int64? { try? await h.client.get(key).kvs.first?.modRevision }
    // Settled: no put still on its way (a revision change's put comes within a second).
    var settled: Int64?
    #expect(await eventually {
      let before = await modRevision()
      try? await Task.sleep(for: .milliseconds(1500))
      settled = await modRevision()
      return before != nil && before == settled
    }, "\(agent.log)")
    let second = try await EtcsyncProcess.run(wait)
    #expect(second.status == 0, "\(second.error)\n\(agent.log)")
    // The second request reached the agent (it watches the request key) and asked for a
    // revision it is already current through: no answer is put. Time for a wrong one to land.
    try await Task.sleep(for: .milliseconds(1500))
    #expect(await modRevision() == settled, "the agent put its record again for a revision it was current through\n\(agent.log)")
    let request = try await h.client.get(ProgressRequest.key(prefix: Self.prefix)).kvs.first
    #expect((request?.modRevision ?? 0) > (settled ?? .max), "the second status did ask")
  }

  @Test("status without write permission on the request key says it cannot ask and shows what the agents last reported")
  func statusWithoutWritePermission() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.client.enableAuthentication(rootPassword: "rootpw", users: [
      TestUser("viewer", password: "viewerpw", grants: [(.read, .prefix(Self.prefix + "/"))]),
    ])
    var rootConfiguration = h.server.configuration()
    rootConfiguration.credentials = .init(username: "root", password: "rootpw")
    let root = try RunningClient(rootConfiguration)
    defer { root.stop() }
    try Disk.write(h.dir("rootpw"), "rootpw")
    try Disk.write(h.dir("viewerpw"), "viewerpw")
    let config = try Self.configFile(h, name: "ro", prefix: "/ro/")
    let text = try #require(Disk.read(config))
    try Disk.write(config, text.replacingOccurrences(
      of: "  endpoints: [\(h.server.endpoint)]",
      with: "  endpoints: [\(h.server.endpoint)]\n  auth: {user: root, passwordFile: \(h.dir("rootpw"))}"))
    let agent = try EtcsyncProcess(["run", "-c", config], log: h.dir("ro.log"))
    defer { agent.kill9() }
    let revision = try await root.client.put("/ro/a", "1").header.revision
    // The agent has reported being current through the put (its own record, read as root).
    #expect(await eventually {
      guard let kv = try? await root.client.get(Self.prefix + "/ro").kvs.first,
        let record = try? JSONDecoder().decode(PresenceRecord.self, from: Data(kv.value))
      else { return false }
      return record.currentThrough >= revision
    }, "\(agent.log)")
    let viewer = ["--endpoints", h.server.endpoint, "--prefix", Self.prefix, "--user", "viewer", "--password-file", h.dir("viewerpw")]
    let warning = "etcsync: cannot ask the agents how far they are current (put \(ProgressRequest.key(prefix: Self.prefix)): "
    let plain = try await EtcsyncProcess.run(["status"] + viewer)
    #expect(plain.status == 0, "\(plain)")
    #expect(plain.error.contains(warning) && plain.error.contains("showing what they last reported"), "\(plain.error)")
    #expect(Self.rows(plain.output)["ro"] != nil, "the table shows the agent's last report: \(plain.output)")
    // A wait the last report already satisfies passes; one beyond it cannot be answered.
    let met = try await EtcsyncProcess.run(["status", "--wait-revision", "\(revision)", "--timeout", "10s"] + viewer)
    #expect(met.status == 0 && met.error.contains(warning), "\(met)")
    let beyond = try await root.client.put("/elsewhere/b", "2").header.revision
    let unmet = try await EtcsyncProcess.run(["status", "--wait-revision", "\(beyond)", "--timeout", "2s"] + viewer)
    #expect(unmet.status == 1 && unmet.error.contains(warning) && unmet.error.contains("lagging: ro"), "\(unmet)")
    #expect(unmet.error.components(separatedBy: "cannot ask the agents").count == 2, "said once: \(unmet.error)")
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
    let troubleDryRun = try await EtcsyncProcess.run(["sync", "--dry-run", "-c", broken])
    #expect(troubleDryRun.status == 2 && troubleDryRun.error.contains("etcsync: "), "\(troubleDryRun)")
    // A configuration that does not load is trouble too.
    let invalid = h.dir("invalid.yaml")
    try Disk.write(invalid, "etcd: {endpoints: [\(h.server.endpoint)]}\nmappings:\n  - {name: x, kind: tree}\n")
    for command in [["diff"], ["sync", "--dry-run"]] {
      let refused = try await EtcsyncProcess.run(command + ["-c", invalid])
      #expect(refused.status == 2 && refused.output.isEmpty, "\(command): \(refused)")
    }

    // No etcd within the timeout: 3.
    let port = try freePorts(1)[0]
    let gone = try await EtcsyncProcess.run(["diff", "-c", config, "--endpoints", "http://127.0.0.1:\(port)", "--timeout", "500ms"])
    #expect(gone.status == 3, "\(gone)")
    let goneDryRun = try await EtcsyncProcess.run(["sync", "--dry-run", "-c", config, "--endpoints", "http://127.0.0.1:\(port)", "--timeout", "500ms"])
    #expect(goneDryRun.status == 3, "\(goneDryRun)")
  }

  @Test("diff and sync --dry-run report a mode or owner sync would rewrite (file, in-place tree, swapped tree), then 0 after sync")
  func metadataDrift() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let config = h.dir("meta.yaml")
    func configure(mode: String, owner: String = "") throws {
      try Disk.write(config, """
        etcd: {endpoints: [\(h.server.endpoint)]}
        state: {dir: \(h.dir("state"))}
        mappings:
          - {name: motd, kind: file, key: /m/motd, dest: \(h.dir("motd")), mode: "\(mode)"\(owner)}
          - {name: inplace, kind: tree, prefix: /d/, dest: \(h.dir("inplace")), swap: in-place, mode: "\(mode)"\(owner)}
          - {name: swapped, kind: tree, prefix: /d/, dest: \(h.dir("swapped")), mode: "\(mode)"\(owner)}
        """)
    }
    let files = [h.dir("motd"), h.dir("inplace/a"), h.dir("swapped/a")]
    // Through the swapped tree's top-level symlink to the file itself.
    func fileStat(_ path: String) -> stat? {
      guard let resolved = realpath(path, nil) else { return nil }
      defer { free(resolved) }
      return Disk.lstat(String(cString: resolved))
    }
    func expectDrift(_ lines: String, _ comment: Comment) async throws {
      let diff = try await EtcsyncProcess.run(["diff", "-c", config])
      #expect(diff.status == 1, "\(comment): \(diff)")
      for file in files {
        #expect(diff.output.contains("diff \(file)\n" + lines), "\(comment): \(file): \(diff.output)")
      }
      #expect(!diff.output.contains("+++"), "the bytes are the same: \(diff.output)")
      let dryRun = try await EtcsyncProcess.run(["sync", "--dry-run", "-c", config])
      #expect(dryRun.status == 1 && dryRun.output == diff.output, "\(comment): \(dryRun)")
    }
    func expectCurrent(_ comment: Comment) async throws {
      let same = try await EtcsyncProcess.run(["diff", "-c", config])
      #expect(same.status == 0 && same.output.isEmpty, "\(comment): \(same)")
      #expect(try await EtcsyncProcess.run(["sync", "--dry-run", "-c", config]).status == 0, comment)
    }
    try configure(mode: "0640")
    try await h.put("/m/motd", "hello\n")
    try await h.put("/d/a", "1")
    #expect(try await EtcsyncProcess.run(["sync", "-c", config]).status == 0)
    try await expectCurrent("after the first sync")

    // chmod by hand: only the mode differs, and sync would put it back.
    for file in files { chmod(file, 0o600) }
    try await expectDrift("old mode 100600\nnew mode 100640\n", "chmod 0600")
    #expect(try await EtcsyncProcess.run(["sync", "-c", config]).status == 0)
    try await expectCurrent("after sync put the mode back")
    #expect(files.allSatisfy { (fileStat($0)?.st_mode ?? 0) & 0o7777 == 0o640 })

    // A new mode in the configuration.
    try configure(mode: "0644")
    try await expectDrift("old mode 100640\nnew mode 100644\n", "mode: 0644 configured")
    #expect(try await EtcsyncProcess.run(["sync", "-c", config]).status == 0)
    try await expectCurrent("after sync applied mode 0644")

    // An owner configured (the tests run as root, who may chown).
    if getuid() == 0 {
      try configure(mode: "0644", owner: ", owner: \"1234\", group: \"4321\"")
      try await expectDrift("old owner 0\nnew owner 1234\nold group 0\nnew group 4321\n", "owner 1234:4321 configured")
      #expect(try await EtcsyncProcess.run(["sync", "-c", config]).status == 0)
      try await expectCurrent("after sync applied the owner")
      #expect(files.allSatisfy { fileStat($0)?.st_uid == 1234 && fileStat($0)?.st_gid == 4321 })
    }

    // A swapped tree is published as exactly the planned files: a stray file would go, and a
    // revision directory of another mode is published again.
    try Disk.write(h.dir("swapped/..data/stray"), "x")
    let stray = try await EtcsyncProcess.run(["diff", "-c", config])
    #expect(stray.status == 1 && stray.output.contains("--- \(h.dir("swapped/stray"))\n+++ /dev/null"), "\(stray)")
    #expect(try await EtcsyncProcess.run(["sync", "-c", config]).status == 0)
    try await expectCurrent("after sync removed the stray file")
    // A top-level symlink removed: readers no longer see the file, and sync puts it back.
    unlink(h.dir("swapped/a"))
    let unlinked = try await EtcsyncProcess.run(["diff", "-c", config])
    #expect(unlinked.status == 1 && unlinked.output == "diff \(h.dir("swapped/a"))\nsync would point it at ..data/a again: the top-level symlink is missing or points elsewhere\n",
            "\(unlinked)")
    #expect(try await EtcsyncProcess.run(["sync", "-c", config]).status == 0)
    try await expectCurrent("after sync put the symlink back")
    #expect(Disk.read(h.dir("swapped/a")) == "1")
    chmod(h.dir("swapped/..data"), 0o700)
    let republish = try await EtcsyncProcess.run(["sync", "--dry-run", "-c", config])
    #expect(republish.status == 1 && republish.output.hasPrefix("diff \(h.dir("swapped"))\nsync would publish the tree again"), "\(republish)")
    #expect(try await EtcsyncProcess.run(["sync", "-c", config]).status == 0)
    try await expectCurrent("after sync published the tree again")
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
      #expect(words.contains("a bare number or 0 is refused"), "\(command): \(help.output)")
      // Every duration flag is a timeout: zero would give up before trying.
      for zero in ["0", "0s", "0ms"] {
        let none = try await EtcsyncProcess.run(command + ["--timeout", zero])
        #expect(none.status == 64, "\(command) --timeout \(zero): \(none)")
        #expect(none.error.contains(#"The value '\#(zero)' is invalid for '--timeout <timeout>': "\#(zero)" is zero; a timeout must be more than 0, such as "10s" or "500ms""#),
                "\(command) --timeout \(zero): \(none.error)")
      }
    }
    // Accepted where a duration is: an endpoint where nothing listens gives up after it.
    let port = try freePorts(1)[0]
    let ping = try await EtcsyncProcess.run(["ping", "--endpoints", "http://127.0.0.1:\(port)", "--timeout", "500ms"])
    #expect(ping.status == 3, "\(ping)")
    // 1m30s is read (the refusal that follows is --min-agents's, not the duration's).
    let status = try await EtcsyncProcess.run(["status", "--timeout", "1m30s", "--min-agents", "2"])
    #expect(status.status == 64 && status.error.contains("--min-agents needs --wait-revision"), "\(status)")
    // A plain status waits for no revision: --timeout alone is refused like --min-agents alone.
    let plain = try await EtcsyncProcess.run(["status", "--timeout", "5s"])
    #expect(plain.status == 64 && plain.error.contains("--timeout needs --wait-revision"), "\(plain)")
  }
}
