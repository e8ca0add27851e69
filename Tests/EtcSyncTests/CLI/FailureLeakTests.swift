import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Testing

/// What a failing mapping shows outside the journal: systemd's `STATUS=` (readable by any
/// local user), the presence key and metrics carry a code and the mapping's name, never a
/// command's output or a value from etcd; the log has them at debug level only. And `status`
/// prints presence fields from etcd with their control characters escaped.
@Suite("Failure codes, not secrets; escaped status", .serialized)
struct FailureLeakTests {
  static let secret = "TOPSECRET-4711"

  @Test("a check that prints a secret and a template error quoting a value: STATUS=, presence, metrics and the info log carry only codes")
  func checkOutputStaysInDebugLog() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let socket = try NotifySocket()
    let port = try freePorts(1)[0]
    try Disk.write(h.dir("t.tmpl"), "{{ atoi (getv \"/t/n\") }}\n")
    let config = h.dir("leak.yaml")
    try Disk.write(config, """
      etcd: {endpoints: [\(h.server.endpoint)]}
      state: {dir: \(h.dir("state"))}
      presence: {prefix: /etcsync/agents, name: leaky, ttl: 3s}
      metrics: {listen: 127.0.0.1:\(port)}
      mappings:
        - name: checked
          kind: tree
          prefix: /app/
          dest: \(h.dir("out"))
          check: [sh, -c, 'cat "$1"; exit 1', sh, "{{.src}}"]
        - name: rendered
          kind: template
          prefix: /t/
          template: \(h.dir("t.tmpl"))
          dest: \(h.dir("t.out"))
      """)
    try await h.put("/app/password", "value-\(Self.secret)")
    try await h.put("/t/n", "not-a-number-\(Self.secret)")
    let agent = try EtcsyncProcess(["run", "-c", config], log: h.dir("agent.log"), environment: ["NOTIFY_SOCKET": socket.path])
    defer { agent.kill9() }

    // STATUS= names the first failing mapping by name, with its code.
    let messages = try await socket.messages { $0.contains("STATUS=") && $0.contains("failing: mapping checked: check_failed") }
    #expect(!messages.joined().contains(Self.secret), "\(messages)")

