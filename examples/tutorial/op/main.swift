// The clientv3 tutorial's "op": build operations as values and run them with `do`, alone or
// together in a transaction.
import EtcdClient
import Foundation

let endpoint = ProcessInfo.processInfo.environment["ETCD_ENDPOINTS"] ?? "http://127.0.0.1:2379"
try await withEtcdClient(try EtcdConfiguration(endpoints: [endpoint])) { etcd in
  let put = Op.put("/tutorial/op/foo", "bar")
  let get = Op.get("/tutorial/op/foo")

  let putResponse = try await etcd.do(put)
  print("OpPut done at revision \(putResponse.header.revision)")
  let getResponse = try await etcd.do(get)
  print("OpGet: \(getResponse.get?.kvs.first?.valueString ?? "missing")")

  // The same values as the branches of a Txn.
  let txn = try await etcd.do(.txn(compare: [.value("/tutorial/op/foo", .equal, "bar")],
                                   success: [.put("/tutorial/op/foo", "baz"), get], failure: []))
  print("OpTxn succeeded: \(txn.txn?.succeeded ?? false); value now \(txn.txn?.responses.last?.get?.kvs.first?.valueString ?? "?")")
}
