import EtcSync
import EtcdTestSupport
import Foundation
import Glibc
import Testing

/// Exec mode (`etcsync run --exec -- CMD ARGS…`): the real `etcsync` executable, a real etcd
/// and real child processes, small `sh` scripts that record what happens to them.
@Suite("Exec mode", .serialized)
struct ExecModeTests {
  /// A configuration with one file mapping (`/e/x` → `x`) and one template mapping that reads
  /// only `/e/a` of the prefix `/e/` (a put of `/e/b` renders nothing new), plus `extra`.
  static func config(_ h: AgentHarness, extra: String = "") throws -> String {
    let template = h.dir("a.tmpl")
    try Disk.write(template, "a={{getv \"/e/a\" \"none\"}}\n")
    let path = h.dir("run.yaml")
    try Disk.write(path, """
      etcd: {endpoints: [\(h.server.endpoint)]}
      state: {dir: \(h.dir("state"))}
      mappings:
        - {name: x, key: /e/x, dest: \(h.dir("x"))}
        - {name: a, prefixes: [/e/], template: \(template), dest: \(h.dir("a.conf"))}
      \(extra)
      """)
    return path
  }

  /// A child script: records its start (with the file `x` as it read it; its traps are set
  /// by then), every SIGHUP (with the file `hupReads` as it read it then: the signal came
  /// after the write), and a SIGTERM after which it exits `termStatus`.
  static func childScript(_ h: AgentHarness, termStatus: Int = 3, hupReads: String = "x") throws -> String {
    let script = h.dir("child.sh")
    try Disk.write(script, """
      trap 'echo "hup $(cat "\(h.dir(hupReads))")" >> "\(h.commandLog)"' HUP
      trap 'echo term >> "\(h.commandLog)"; exit \(termStatus)' TERM
      echo "start $(cat '\(h.dir("x"))')" >> '\(h.commandLog)'
      while :; do sleep 0.05; done

      """)
    return script
  }

  @Test("a change signals the child with SIGHUP once the file is written; SIGTERM is forwarded and etcsync exits with the child's status")
  func signalOnChange() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/e/x", "v0")
    let config = try Self.config(h)
    let agent = try EtcsyncProcess(["run", "-c", config, "--exec", "--", "sh", try Self.childScript(h)], log: h.dir("run.log"))
    defer { agent.kill9() }
    // The child starts once the files are rendered: it read v0.
    #expect(await eventually { h.commandLines == ["start v0"] }, "log: \(agent.log)")

    // The child, on its SIGHUP, reads the new content: the file was written before the signal.
    try await h.put("/e/x", "v1")
    #expect(await eventually { h.commandLines.count == 2 }, "log: \(agent.log)")
    #expect(h.commandLines == ["start v0", "hup v1"], "log: \(agent.log)")
    #expect(Disk.read(h.dir("x")) == "v1")