    // The presence record names the first failing mapping and its code.
    var raw: [UInt8] = []
    #expect(await eventually {
      guard let kv = try? await h.client.get("/etcsync/agents/leaky").kvs.first else { return false }
      raw = kv.value
      return (try? JSONDecoder().decode(PresenceRecord.self, from: Data(kv.value)))?.lastError == "mapping checked: check_failed"
    }, "log: \(agent.log)")
    #expect(!String(decoding: raw, as: UTF8.self).contains(Self.secret))

    let scrape = try #require(await OperationsTests.get(port, "/metrics")?.body)
    #expect(!scrape.contains(Self.secret))
    #expect(scrape.contains(#"mapping="checked""#), "\(scrape)")

    // At the default level the log says the code and the mapping, never the output or value.
    #expect(await eventually { agent.log.contains("check_failed") && agent.log.contains("render_failed") }, "log: \(agent.log)")
    #expect(!agent.log.contains(Self.secret), "log: \(agent.log)")
    #expect(Disk.read(h.dir("out") + "/password") == nil)
    agent.signal(SIGTERM)
    #expect(await agent.waitForExit() == 0)

    // At debug level the journal has the details.
    let debug = try await EtcsyncProcess.run(["sync", "-c", config, "--log-level", "debug", "--state-dir", h.dir("state2")])
    #expect(debug.status == 1)
    #expect(debug.error.contains(Self.secret), "\(debug.error)")
    #expect(debug.output.contains("FAILED (check_failed)"), "\(debug.output)")
  }

  /// A reload that hangs: the presence record's `lastError` says `reload_overdue` with the
  /// mapping's name (not only READY=no), `status` shows it in its table and its JSON, and
  /// nothing of the command leaks; once the reload is killed at its timeout the code is
  /// `reload_failed`, and it clears when the next reload succeeds.
  @Test("a reload that runs longer than expected shows as reload_overdue in presence and status, never the command")
  func overdueReloadInStatus() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let block = h.dir("block")
    let config = h.dir("overdue.yaml")
    // Overdue after half the timeout (4 s), killed at 8 s; the next reload ends at once.
    try Disk.write(config, """
      etcd: {endpoints: [\(h.server.endpoint)]}
      state: {dir: \(h.dir("state"))}
      presence: {prefix: /etcsync/agents, name: slow, ttl: 5s}
      mappings:
        - name: hung
          kind: file
          key: /r/x
          dest: \(h.dir("x"))
          commandTimeout: 8s
          reload: [sh, -c, 'if [ -e "$1" ]; then rm -f "$1"; SECRET=\(Self.secret) exec sleep 600; fi', sh, \(block)]
      """)
    try await h.put("/r/x", "v0")
    let agent = try EtcsyncProcess(["run", "-c", config], log: h.dir("agent.log"))
    defer { agent.kill9() }
    let record = { () async -> PresenceRecord? in
      guard let kv = try? await h.client.get("/etcsync/agents/slow").kvs.first else { return nil }
      return try? JSONDecoder().decode(PresenceRecord.self, from: Data(kv.value))
    }
    #expect(await eventually { await record()?.ready == true }, "log: \(agent.log)")
    try Disk.write(block, "")
    try await h.put("/r/x", "v1")
    #expect(await eventually(within: .seconds(10)) { await record()?.lastError == "mapping hung: reload_overdue" }, "log: \(agent.log)")
    #expect(await record()?.ready == false)
    // Both read while the reload still hangs (it is killed 4 s after it became overdue).
    let endpoint = ["--endpoints", h.server.endpoint]
    let table = try await EtcsyncProcess.run(["status"] + endpoint)
    #expect(table.status == 0, "\(table.error)")
    #expect(table.output.contains("mapping hung: reload_overdue"), "\(table.output)")
    let json = try await EtcsyncProcess.run(["status", "--json"] + endpoint)
    let object = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
    let agents = try #require(object["agents"] as? [[String: Any]])
    #expect((agents.first?["record"] as? [String: Any])?["lastError"] as? String == "mapping hung: reload_overdue", "\(json.output)")
    for text in [table.output, table.error, json.output] {
      #expect(!text.contains(Self.secret))
      #expect(!text.contains("sleep"))
    }
    // Killed at its timeout: a failed reload (its own code); the next change's reload (block
    // gone) succeeds and clears it.
    #expect(await eventually(within: .seconds(15)) { await record()?.lastError == "mapping hung: reload_failed" }, "log: \(agent.log)")
    try await h.put("/r/x", "v2")
    #expect(await eventually(within: .seconds(15)) {
      let now = await record()
      return now != nil && now?.lastError == nil && now?.ready == true
    }, "log: \(agent.log)")
    agent.signal(SIGTERM)
    #expect(await agent.waitForExit() == 0)
  }

  @Test("status escapes control characters in every presence field, as a table and as JSON")
  func statusEscapes() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let hostile = "evil\u{1b}[2J\n\u{9b}31m\u{202e}x"
    let record = PresenceRecord(name: "n" + hostile, host: "h" + hostile, pid: 1, version: "v\\n" + hostile, startedAt: "s",
                                mappings: ["m" + hostile], appliedRevision: 1, lastError: "e" + hostile, updatedAt: "u")
    let lease = try await h.client.grant(ttl: 60)
    _ = try await h.client.put(Array("/etcsync/agents/n\u{1b}x".utf8), record.json, options: PutOptions(lease: lease.id))
    _ = try await h.put("/etcsync/agents/junk\u{1b}[2J", "not json")
    let endpoint = ["--endpoints", h.server.endpoint]

    let table = try await EtcsyncProcess.run(["status"] + endpoint)
    #expect(table.status == 0, "\(table.error)")
    for text in [table.output, table.error] {
      #expect(!text.unicodeScalars.contains { $0 == "\u{1b}" || $0 == "\u{9b}" || $0 == "\u{202e}" }, "\(text.debugDescription)")
    }
    #expect(table.output.split(separator: "\n").count == 3, "header, one agent, summary: \(table.output.debugDescription)")
    #expect(table.output.contains(#"hevil\x1b[2J\n\x9b31m\u{202e}x"#), "\(table.output)")
    #expect(table.output.contains(#"eevil\x1b[2J\n"#))
    // A backslash in a field is escaped too: the two characters `\n` never read as a newline.
    #expect(table.output.contains(#"v\\nevil\x1b[2J\n\x9b31m"#), "\(table.output)")
    #expect(table.error.contains(#"junk\x1b[2J: not a presence record"#), "\(table.error)")

    let json = try await EtcsyncProcess.run(["status", "--json"] + endpoint)
    #expect(json.status == 0)
    #expect(!json.output.unicodeScalars.contains { $0 == "\u{1b}" || $0 == "\u{9b}" || $0 == "\u{202e}" }, "\(json.output.debugDescription)")
    // Still the same document for a parser.
    let object = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
    let agents = try #require(object["agents"] as? [[String: Any]])
    #expect((agents.first?["record"] as? [String: Any])?["host"] as? String == "h" + hostile)
  }
}

