// The clientv3 tutorial's "connect": open a client, ask the cluster who it is, close it.
// Usage: example-connect [ENDPOINT...]   (default: $ETCD_ENDPOINTS or http://127.0.0.1:2379)
import EtcdClient
import Foundation

let endpoints = CommandLine.arguments.dropFirst().isEmpty
  ? (ProcessInfo.processInfo.environment["ETCD_ENDPOINTS"] ?? "http://127.0.0.1:2379").split(separator: ",").map(String.init)
  : Array(CommandLine.arguments.dropFirst())
var configuration = try EtcdConfiguration(endpoints: endpoints)
configuration.dialTimeout = .seconds(5)

try await withEtcdClient(configuration) { etcd in
  let status = try await etcd.connect()  // fails after dialTimeout if no member answers
  print("connected to etcd \(status.version), cluster \(String(status.clusterID, radix: 16)), revision \(status.revision)")
  for member in try await etcd.memberList() {
    print("member \(member.name): \(member.clientURLs.joined(separator: ", "))")
  }
}
