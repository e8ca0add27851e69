import EtcdClient
import EtcdTestSupport
import Foundation
import Testing

/// Writes `key` once, retrying while the cluster elects a leader: a proposal that dies with
/// the old leader fails with "request timed out" and may or may not have been applied, so the
/// write is a put-if-absent that is safe to repeat.
func putOnce(_ etcd: EtcdClient, _ key: String, _ value: String) async throws {
  var attempts = 0
  while true {
    attempts += 1
    do {
      _ = try await etcd.txn(if: [.version(key, .equal, 0)], then: [.put(key, value)])
      return
    } catch {
      guard error.isTransient, attempts < 30 else { throw error }
      try await Task.sleep(for: .milliseconds(500))
    }
  }
}

@Suite("Failover in a real 3-member cluster") struct ClusterTests {
  @Test func requestsAndWatchSurviveKillingEachMemberInTurn() async throws {
    try await EtcdCluster.with { cluster in
      try await withEtcdClient(cluster.configuration()) { etcd in
        #expect(try await etcd.memberList().count == 3)
        let start = try await etcd.put("/f/0", "0").header.revision
        let watch = EventCollector(etcd.watch(.prefix("/f/"), options: WatchOptions(startRevision: start)))
        var written = 1
        // Kill the leader, then each other member, one at a time: every request made while
        // two members are up must succeed, and the watch must see every write.
        for round in 0..<3 {
          let victim = round == 0 ? try await cluster.leaderIndex() : (try await cluster.leaderIndex() + 1) % 3
          cluster.members[victim].kill9()
          for _ in 0..<20 {
            try await putOnce(etcd, "/f/\(written)", "\(written)")
            written += 1
          }
          #expect(try await etcd.get(.prefix("/f/"), options: GetOptions(countOnly: true)).count == Int64(written))
          try await cluster.members[victim].restart()
        }
        let expected = written
        #expect(await watch.wait { $0.events.count == expected })
        #expect(watch.events.map(\.kv.keyString) == (0..<written).map { "/f/\($0)" })
        watch.stop()
      }
    }
  }

  /// The client keepalive must notice a member that stopped answering (SIGSTOP keeps its
  /// sockets open, so nothing else would), even though an earlier RPC on the same connection
  /// finished before the watch opened. The watch then resumes on another member.
  @Test func aLongLivedWatchDetectsAStoppedMember() async throws {
    try await EtcdCluster.with { cluster in
      var configuration = try EtcdConfiguration(endpoints: [cluster.members[0].endpoint, cluster.members[1].endpoint])
      configuration.keepaliveTime = .seconds(5)
      configuration.keepaliveTimeout = .seconds(1)
      configuration.requestTimeout = .seconds(60)
      try await withEtcdClient(configuration) { etcd in
        _ = try await etcd.get("/warm-up")  // first RPC opens and closes before the watch
        _ = try await etcd.status()
        let start = try await etcd.put("/s/0", "0").header.revision
        let watch = EventCollector(etcd.watch(.prefix("/s/"), options: WatchOptions(startRevision: start)))
        #expect(await watch.wait { $0.events.count == 1 })
        var expected = 1
        // Stop member 0, then member 1 (with 0 running again): whichever one carries the
        // watch, one of the two rounds stops it, and the event must still arrive.
        for index in [0, 1] {
          let member = cluster.members[index]
          member.pause()
          let key = "/s/\(expected)"
          try await withEtcdClient(cluster.members[2].configuration()) { try await putOnce($0, key, "x") }
          expected += 1
          let count = expected
          #expect(await watch.wait(upTo: .seconds(40)) { $0.events.count == count }, "stopped member \(index)")
          member.resume()
        }
        #expect(watch.error == nil)
        watch.stop()
      }
    }
  }
}