/// The escaping functions behind logs and `status`.
@Suite("Control character escaping")
struct ControlEscapingTests {
  @Test("escapeControlCharacters writes C0, DEL, C1, separators and bidi marks as escapes and keeps the rest; with backslashes, \\ as \\\\")
  func escapes() {
    #expect(escapeControlCharacters("plain é 日本 \\ \"q\"") == "plain é 日本 \\ \"q\"")
    #expect(escapeControlCharacters("plain é 日本 \\ \"q\"", backslashes: true) == #"plain é 日本 \\ "q""#)
    // The two characters `\n` and a newline: the same text without, two texts with.
    #expect(escapeControlCharacters("a\\nb") == escapeControlCharacters("a\nb"))
    #expect(escapeControlCharacters("a\\nb", backslashes: true) == #"a\\nb"#)
    #expect(escapeControlCharacters("a\nb", backslashes: true) == #"a\nb"#)
    #expect(escapeControlCharacters("\u{1b}\\x1b", backslashes: true) == #"\x1b\\x1b"#)
    #expect(escapeControlCharacters("a\nb\rc\td") == #"a\nb\rc\td"#)
    #expect(escapeControlCharacters("\u{1b}[2J\u{0}\u{7f}\u{85}\u{9b}") == #"\x1b[2J\x00\x7f\x85\x9b"#)
    #expect(escapeControlCharacters("\u{2028}\u{2029}\u{202e}\u{2066}") == #"\u{2028}\u{2029}\u{202e}\u{2066}"#)
  }

  @Test("escapeJSONControlCharacters keeps the document and the layout")
  func json() throws {
    let value = "x\u{1b}\u{7f}\u{9b}\u{202e}y\n"
    let data = try JSONSerialization.data(withJSONObject: ["k": value], options: [.prettyPrinted])
    let escaped = escapeJSONControlCharacters(String(decoding: data, as: UTF8.self))
    #expect(!escaped.unicodeScalars.contains { $0 == "\u{1b}" || $0 == "\u{7f}" || $0 == "\u{9b}" || $0 == "\u{202e}" })
    #expect(escaped.contains("\n"), "pretty-printing's newlines stay")
    let decoded = try #require(try JSONSerialization.jsonObject(with: Data(escaped.utf8)) as? [String: String])
    #expect(decoded["k"] == value)
  }
}
