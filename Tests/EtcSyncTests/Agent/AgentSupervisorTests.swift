import EtcSync
import EtcdTestSupport
import Foundation
import Logging
import Testing

/// `AgentSupervisor`: SIGHUP generations in-process, against a real etcd (the CLI's daemon tests
/// drive the same code through signals).
@Suite("Agent supervisor reloads", .serialized)
struct AgentSupervisorTests {
  /// A supervisor for the configuration file `path`, on the harness's client.
  static func supervisor(_ h: AgentHarness, config path: String) throws -> AgentSupervisor {
    let load: AgentSupervisor.Load = { try AgentConfiguration.load(path: path, environment: [:]) }
    let client = h.client
    return AgentSupervisor(configuration: try load(), logger: h.logger, load: load,
                           connect: { _, body in try await body(client) })
  }

  /// A configuration file on the harness's etcd and state directory, with `mappings` (YAML lines).
  static func config(_ h: AgentHarness, _ mappings: String) -> String {
    """
    etcd: {endpoints: [\(h.server.endpoint)]}
    state: {dir: \(h.stateDirectory)}
    mappings:
    \(mappings)
    """
  }

  @Test("a reload applies the new configuration and stops the old agent first")
  func reloadReplacesAgent() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let path = h.dir("run.yaml")
    try Disk.write(path, Self.config(h, "  - {name: a, key: /s/a, dest: \(h.dir("a"))}"))
    try await h.put("/s/a", "1")
    let supervisor = try Self.supervisor(h, config: path)
    let running = Task { try await supervisor.run() }
    #expect(await eventually { Disk.read(h.dir("a")) == "1" })
    let old = try #require(supervisor.agent)

    // Mapping a moves to a2, and b is new.
    try await h.put("/s/b", "2")
    try Disk.write(path, Self.config(h, """
        - {name: a, key: /s/a, dest: \(h.dir("a2"))}
        - {name: b, key: /s/b, dest: \(h.dir("b"))}
      """))
    supervisor.reload()
    #expect(await eventually { supervisor.generations == 2 && Disk.read(h.dir("b")) == "2" && Disk.read(h.dir("a2")) == "1" })
    #expect(supervisor.stoppedGenerations == 1, "the old agent had stopped before the new one started")
    #expect(supervisor.agent !== old)
    #expect(h.messages(atLeast: .info).contains("configuration reloaded"))

    try await h.put("/s/a", "3")
    #expect(await eventually { Disk.read(h.dir("a2")) == "3" })
    #expect(Disk.read(h.dir("a")) == "1", "the stopped agent wrote no more")

    supervisor.stop()
    try await running.value
    #expect(supervisor.stoppedGenerations == 2)
    #expect(h.messages(atLeast: .info).contains("stopped"))
  }

  @Test("a configuration that does not load, or whose agent cannot be built, keeps the old agent running")
  func invalidReloadKeepsAgent() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let path = h.dir("run.yaml")
    try Disk.write(path, Self.config(h, "  - {name: a, key: /s/a, dest: \(h.dir("a"))}"))
    try await h.put("/s/a", "1")
    let supervisor = try Self.supervisor(h, config: path)
    let running = Task { try await supervisor.run() }
    #expect(await eventually { Disk.read(h.dir("a")) == "1" })
    let old = try #require(supervisor.agent)

    // Not YAML the configuration accepts; then a template that does not compile.
    try Disk.write(path, Self.config(h, "  - {name: a, key: /s/a, dest: \(h.dir("a")), nosuchkey: 1}"))
    supervisor.reload()
    let refusal = "configuration not reloaded; keeping the old one"
    #expect(await eventually { h.messages(atLeast: .error).filter { $0 == refusal }.count == 1 })
    try Disk.write(h.dir("bad.tmpl"), "{{ if }}")
    try Disk.write(path, Self.config(h, """
        - {name: a, key: /s/a, dest: \(h.dir("a"))}
        - {name: t, prefixes: [/s/], template: \(h.dir("bad.tmpl")), dest: \(h.dir("t"))}
      """))
    supervisor.reload()
    #expect(await eventually { h.messages(atLeast: .error).filter { $0 == refusal }.count == 2 })
    #expect(supervisor.generations == 1 && supervisor.stoppedGenerations == 0)
    #expect(supervisor.agent === old)

    try await h.put("/s/a", "2")
    #expect(await eventually { Disk.read(h.dir("a")) == "2" }, "the old agent still applies changes")
    supervisor.stop()
    try await running.value
  }

  @Test("an agent that cannot be built at start ends run() with a start error")
  func startError() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let path = h.dir("run.yaml")
    try Disk.write(h.dir("bad.tmpl"), "{{ if }}")
    try Disk.write(path, Self.config(h, "  - {name: t, prefixes: [/s/], template: \(h.dir("bad.tmpl")), dest: \(h.dir("t"))}"))
    let supervisor = try Self.supervisor(h, config: path)
    await #expect {
      try await supervisor.run()
    } throws: { error in
      guard case .configuration(let cause) = error as? AgentSupervisor.StartError else { return false }
      return cause.code == .configuration
    }
    #expect(supervisor.generations == 0)
  }
}
