import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Glibc
import Testing

/// What an operator sees of a running agent: the metrics and health endpoints, JSON logs and
/// the systemd notify protocol, with real `etcsync run` processes and a real etcd.
@Suite("Operations: metrics, health, logs, systemd notify", .serialized)
struct OperationsTests {
  /// A configuration with a tree of `/ops/` and the metrics endpoint on `port`.
  static func configFile(_ h: AgentHarness, port: Int, password: String? = nil) throws -> String {
    let path = h.dir("ops.yaml")
    var auth = ""
    if let password {
      try Disk.write(h.dir("password"), password)
      auth = "\n  auth: {user: root, passwordFile: \(h.dir("password"))}"
    }
    try Disk.write(path, """
      etcd:
        endpoints: [\(h.server.endpoint)]\(auth)
      state:
        dir: \(h.dir("state"))
      metrics:
        listen: 127.0.0.1:\(port)
      mappings:
        - name: ops
          kind: tree
          prefix: /ops/
          dest: \(h.dir("out"))
          reload: [sh, -c, "true"]
      """)
    return path
  }

  /// GET `path` on the local endpoint: status and body, nil when nothing answers.
  static func get(_ port: Int, _ path: String) async -> (status: Int, body: String)? {
    var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
    request.timeoutInterval = 5
    guard let (data, response) = try? await URLSession.shared.data(for: request),
      let http = response as? HTTPURLResponse
    else { return nil }
    return (http.statusCode, String(decoding: data, as: UTF8.self))
  }

