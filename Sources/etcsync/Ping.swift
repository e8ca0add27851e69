import ArgumentParser
import EtcdClient

/// `etcsync ping`: connects to the cluster and prints every member's status.
struct Ping: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Connect to etcd and print the cluster's members and revision.",
    discussion: "Example: etcsync ping --endpoints http://127.0.0.1:2379"
  )

  @Option(name: .long, parsing: .singleValue, help: "An etcd client URL; repeat for several members.")
  var endpoints: [String] = ["http://127.0.0.1:2379"]

  @Option(help: "How long to wait for a member to answer: \(DurationFlag.helpForm).", transform: DurationFlag.parse)
  var timeout = DurationFlag(seconds: 5)

  func run() async throws {
    var configuration: EtcdConfiguration
    do {
      configuration = try EtcdConfiguration(endpoints: self.endpoints)
    } catch {
      throw ValidationError("--endpoints: \(error.message)")
    }
    configuration.dialTimeout = self.timeout.duration
    try await withEtcdClient(configuration) { etcd in
      do {
        let status = try await etcd.connect()
        print("cluster \(String(status.clusterID, radix: 16)) at revision \(status.revision), etcd \(status.version)")
        for member in try await etcd.memberList() {
          let leader = member.id == status.leader ? " (leader)" : ""
          print("  \(member.name)\(leader): \(member.clientURLs.joined(separator: ", "))")
        }
      } catch {
        print("etcsync: cannot reach etcd at \(self.endpoints.joined(separator: ", ")): \(error)")
        throw ExitCode(3)
      }
    }
  }
}
