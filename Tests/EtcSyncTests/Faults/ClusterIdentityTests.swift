import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Testing

/// An etcd that is not the one the files came from (another cluster, or one whose revision
/// went back) is refused loudly, and no file is touched.
@Suite("Faults: a replaced or restored cluster is refused")
struct ClusterIdentityTests {
  static func mapping(_ h: AgentHarness) -> Mapping {
    Mapping(name: "tree", kind: .tree, prefixes: ["/c/"], dest: h.dir("tree"), swap: .inPlace)
  }

  @Test("another cluster behind the same endpoint: refused, files untouched")
  func anotherCluster() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/c/a", "from the first cluster")
    let configuration = h.configuration([Self.mapping(h)])
    _ = try await h.agent(configuration).sync()
    #expect(Disk.read(h.dir("tree/a")) == "from the first cluster")
    // A new cluster (a wiped or restored one) with other content.
    let other = try await EtcdServer.start()
    defer { other.destroy() }
    let client = try RunningClient(other.configuration())
    defer { client.stop() }
    _ = try await client.client.put("/c/a", "from another cluster")
    let agent = try Agent(configuration: configuration, client: client.client, logger: h.logger)
    await #expect {
      try await agent.sync()
    } throws: { error in
      "\(error)".contains("is not the cluster") && "\(error)".contains("Remove \(h.stateDirectory)/state.json")
    }
    #expect(Disk.read(h.dir("tree/a")) == "from the first cluster")
    // Removing the state file is the operator's way to accept it.
    try FileManager.default.removeItem(atPath: h.stateDirectory + "/state.json")
    _ = try await Agent(configuration: configuration, client: client.client, logger: h.logger).sync()
    #expect(Disk.read(h.dir("tree/a")) == "from another cluster")
  }

  @Test("the daemon's endpoint now leads to another cluster that compacted past the applied revision: the re-read is refused, files untouched")
  func anotherClusterAfterCompaction() async throws {
    let first = try await EtcdServer.start()
    defer { first.destroy() }
    let other = try await EtcdServer.start()
    defer { other.destroy() }
    let proxy = try await TCPProxy.start(targetPort: first.clientPort)
    let port = Int(proxy.endpoint.split(separator: ":").last!)!
    let writer = try RunningClient(first.configuration())
    defer { writer.stop() }
    _ = try await writer.client.put("/c/a", "from the first cluster")
    // The other cluster: more revisions than the first, all compacted away.
    let otherWriter = try RunningClient(other.configuration())
    defer { otherWriter.stop() }
    var last: Int64 = 0
    for index in 0..<20 { last = try await otherWriter.client.put("/c/a", "from another cluster \(index)").header.revision }
    _ = try await otherWriter.client.compact(last)

    let dir = TemporaryDirectory("etcsync-cluster")
    defer { withExtendedLifetime(dir) {} }
    let agentClient = try RunningClient(try EtcdConfiguration(endpoints: [proxy.endpoint]))
    defer { agentClient.stop() }
    let (logger, _) = RecordingLogHandler.logger()
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/c/"], dest: dir("tree"), swap: .inPlace)
    let configuration = AgentConfiguration(mappings: [mapping], state: StateSettings(dir: dir("state")), commandTimeout: .seconds(10))
    let agent = try Agent(configuration: configuration, client: agentClient.client, logger: logger)
    let daemon = Daemon(agent)
    #expect(await eventually { Disk.read(dir("tree/a")) == "from the first cluster" })
    // The endpoint now leads to the other cluster: the watch resumes there, below its compaction.
    await proxy.stop()
    let moved = try await TCPProxy.start(targetPort: other.clientPort, listenPort: port)
    defer { Task { await moved.stop() } }
    #expect(await eventually(within: .seconds(30)) { daemon.hasEnded })
    let error = await daemon.stop()
    #expect(error != nil && "\(error!)".contains("cluster"), "\(String(describing: error))")
    #expect(Disk.read(dir("tree/a")) == "from the first cluster")
  }

  @Test("a revision behind the applied one (an older backup): refused, files untouched")
  func revisionWentBack() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/c/a", "1")
    let configuration = h.configuration([Self.mapping(h)])
    _ = try await h.agent(configuration).sync()
    // The state says a later revision was applied than etcd has now.
    let path = h.stateDirectory + "/state.json"
    var state = try JSONDecoder().decode(SyncState.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    state.mappings["tree"]?.appliedRevision = 1_000
    try JSONEncoder().encode(state).write(to: URL(fileURLWithPath: path))
    try await h.put("/c/a", "2")
    await #expect {
      try await h.agent(configuration).sync()
    } throws: { error in
      "\(error)".contains("is behind the applied revision 1000")
    }
    #expect(Disk.read(h.dir("tree/a")) == "1")
  }
}
