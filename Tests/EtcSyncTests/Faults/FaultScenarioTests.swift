import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Testing

/// The fault suite: each scenario runs a real agent process against real etcd, injects one
/// fault while a writer churns and a reader reads, and ends with the same check
/// (``FaultScenario/verify(since:sourceLocation:)``). Short faults here; `scripts/faults` sets
/// `ETCSYNC_FAULTS_LONG=1` for 30 s faults and a 1,000 ops/s churn.
@Suite("Faults: the agent survives, converges and loses nothing", .serialized)
struct FaultScenarioTests {
  /// How long a fault lasts.
  static let faultLength: Duration = faultsLong ? .seconds(30) : .seconds(4)

  /// Starts the agent and waits until it has applied a first write.
  static func begin(_ scenario: FaultScenario) async throws {
    try await scenario.write(0)
    try scenario.startAgent()
    let first = try #require(scenario.lastWrite).revision
    #expect(await eventually(within: .seconds(60)) { (await scenario.appliedRevision() ?? 0) >= first },
            "\(scenario.name): no first sync; log: \(scenario.agent?.log ?? "-")")
  }

  @Test("kill -9 of each member in turn, the leader included, in a 3-member cluster")
  func memberKills() async throws {
    let cluster = try await EtcdCluster.start()
    defer { cluster.destroy() }
    let scenario = try FaultScenario("kill -9 and restart of a member, then of the leader", endpoints: cluster.endpoints,
                                     clientConfiguration: cluster.configuration())
    defer { scenario.stop() }
    try await Self.begin(scenario)
    let churn = scenario.churn(from: 0, rate: 50)
    for member in cluster.members {
      member.kill9()
      try await Task.sleep(for: .seconds(1))
      try await member.restart()
    }
    let leader = cluster.members[try await cluster.leaderIndex()]
    leader.kill9()
    try await Task.sleep(for: .seconds(1))
    try await leader.restart()
    let ended = ContinuousClock.now
    try await scenario.finish(churn, faultEnded: ended)
  }

  @Test("two of three members killed (no quorum), then restored")
  func quorumLoss() async throws {
    let cluster = try await EtcdCluster.start()
    defer { cluster.destroy() }
    let scenario = try FaultScenario("two of three members killed, then restored", endpoints: cluster.endpoints,
                                     clientConfiguration: cluster.configuration())
    defer { scenario.stop() }
    try await Self.begin(scenario)
    let churn = scenario.churn(from: 0, rate: 50)
    try await Task.sleep(for: .milliseconds(500))
    cluster.members[0].kill9()
    cluster.members[1].kill9()
    // Without quorum the agent is not ready; its files stay as they were.
    #expect(await eventually(within: .seconds(30)) { await !scenario.isReady() }, "log: \(scenario.agent?.log ?? "-")")
    try await Task.sleep(for: Self.faultLength)
    try await cluster.members[0].restart(waitUntilReady: false)
    try await cluster.members[1].restart(waitUntilReady: false)
    let ended = ContinuousClock.now
    #expect(await eventually(within: .seconds(60)) { await scenario.isReady() })
    try await scenario.finish(churn, faultEnded: ended)
  }

  @Test("etcd stopped with SIGSTOP, then resumed")
  func sigstop() async throws {
    let server = try await EtcdServer.start()
    defer { server.destroy() }
    let scenario = try FaultScenario("SIGSTOP of etcd for \(Self.faultLength)", endpoints: [server.endpoint],
                                     clientConfiguration: server.configuration())
    defer { scenario.stop() }
    try await Self.begin(scenario)
    let churn = scenario.churn(from: 0, rate: 50)
    try await Task.sleep(for: .milliseconds(500))
    server.pause()
    #expect(await eventually(within: .seconds(30)) { await !scenario.isReady() }, "a stalled etcd makes the agent not ready")
    try await Task.sleep(for: Self.faultLength)
    server.resume()
    let ended = ContinuousClock.now
    try await scenario.finish(churn, faultEnded: ended)
    #expect(await eventually { await scenario.isReady() }, "ready again once etcd answers")
  }

  @Test("compaction and defragmentation while the agent watches, under churn")
  func compactionUnderChurn() async throws {
    let server = try await EtcdServer.start()
    defer { server.destroy() }
    let scenario = try FaultScenario(faultsLong ? "churn of 1,000 ops/s for 30 s, compaction every 5 s" : "churn, compaction every second, defragmentation",
                                     endpoints: [server.endpoint], clientConfiguration: server.configuration())
    defer { scenario.stop() }
    try await Self.begin(scenario)
    let churn = scenario.churn(from: 0, rate: faultsLong ? 1_000 : 200)
    let rounds = faultsLong ? 6 : 4
    for round in 0..<rounds {
      try await Task.sleep(for: faultsLong ? .seconds(5) : .seconds(1))
      if let revision = scenario.lastWrite?.revision {
        _ = try await scenario.client.client.compact(revision)
      }
      if round == rounds / 2 { _ = try await scenario.client.client.defragment() }
    }
    let ended = ContinuousClock.now
    try await scenario.finish(churn, faultEnded: ended)
  }

  @Test("compaction and defragmentation while the agent is stopped")
  func compactionWhileStopped() async throws {
    let server = try await EtcdServer.start()
    defer { server.destroy() }
    let scenario = try FaultScenario("compaction and defragmentation while the agent is stopped", endpoints: [server.endpoint],
                                     clientConfiguration: server.configuration())
    defer { scenario.stop() }
    try await Self.begin(scenario)
    scenario.agent?.signal(SIGTERM)
    #expect(await scenario.agent?.waitForExit() == 0)
    for generation in 1...50 { try await scenario.write(generation) }
    _ = try await scenario.client.client.compact(try #require(scenario.lastWrite).revision)
    _ = try await scenario.client.client.defragment()
    let ended = ContinuousClock.now
    try scenario.startAgent()
    _ = try await scenario.verify(since: ended)
  }

  @Test("the agent killed with SIGKILL mid-churn, three times, and restarted")
  func agentKills() async throws {
    let server = try await EtcdServer.start()
    defer { server.destroy() }
    let scenario = try FaultScenario("agent kill -9 mid-write, three times", endpoints: [server.endpoint],
                                     clientConfiguration: server.configuration())
    defer { scenario.stop() }
    try await Self.begin(scenario)
    let churn = scenario.churn(from: 0, rate: 200)
    for _ in 0..<3 {
      try await Task.sleep(for: .milliseconds(Int.random(in: 300...900)))
      scenario.killAgent()
      try scenario.startAgent()
    }
    let ended = ContinuousClock.now
    try await scenario.finish(churn, faultEnded: ended)
  }

  @Test("network black-hole (no RST) through a proxy, then the connections reset")
  func blackhole() async throws {
    let server = try await EtcdServer.start()
    defer { server.destroy() }
    let proxy = try await TCPProxy.start(targetPort: server.clientPort)
    let scenario = try FaultScenario("proxy black-hole for \(Self.faultLength), then resets", endpoints: [proxy.endpoint],
                                     clientConfiguration: server.configuration())
    defer { scenario.stop() }
    try await Self.begin(scenario)
    let churn = scenario.churn(from: 0, rate: 50)
    try await Task.sleep(for: .milliseconds(500))
    proxy.blackhole()
    #expect(await eventually(within: .seconds(30)) { await !scenario.isReady() }, "a silent network makes the agent not ready")
    try await Task.sleep(for: Self.faultLength)
    proxy.resetAll()
    proxy.pass()
    let ended = ContinuousClock.now
    try await scenario.finish(churn, faultEnded: ended)
    #expect(await eventually { await scenario.isReady() })
    await proxy.stop()
  }

  @Test("auth tokens that expire every 5 s, under churn")
  func authTokenTTL() async throws {
    let server = try await EtcdServer.start(arguments: ["--auth-token", "simple", "--auth-token-ttl", "5"])
    defer { server.destroy() }
    let password = "fault-pass"
    do {
      let admin = try RunningClient(server.configuration())
      defer { admin.stop() }
      try await admin.client.enableAuthentication(rootPassword: password)
    }
    var configuration = server.configuration()
    configuration.credentials = .init(username: "root", password: password)
    let scenario = try FaultScenario("auth token TTL of 5 s, churn for \(faultsLong ? 30 : 12) s", endpoints: [server.endpoint],
                                     clientConfiguration: configuration, auth: ("root", password))
    defer { scenario.stop() }
    try await Self.begin(scenario)
    let churn = scenario.churn(from: 0, rate: 20)
    try await Task.sleep(for: faultsLong ? .seconds(30) : .seconds(12))
    let ended = ContinuousClock.now
    try await scenario.finish(churn, faultEnded: ended)
  }
}
