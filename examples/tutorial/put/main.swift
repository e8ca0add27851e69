// The clientv3 tutorial's "put": write a key, then overwrite it asking for the previous value.
import EtcdClient
import Foundation

let endpoint = ProcessInfo.processInfo.environment["ETCD_ENDPOINTS"] ?? "http://127.0.0.1:2379"
try await withEtcdClient(try EtcdConfiguration(endpoints: [endpoint])) { etcd in
  let first = try await etcd.put("/tutorial/put/foo", "bar1")
  print("put foo=bar1 at revision \(first.header.revision)")
  let second = try await etcd.put("/tutorial/put/foo", "bar2", options: PutOptions(prevKV: true))
  print("put foo=bar2 at revision \(second.header.revision); previous value: \(second.prevKV?.valueString ?? "none")")
}
