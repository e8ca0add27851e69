// The clientv3 tutorial's "get": count the keys under a prefix, then read them.
import EtcdClient
import Foundation

let endpoint = ProcessInfo.processInfo.environment["ETCD_ENDPOINTS"] ?? "http://127.0.0.1:2379"
try await withEtcdClient(try EtcdConfiguration(endpoints: [endpoint])) { etcd in
  for i in 0..<3 { try await etcd.put("/tutorial/get/key\(i)", "value\(i)") }

  let count = try await etcd.get(.prefix("/tutorial/get/"), options: GetOptions(countOnly: true))
  print("\(count.count) keys under /tutorial/get/ (countOnly)")

  let all = try await etcd.get(.prefix("/tutorial/get/"))
  for kv in all.kvs { print("\(kv.keyString) = \(kv.valueString) (mod revision \(kv.modRevision))") }
}