    agent.signal(SIGTERM)
    #expect(await agent.waitForExit() == 3, "log: \(agent.log)")
    #expect(h.commandLines == ["start v0", "hup v1", "term"], "\(h.commandLines)")
  }

  @Test("a put that leaves every rendered file as it was signals nothing")
  func noSignalWithoutChange() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/e/x", "v0")
    let config = try Self.config(h)
    let agent = try EtcsyncProcess(["run", "-c", config, "--log-level", "debug", "--exec", "--", "sh", try Self.childScript(h, hupReads: "a.conf")],
                                   log: h.dir("run.log"))
    defer { agent.kill9() }
    #expect(await eventually { h.commandLines == ["start v0"] }, "log: \(agent.log)")

    // Keys the template does not read, and the file's own value again: each batch is
    // applied (logged "unchanged") and nothing is signalled.
    for (key, value) in [("/e/b", "1"), ("/e/x", "v0"), ("/e/b", "2")] {
      let before = Self.count("unchanged", in: agent.log)
      try await h.put(key, value)
      #expect(await eventually { Self.count("unchanged", in: agent.log) > before }, "log: \(agent.log)")
    }
    // A real change afterwards is signalled exactly once: the three puts sent none.
    try await h.put("/e/a", "1")
    #expect(await eventually { h.commandLines.count == 2 }, "log: \(agent.log)")
    #expect(h.commandLines == ["start v0", "hup a=1"], "log: \(agent.log)")
    agent.signal(SIGTERM)
    #expect(await agent.waitForExit() == 3, "log: \(agent.log)")
    #expect(h.commandLines == ["start v0", "hup a=1", "term"], "\(h.commandLines)")
  }

  @Test("forwarded stop signals: a child killed by SIGTERM gives 143, one that traps SIGINT or SIGQUIT its own status, one ignoring SIGTERM is killed at exec.killTimeout (137)",
        arguments: [(SIGTERM, "echo start >> \"$1\"; exec sleep 600", 143, "30s"),
                    (SIGINT, "trap 'echo int >> \"$1\"; exit 4' INT; echo start >> \"$1\"; while :; do sleep 0.05; done", 4, "30s"),
                    (SIGQUIT, "trap 'echo quit >> \"$1\"; exit 5' QUIT; echo start >> \"$1\"; while :; do sleep 0.05; done", 5, "30s"),
                    (SIGTERM, "trap '' TERM; echo start >> \"$1\"; while :; do sleep 0.05; done", 137, "1s")])
  func forwarding(signal: Int32, script: String, status: Int32, killTimeout: String) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/e/x", "v0")
    // The script's traps are set before it writes "start": the signal comes after that.
    let quoted = script.replacingOccurrences(of: "\"", with: "\\\"")
    // Only the child that ignores SIGTERM is meant to reach the kill timeout; the others get
    // 30 s, so that a loaded machine that runs their trap late does not kill them first.
    let config = try Self.config(h, extra: "exec: {command: [sh, -c, \"\(quoted)\", child, \(h.commandLog)], killTimeout: \(killTimeout)}")
    let agent = try EtcsyncProcess(["run", "-c", config], log: h.dir("run.log"))
    defer { agent.kill9() }
    #expect(await eventually { h.count("start") == 1 }, "log: \(agent.log)")
    agent.signal(signal)
    #expect(await agent.waitForExit() == status, "log: \(agent.log)")
    if signal == SIGINT { #expect(h.count("int") == 1, "\(h.commandLines)") }
    if signal == SIGQUIT { #expect(h.count("quit") == 1, "\(h.commandLines)") }
  }

  @Test("a child that exits on its own ends etcsync with its status")
  func childExitStatus() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/e/x", "v0")
    let config = try Self.config(h)
    let agent = try EtcsyncProcess(["run", "-c", config, "--exec", "--", "sh", "-c", "cat '\(h.dir("x"))' >> '\(h.commandLog)'; exit 7"],
                                   log: h.dir("run.log"))
    defer { agent.kill9() }
    #expect(await agent.waitForExit() == 7, "log: \(agent.log)")
    // It ran after the file was written.
    #expect(h.commandLines == ["v0"])
  }

  @Test("--exec-restart: a change stops the child (SIGTERM) and starts a new one, which reads the new file")
  func restartOnChange() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/e/x", "v0")
    let config = try Self.config(h)
    let agent = try EtcsyncProcess(["run", "-c", config, "--exec-restart", "--exec", "--", "sh", try Self.childScript(h, termStatus: 0)],
                                   log: h.dir("run.log"))
    defer { agent.kill9() }
    #expect(await eventually { h.commandLines == ["start v0"] }, "log: \(agent.log)")
    try await h.put("/e/x", "v1")
    #expect(await eventually { h.commandLines == ["start v0", "term", "start v1"] }, "log: \(agent.log)")
    #expect(!h.commandLines.contains { $0.hasPrefix("hup") })
    agent.signal(SIGTERM)
    #expect(await agent.waitForExit() == 0, "log: \(agent.log)")
  }

  @Test("exec.onChildExit: restart starts a child that exited on its own again, after the backoff")
  func restartOnChildExit() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/e/x", "v0")
    let marker = h.dir("ran-once")
    let script = h.dir("flaky.sh")
    try Disk.write(script, """
      trap 'exit 6' TERM
      echo start >> '\(h.commandLog)'
      if [ ! -e '\(marker)' ]; then touch '\(marker)'; exit 5; fi
      while :; do sleep 0.05; done

      """)
    let config = try Self.config(h, extra: "exec: {command: [sh, \(script)], onChildExit: restart, signal: SIGUSR1}")
    let agent = try EtcsyncProcess(["run", "-c", config], log: h.dir("run.log"))
    defer { agent.kill9() }
    #expect(await eventually { h.count("start") == 2 }, "log: \(agent.log)")
    #expect(agent.log.contains("exec: restarting the child after a backoff"), "log: \(agent.log)")
    agent.signal(SIGTERM)
    #expect(await agent.waitForExit() == 6, "log: \(agent.log)")
  }

  @Test("bad exec settings are refused with exit 2, naming the file and line or the flag")
  func badSettings() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let config = try Self.config(h, extra: "exec: {command: [sleep, \"1\"], signal: SIGBOGUS}")
    let file = try await EtcsyncProcess.run(["run", "-c", config])
    #expect(file.status == 2)
    #expect(file.error.contains("run.yaml:6") && file.error.contains("exec.signal"), "\(file.error)")
    let good = try Self.config(h)
    let flag = try await EtcsyncProcess.run(["run", "-c", good, "--exec-signal", "SIGBOGUS", "--exec", "--", "true"])
    #expect(flag.status == 2)
    #expect(flag.error.contains("--exec-signal SIGBOGUS"), "\(flag.error)")
    let noCommand = try await EtcsyncProcess.run(["run", "-c", good, "--exec"])
    #expect(noCommand.status == 2)
    #expect(noCommand.error.contains("--exec needs a command after --"), "\(noCommand.error)")
    let noExec = try await EtcsyncProcess.run(["run", "-c", good, "--", "true"])
    #expect(noExec.status == 2)
    #expect(noExec.error.contains("runs only with --exec"), "\(noExec.error)")
  }

  /// Whether `unshare --pid --fork` works here (root, or user namespaces allowed).
  static let unshareWorks: Bool = {
    guard let path = ["/usr/bin/unshare", "/bin/unshare"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
      return false
    }
    guard let process = try? ChildProcess([path, "--pid", "--fork", "--mount-proc", "true"]),
      process.waitUntilExit(within: .seconds(60))
    else { return false }
    return process.terminationStatus == 0
  }()

  @Test("as PID 1 (a new PID namespace) etcsync reaps orphans, and its check commands and child keep their statuses",
        .enabled(if: ExecModeTests.unshareWorks, "`unshare --pid --fork --mount-proc true` fails here (not root, or no PID namespaces): skipped"))
  func reapsOrphansAsInit() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/e/x", "v0")
    let template = h.dir("a.tmpl")
    try Disk.write(template, "a={{getv \"/e/a\" \"none\"}}\n")
    let config = h.dir("run.yaml")
    // /metrics on loopback: `unshare --pid` leaves the network namespace shared.
    let port = try freePorts(1)[0]
    // Every write passes a check (exit 0): a status stolen by the reaper would read as 255
    // and fail the mapping.
    try Disk.write(config, """
      etcd: {endpoints: [\(h.server.endpoint)]}
      state: {dir: \(h.dir("state"))}
      metrics: {listen: "127.0.0.1:\(port)"}
      mappings:
        - {name: x, key: /e/x, dest: \(h.dir("x")), check: [sh, -c, "exit 0"], reload: [sh, -c, "echo reload >> '\(h.commandLog)'"]}
      """)
    // The child leaves 40 orphans behind (each `sleep` outlives the subshell that started
    // it), which the kernel re-parents to PID 1: etcsync.
    let script = h.dir("orphans.sh")
    try Disk.write(script, """
      trap 'echo hup >> "\(h.commandLog)"' HUP
      trap 'exit 9' TERM
      i=0
      while [ $i -lt 40 ]; do (sleep 0.01 &); i=$((i+1)); done
      echo orphaned >> '\(h.commandLog)'
      while :; do sleep 0.05; done

      """)
    let unshare = try LoggedProcess(["unshare", "--pid", "--fork", "--mount-proc", EtcsyncProcess.binary,
                                              "run", "-c", config, "--log-level", "debug", "--exec", "--", "sh", script],
                                             log: h.dir("run.log"))
    defer { unshare.kill9() }
    #expect(await eventually { h.count("orphaned") == 1 }, "log: \(unshare.log)")
    #expect(unshare.log.contains("running as PID 1"), "log: \(unshare.log)")
    #expect(await eventually { Self.count("reaped an orphaned process", in: unshare.log) >= 40 }, "log: \(unshare.log)")
    // Each reaped orphan is counted (every `sleep`, and the subshells that started them).
    #expect(await eventually { (OperationsTests.sample(await OperationsTests.get(port, "/metrics")?.body ?? "", "etcsync_orphans_reaped_total") ?? 0) >= 40 },
            "log: \(unshare.log)")
    // Checks and reloads run while orphans are reaped: none loses its status.
    for value in ["v1", "v2", "v3", "v4", "v5"] {
      try await h.put("/e/x", value)
      #expect(await eventually { Disk.read(h.dir("x")) == value && h.count("hup") == Int(value.dropFirst())! }, "log: \(unshare.log)")
    }
    // The first sync's write ran the reload too.
    #expect(h.count("reload") == 6, "\(h.commandLines)")
    // Five changes, five SIGHUPs; every orphan logged as reaped was counted first (the
    // counter goes up before the log line, and the log is read before the scrape).
    let logged = Self.count("reaped an orphaned process", in: unshare.log)
    let scrape = await OperationsTests.get(port, "/metrics")?.body ?? ""
    #expect(OperationsTests.sample(scrape, #"etcsync_exec_signals_total{signal="SIGHUP",reason="change"}"#) == 5, "\(scrape)")
    #expect((OperationsTests.sample(scrape, "etcsync_orphans_reaped_total") ?? 0) >= Double(logged), "\(scrape)")
    #expect(!unshare.log.contains("mapping failed"), "log: \(unshare.log)")
    // etcsync (unshare's child, PID 1 inside) has no zombie child left.
    let etcsync = Self.children(of: unshare.pid).first
    #expect(etcsync != nil)
    if let etcsync {
      #expect(await eventually { Self.children(of: etcsync).allSatisfy { Self.state(of: $0) != "Z" } })
      kill(etcsync, SIGTERM)
    }
    // unshare exits with etcsync's status, which is the child's.
    #expect(await unshare.waitForExit() == 9, "log: \(unshare.log)")
  }

  /// How many lines of `log` contain `text`.
  static func count(_ text: String, in log: String) -> Int {
    log.split(separator: "\n").filter { $0.contains(text) }.count
  }

  /// The pids of `pid`'s children (every thread's), from /proc.
  static func children(of pid: pid_t) -> [pid_t] {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
    return tasks.flatMap { task in
      (Disk.read("/proc/\(pid)/task/\(task)/children") ?? "").split(separator: " ").compactMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }
  }

  /// The one-letter state of `pid` (`Z` for a zombie), nil once it is gone.
  static func state(of pid: pid_t) -> String? {
    guard let stat = Disk.read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
    return stat[stat.index(close, offsetBy: 2)...].split(separator: " ").first.map(String.init)
  }
}

/// A program run as a child process with its output going to a log (`unshare` around
/// etcsync), like ``EtcsyncProcess``.
final class LoggedProcess: @unchecked Sendable {
  let process: ChildProcess
  let logPath: String

  init(_ argv: [String], log logPath: String) throws {
    self.logPath = logPath
    _ = FileManager.default.createFile(atPath: logPath, contents: nil)
    self.process = try ChildProcess(argv, output: logPath, error: logPath)
  }

  var pid: pid_t { self.process.processIdentifier }
  var log: String { Disk.read(self.logPath) ?? "" }

  /// Waits for the process to exit (the limit only bounds a failing test); its status.
  func waitForExit(within limit: Duration = .seconds(30)) async -> Int32? {
    await self.process.exit(within: limit) ? self.process.terminationStatus : nil
  }

  /// Kills it and its children if it still runs (test clean-up).
  func kill9() {
    guard self.process.isRunning else { return }
    ProcessTree.kill(self.process)
  }
}
