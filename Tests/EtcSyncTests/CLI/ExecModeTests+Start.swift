import EtcSync
import EtcdTestSupport
import Foundation
import Glibc
import Testing

// Exec mode's start: a mapping failing at start holds the child back; a command that cannot
// start ends etcsync as a shell would; `etcsync check` looks the command up.
extension ExecModeTests {
  @Test("a mapping that fails at start holds the child back, and the log says so once, naming it; once it renders the child starts and reads the file")
  func failingMappingHoldsChildBack() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/e/x", "v0")
    // `getv` without a default: the template fails while /e/need is missing.
    let template = h.dir("need.tmpl")
    try Disk.write(template, "need={{getv \"/e/need\"}}\n")
    let config = h.dir("run.yaml")
    try Disk.write(config, """
      etcd: {endpoints: [\(h.server.endpoint)]}
      state: {dir: \(h.dir("state"))}
      mappings:
        - {name: x, key: /e/x, dest: \(h.dir("x"))}
        - {name: need, prefixes: [/e/], template: \(template), dest: \(h.dir("need.conf"))}
      """)
    let agent = try EtcsyncProcess(["run", "-c", config, "--exec", "--", "sh", "-c",
                                    "echo \"start $(cat '\(h.dir("need.conf"))')\" >> '\(h.commandLog)'; trap 'exit 0' TERM; while :; do sleep 0.05; done"],
                                   log: h.dir("run.log"))
    defer { agent.kill9() }
    let notice = "exec: the child waits until every mapping renders"
    #expect(await eventually { agent.log.contains(notice) }, "log: \(agent.log)")
    // The notice names the failing mapping (and not the one that rendered).
    let line = try #require(agent.log.split(separator: "\n").first { $0.contains(notice) })
    #expect(line.contains(#"exec.failing_mappings="[\"need\"]""#), "\(line)")
    #expect(!line.contains("\"x\""), "\(line)")
    // The other mapping was written; the child was not started.
    #expect(await eventually { Disk.read(h.dir("x")) == "v0" }, "log: \(agent.log)")
    #expect(h.commandLines.isEmpty, "\(h.commandLines)")
    #expect(!agent.log.contains("exec: child started"), "log: \(agent.log)")
    #expect(Disk.read(h.dir("need.conf")) == nil)

    // The key appears: the mapping renders and the child starts, reading the file.
    try await h.put("/e/need", "yes")
    #expect(await eventually { h.commandLines == ["start need=yes"] }, "log: \(agent.log)")
    agent.signal(SIGTERM)
    #expect(await agent.waitForExit() == 0, "log: \(agent.log)")
    // Said once, however often the mapping was retried meanwhile.
    #expect(Self.count(notice, in: agent.log) == 1, "log: \(agent.log)")
  }

  @Test("a command that cannot start ends etcsync as a shell would: 127 when not found, 126 when not executable",
        arguments: [("missing", Int32(127)), ("plain", Int32(126)), ("directory", Int32(126))])
  func commandCannotStart(kind: String, status: Int32) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/e/x", "v0")
    let command: String
    switch kind {
    case "missing":
      command = "etcsync-no-such-command"
    case "plain":
      command = h.dir("plain.sh")
      try Disk.write(command, "#!/bin/sh\necho ran >> '\(h.commandLog)'\n")
      #expect(chmod(command, 0o644) == 0)
    default:
      command = h.dir("a-directory")
      try FileManager.default.createDirectory(atPath: command, withIntermediateDirectories: false)
    }
    let agent = try EtcsyncProcess(["run", "-c", try Self.config(h), "--exec", "--", command, "arg"], log: h.dir("run.log"))
    defer { agent.kill9() }
    #expect(await agent.waitForExit() == status, "log: \(agent.log)")
    #expect(agent.log.contains("exec: the child cannot start"), "log: \(agent.log)")
    // The files were rendered first; nothing ran.
    #expect(Disk.read(h.dir("x")) == "v0")
    #expect(h.commandLines.isEmpty)
  }

  @Test("etcsync check looks exec.command[0] up in PATH, as it does check and reload programs")
  func checkFindsExecCommand() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let good = try Self.config(h, extra: "exec: {command: [sh, -c, \"exit 0\"]}")
    let passed = try await EtcsyncProcess.run(["check", "-c", good])
    #expect(passed.status == 0, "\(passed.error)")
    let bad = try Self.config(h, extra: "exec: {command: [etcsync-no-such-command, -x]}")
    let failed = try await EtcsyncProcess.run(["check", "-c", bad])
    #expect(failed.status == 2)
    // Line 6: the `exec:` line of the file (the command list is on it).
    #expect(failed.error.contains("run.yaml:6:") && failed.error.contains("exec.command[0]")
              && failed.error.contains("\"etcsync-no-such-command\" is not found in PATH"), "\(failed.error)")
  }
}
