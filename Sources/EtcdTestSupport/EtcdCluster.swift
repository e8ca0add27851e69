import EtcdClient
import Foundation

/// A real etcd cluster of several members on loopback, for failover and quorum tests.
public final class EtcdCluster: Sendable {
  public let members: [EtcdServer]

  init(members: [EtcdServer]) {
    self.members = members
  }

  /// Starts `size` members and waits until every one of them serves requests.
  public static func start(size: Int = 3, arguments: [String] = []) async throws -> EtcdCluster {
    try await StartGate.passing(places: size) {
      var lastError: (any Error)?
      for _ in 0..<3 {
        let ports = try freePorts(size * 2)
        let dir = try makeTempDirectory(prefix: "etcd-cluster")
        let names = (0..<size).map { "m\($0)" }
        let initial = names.enumerated().map { "\($1)=http://127.0.0.1:\(ports[2 * $0 + 1])" }.joined(separator: ",")
        let members = names.enumerated().map { index, name in
          EtcdServer(name: name, clientPort: ports[2 * index], peerPort: ports[2 * index + 1],
                     dataDir: "\(dir)/\(name)/data", initialCluster: initial, clusterToken: "c-\(ports[0])",
                     tls: nil, extraArguments: arguments)
        }
        let cluster = EtcdCluster(members: members)
        do {
          for member in members {
            try FileManager.default.createDirectory(atPath: "\(dir)/\(member.name)", withIntermediateDirectories: true)
            try member.launch()
          }
          for member in members { try await member.waitUntilReady() }
          return cluster
        } catch {
          lastError = error
          cluster.destroy()
        }
      }
      throw lastError!
    }
  }

  /// Runs `body` with a fresh cluster, and removes it afterwards.
  public static func with<T>(size: Int = 3, _ body: (EtcdCluster) async throws -> T) async throws -> T {
    let cluster = try await EtcdCluster.start(size: size)
    defer { cluster.destroy() }
    return try await body(cluster)
  }

  /// Every member's client URL.
  public var endpoints: [String] { self.members.map(\.endpoint) }

  /// A client configuration listing every member.
  public func configuration() -> EtcdConfiguration {
    var configuration = try! EtcdConfiguration(endpoints: self.endpoints)
    configuration.dialTimeout = .seconds(10)
    return configuration
  }

  /// The index of the current leader, asking each running member in turn.
  public func leaderIndex() async throws -> Int {
    for member in self.members where member.pid != nil {
      var configuration = member.configuration()
      configuration.requestTimeout = .seconds(2)
      let leader = try? await withEtcdClient(configuration) { try await $0.status() }
      guard let leader, leader.leader != 0 else { continue }
      let list = try await withEtcdClient(configuration) { try await $0.memberList() }
      if let name = list.first(where: { $0.id == leader.leader })?.name,
         let index = self.members.firstIndex(where: { $0.name == name }) {
        return index
      }
    }
    throw TestSupportError("no member knows a leader")
  }

  /// Kills every member and deletes the cluster's directories.
  public func destroy() {
    for member in self.members { member.kill9() }
    if let first = self.members.first {
      let root = ((first.dataDir as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
      try? FileManager.default.removeItem(atPath: root)
    }
  }
}
