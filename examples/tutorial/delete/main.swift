// The clientv3 tutorial's "delete": one key with its previous value, then a prefix, then
// every key from a key on.
//
// Note: the tutorial shows a delete "with limit". etcd's DeleteRange has no limit field: a
// range or prefix delete always removes every matching key, in one revision.
import EtcdClient
import Foundation

let endpoint = ProcessInfo.processInfo.environment["ETCD_ENDPOINTS"] ?? "http://127.0.0.1:2379"
try await withEtcdClient(try EtcdConfiguration(endpoints: [endpoint])) { etcd in
  for key in ["a", "b/1", "b/2", "c", "d"] { try await etcd.put("/tutorial/delete/\(key)", key) }

  let one = try await etcd.delete("/tutorial/delete/a", prevKV: true)
  print("deleted \(one.deleted) key; it held \(one.prevKVs.first?.valueString ?? "?")")

  let prefix = try await etcd.delete(.prefix("/tutorial/delete/b/"))
  print("deleted \(prefix.deleted) keys with prefix /tutorial/delete/b/")

  let fromKey = try await etcd.delete(.fromKey("/tutorial/delete/c"), prevKV: true)
  print("deleted \(fromKey.deleted) keys from /tutorial/delete/c on: \(fromKey.prevKVs.map(\.keyString))")
}
