// The clientv3 tutorial's "lease": grant a 10 s lease, attach a key, keep it alive for a
// while, then stop and watch the key expire with the lease.
import EtcdClient
import Foundation

let endpoint = ProcessInfo.processInfo.environment["ETCD_ENDPOINTS"] ?? "http://127.0.0.1:2379"
try await withEtcdClient(try EtcdConfiguration(endpoints: [endpoint])) { etcd in
  let lease = try await etcd.grant(ttl: 10)
  print("granted lease \(String(lease.id, radix: 16)) with TTL \(lease.ttl) s")
  try await etcd.put("/tutorial/lease/foo", "bar", options: PutOptions(lease: lease.id))

  // Keep the lease alive for 12 s, longer than its TTL.
  let keeper = Task {
    for try await renewal in etcd.keepAlive(lease.id) { print("keep-alive: TTL \(renewal.ttl) s") }
  }
  try await Task.sleep(for: .seconds(12))
  print("after 12 s the key is \(try await etcd.value("/tutorial/lease/foo") == nil ? "gone" : "still there")")

  keeper.cancel()  // stop renewing: the lease now expires within its TTL
  print("keep-alive stopped; waiting for the lease to expire...")
  let clock = ContinuousClock()
  let stopped = clock.now
  while try await etcd.value("/tutorial/lease/foo") != nil {
    try await Task.sleep(for: .milliseconds(250))
  }
  print("key expired with its lease after \(clock.now - stopped)")
}
