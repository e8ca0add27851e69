// The clientv3 tutorial's "watch": watch a prefix from the revision after a put, and print
// each PUT and DELETE with its revision.
import EtcdClient
import Foundation

let endpoint = ProcessInfo.processInfo.environment["ETCD_ENDPOINTS"] ?? "http://127.0.0.1:2379"
try await withEtcdClient(try EtcdConfiguration(endpoints: [endpoint])) { etcd in
  let start = try await etcd.put("/tutorial/watch/start", "").header.revision

  // Writes that happen after `start`, while (or before) the watch is set up: none is missed,
  // because the watch starts at start + 1.
  try await etcd.put("/tutorial/watch/foo", "bar")
  try await etcd.put("/tutorial/watch/foo", "baz")
  try await etcd.delete("/tutorial/watch/foo")

  var seen = 0
  for try await response in etcd.watch(.prefix("/tutorial/watch/"), options: WatchOptions(startRevision: start + 1)) {
    for event in response.events {
      let kind = event.kind == .put ? "PUT" : "DELETE"
      print("\(kind) \(event.kv.keyString) = \(event.kv.valueString) at revision \(event.revision)")
      seen += 1
    }
    if seen == 3 { break }
  }
}