  /// The value of the sample `name` (with its labels as written) in a Prometheus scrape.
  static func sample(_ scrape: String, _ name: String) -> Double? {
    for line in scrape.split(separator: "\n") where line.hasPrefix(name + " ") {
      return Double(line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces))
    }
    return nil
  }

  @Test("/metrics is scraped while the agent syncs; /readyz follows the first sync and etcd's availability")
  func metricsAndReadiness() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let port = try freePorts(1)[0]
    let first = try await h.put("/ops/a", "1")
    let agent = try EtcsyncProcess(["run", "-c", try Self.configFile(h, port: port)], log: h.dir("agent.log"))
    defer { agent.kill9() }
    #expect(await eventually { await Self.get(port, "/readyz")?.status == 200 }, "log: \(agent.log)")
    #expect(await Self.get(port, "/healthz")?.status == 200)
    // Applied revision and per-mapping counters, scraped while it runs.
    var revision = try await h.put("/ops/b", "2")
    #expect(revision > first)
    #expect(await eventually {
      guard let scrape = await Self.get(port, "/metrics")?.body else { return false }
      return Self.sample(scrape, "etcsync_applied_revision") == Double(revision)
    })
    let scrape = try #require(await Self.get(port, "/metrics")?.body)
    #expect((Self.sample(scrape, #"etcsync_renders_total{mapping="ops",result="changed"}"#) ?? 0) >= 2, "\(scrape)")
    #expect((Self.sample(scrape, #"etcsync_reloads_total{mapping="ops",result="ok"}"#) ?? 0) >= 2)
    #expect(Self.sample(scrape, "etcsync_watch_connected") == 1)
    #expect(Self.sample(scrape, "etcsync_ready") == 1)
    #expect((Self.sample(scrape, "etcsync_last_success_timestamp_seconds") ?? 0) > 1_700_000_000)
    #expect(scrape.contains("# TYPE etcsync_propagation_seconds histogram"))
    #expect((Self.sample(scrape, "etcsync_propagation_seconds_count") ?? 0) >= 1)

    // etcd stops: not ready (with the reason), still healthy; ready again once it is back.
    h.server.stop()
    #expect(await eventually { await Self.get(port, "/readyz")?.status == 503 }, "log: \(agent.log)")
    #expect(await Self.get(port, "/readyz")?.body.hasPrefix("not ready: etcd does not answer") == true)
    #expect(await Self.get(port, "/healthz")?.status == 200)
    #expect(await eventually { Self.sample(await Self.get(port, "/metrics")?.body ?? "", "etcsync_watch_connected") == 0 })
    #expect(Disk.read(h.dir("out/b")) == "2", "the last good files stay")
    try await h.server.restart()
    #expect(await eventually { await Self.get(port, "/readyz")?.status == 200 }, "log: \(agent.log)")
    revision = try await h.put("/ops/c", "3")
    #expect(await eventually { Disk.read(h.dir("out/c")) == "3" })
    agent.signal(SIGTERM)
    #expect(await agent.waitForExit() == 0)
  }

  @Test("--log-format json: one parseable object per line, one per applied batch, no secret in any")
  func jsonLogs() async throws {
    let secret = "s3cret-Pa55word"
    let h = try await AgentHarness.start()
    defer { h.stop() }
    // Auth on, so that the password is in play (root with the password from the file).
    try await h.client.roleAdd("root")
    try await h.client.userAdd("root", password: secret)
    try await h.client.userGrantRole("root", role: "root")
    try await h.client.authEnable()
    let port = try freePorts(1)[0]
    let config = try Self.configFile(h, port: port, password: secret)
    var authedConfiguration = h.server.configuration()
    authedConfiguration.credentials = .init(username: "root", password: secret)
    let authed = try RunningClient(authedConfiguration)
    defer { authed.stop() }
    _ = try await authed.client.put("/ops/a", "value-that-must-not-be-logged")
    let result = try await EtcsyncProcess.run(["sync", "-c", config, "--log-format", "json", "--log-level", "debug"])
    #expect(result.status == 0, "\(result.error)")
    let lines = result.error.split(separator: "\n").map(String.init)
    #expect(!lines.isEmpty)
    var objects: [[String: Any]] = []
    for line in lines {
      let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
      #expect(object != nil, "not a JSON object: \(line)")
      if let object { objects.append(object) }
    }
    let applied = objects.filter { ($0["message"] as? String) == "applied" }
    #expect(applied.count == 1)
    let batch = try #require(applied.first)
    #expect(batch["mapping.name"] as? String == "ops")
    #expect(batch["etcd.revision"] != nil && batch["files.written"] != nil && batch["duration"] != nil, "\(batch)")
    #expect(!result.error.contains(secret) && !result.output.contains(secret))
    #expect(!result.error.contains("value-that-must-not-be-logged"))
  }

  @Test("Type=notify: READY=1 after the first sync, STATUS, WATCHDOG=1, RELOADING=1 on SIGHUP, STOPPING=1 on SIGTERM")
  func systemdNotify() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let socket = try NotifySocket()
    let port = try freePorts(1)[0]
    let revision = try await h.put("/ops/a", "1")
    let agent = try EtcsyncProcess(
      ["run", "-c", try Self.configFile(h, port: port)], log: h.dir("agent.log"),
      environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "1000000"])
    defer { agent.kill9() }
    var messages: [String] = []
    func next(_ prefix: String) async throws -> String {
      let received = try await socket.messages(until: prefix)
      messages += received
      return received.last!
    }
    let ready = try await next("READY=1")
    #expect(ready == "READY=1\nSTATUS=applied revision \(revision)", "\(messages)")
    #expect(Disk.read(h.dir("out/a")) == "1", "READY=1 comes after the first sync")
    _ = try await next("WATCHDOG=1")
    agent.signal(SIGHUP)
    let reloading = try await next("RELOADING=1")
    #expect(reloading.contains("MONOTONIC_USEC="))
    agent.signal(SIGTERM)
    _ = try await next("STOPPING=1")
    // SIGTERM right after SIGHUP lands while the new agent syncs: still a clean stop.
    #expect(await agent.waitForExit() == 0, "log: \(agent.log)")
  }

  /// The repository's root (tests run from it under `swift test`; found from this file otherwise).
  static var repository: String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().deletingLastPathComponent().path
  }

  @Test("the command line: --version, --help with an example on every subcommand, completions, config-example")
  func commandLine() async throws {
    let version = try await EtcsyncProcess.run(["--version"])
    #expect(version.status == 0 && version.output == EtcSync.version + "\n")
    for command in ["sync", "run", "check", "diff", "status", "ping", "config-example"] {
      let help = try await EtcsyncProcess.run([command, "--help"])
      #expect(help.status == 0, "\(command): \(help.error)")
      #expect(help.output.contains("Example"), "\(command) --help has no example")
    }
    for shell in ["bash", "zsh", "fish"] {
      let script = try await EtcsyncProcess.run(["--generate-completion-script", shell])
      #expect(script.status == 0 && script.output.contains("config-example"), "\(shell)")
    }
    let example = try await EtcsyncProcess.run(["config-example"])
    #expect(example.status == 0)
    let shipped = try String(contentsOfFile: Self.repository + "/examples/config/etcsync.yaml", encoding: .utf8)
    #expect(example.output == shipped, "run scripts/generate-config-example after editing examples/config/etcsync.yaml")
    // And it is a valid configuration.
    _ = try AgentConfiguration.load(yaml: example.output, sourceName: "config-example")
  }

  @Test("a template broken before a SIGHUP is refused and the old configuration keeps running; broken at start it exits 2")
  func brokenTemplateOnReload() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try Disk.write(h.dir("t.tmpl"), "{{ getv \"/t/a\" }}\n")
    let config = h.dir("t.yaml")
    try Disk.write(config, """
      etcd: {endpoints: [\(h.server.endpoint)]}
      state: {dir: \(h.dir("state"))}
      mappings:
        - {name: t, kind: template, prefix: /t/, template: \(h.dir("t.tmpl")), dest: \(h.dir("out"))}
      """)
    try await h.put("/t/a", "1")
    let agent = try EtcsyncProcess(["run", "-c", config], log: h.dir("run.log"))
    defer { agent.kill9() }
    #expect(await eventually { Disk.read(h.dir("out")) == "1\n" }, "log: \(agent.log)")
    try Disk.write(h.dir("t.tmpl"), "{{ if }}\n")
    agent.signal(SIGHUP)
    #expect(await eventually { agent.log.contains("configuration not reloaded; keeping the old one") }, "log: \(agent.log)")
    try await h.put("/t/a", "2")
    #expect(await eventually { Disk.read(h.dir("out")) == "2\n" }, "the old configuration still runs; log: \(agent.log)")
    #expect(agent.process.isRunning)
    agent.signal(SIGTERM)
    #expect(await agent.waitForExit() == 0)
    // At start the same template is a configuration error: exit 2, for sync and run alike.
    let sync = try await EtcsyncProcess.run(["sync", "-c", config])
    #expect(sync.status == 2, "\(sync.error)")
    #expect(sync.error.contains("t.tmpl"))
    let run = try await EtcsyncProcess.run(["run", "-c", config])
    #expect(run.status == 2, "\(run.error)")
  }

  @Test("sync shows its progress on a terminal and none in a pipe")
  func syncProgress() async throws {
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/script") else {
      try Test.cancel("util-linux's script (a pseudo-terminal) is not installed")
    }
    let h = try await AgentHarness.start()
    defer { h.stop() }
    for index in 0..<3 { try await h.put("/p/k\(index)", "v") }
    let config = h.dir("p.yaml")
    try Disk.write(config, """
      etcd: {endpoints: [\(h.server.endpoint)]}
      state: {dir: \(h.dir("state"))}
      mappings: [{name: p, kind: tree, prefix: /p/, dest: \(h.dir("out"))}]
      """)
    let onTerminal = try await EtcsyncProcess.runTool(["/usr/bin/script", "-qec", "\(EtcsyncProcess.binary) sync -c \(config) --state-dir \(h.dir("s1"))", "/dev/null"])
    #expect(onTerminal.output.contains("etcsync: read 3 keys"), "\(onTerminal.output)")
    #expect(onTerminal.output.contains("etcsync: mapping p: 3 written, 0 deleted"))
    let piped = try await EtcsyncProcess.run(["sync", "-c", config, "--state-dir", h.dir("s2")])
    #expect(piped.status == 0)
    #expect(!piped.error.contains("etcsync: read"), "\(piped.error)")
  }
}
