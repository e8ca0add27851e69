import EtcdClient
import EtcdTestSupport
import Foundation
import Testing

/// Runs `body` with a client connected to a fresh single-member etcd.
func withEtcd<T: Sendable>(arguments: [String] = [], _ body: (EtcdClient, EtcdServer) async throws -> T) async throws -> T {
  try await EtcdServer.with(arguments: arguments) { server in
    try await withEtcdClient(server.configuration()) { client in try await body(client, server) }
  }
}

@Suite("KV against a real etcd") struct KVTests {
  @Test func putWithPrevKVAndGet() async throws {
    try await withEtcd { etcd, _ in
      let first = try await etcd.put("/k", "v1", options: PutOptions(prevKV: true))
      #expect(first.prevKV == nil)
      let second = try await etcd.put("/k", "v2", options: PutOptions(prevKV: true))
      #expect(second.prevKV?.valueString == "v1")
      #expect(second.header.revision == first.header.revision + 1)
      let kv = try #require(try await etcd.get("/k").kvs.first)
      #expect(kv.valueString == "v2")
      #expect(kv.version == 2)
      #expect(kv.createRevision == first.header.revision)
      #expect(kv.modRevision == second.header.revision)
    }
  }

  @Test func binaryKeysAndValuesSurvive() async throws {
    try await withEtcd { etcd, _ in
      let key: [UInt8] = [0x2F, 0x00, 0xFF, 0x80]
      let value: [UInt8] = (0...255).map { UInt8($0) }
      try await etcd.put(key, value)
      #expect(try await etcd.get(.key(key)).kvs.first?.value == value)
    }
  }

  @Test func putWithLeaseIgnoreValueAndIgnoreLease() async throws {
    try await withEtcd { etcd, _ in
      let lease = try await etcd.grant(ttl: 60)
      try await etcd.put("/leased", "v", options: PutOptions(lease: lease.id))
      #expect(try await etcd.get("/leased").kvs.first?.lease == lease.id)
      // ignoreLease: new value, same lease.
      try await etcd.put("/leased", "w", options: PutOptions(ignoreLease: true))
      let kv = try #require(try await etcd.get("/leased").kvs.first)
      #expect(kv.valueString == "w" && kv.lease == lease.id)
      // ignoreValue: detach from the lease, keep the value.
      try await etcd.put(Array("/leased".utf8), [], options: PutOptions(ignoreValue: true))
      let after = try #require(try await etcd.get("/leased").kvs.first)
      #expect(after.valueString == "w" && after.lease == 0)
    }
  }

  @Test func getOptions() async throws {
    try await withEtcd { etcd, _ in
      var revisions: [Int64] = []
      for (key, value) in [("/p/a", "3"), ("/p/b", "22"), ("/p/c", "1"), ("/q", "x")] {
        revisions.append(try await etcd.put(key, value).header.revision)
      }
      try await etcd.put("/p/a", "333")  // /p/a: version 2, latest mod revision

      let count = try await etcd.get(.prefix("/p/"), options: GetOptions(countOnly: true))
      #expect(count.count == 3 && count.kvs.isEmpty)

      let prefix = try await etcd.get(.prefix("/p/"))
      #expect(prefix.kvs.map(\.keyString) == ["/p/a", "/p/b", "/p/c"])

      let fromKey = try await etcd.get(.fromKey("/p/b"))
      #expect(fromKey.kvs.map(\.keyString) == ["/p/b", "/p/c", "/q"])

      let range = try await etcd.get(.range("/p/b", "/q"))
      #expect(range.kvs.map(\.keyString) == ["/p/b", "/p/c"])

      let limited = try await etcd.get(.prefix("/p/"), options: GetOptions(limit: 2))
      #expect(limited.kvs.count == 2 && limited.more && limited.count == 3)

      let old = try await etcd.get("/p/a", options: GetOptions(revision: revisions[0]))
      #expect(old.kvs.first?.valueString == "3")

      let byValueDesc = try await etcd.get(.prefix("/p/"), options: GetOptions(sortOrder: .descend, sortTarget: .value))
      #expect(byValueDesc.kvs.map(\.valueString) == ["333", "22", "1"])
      let byCreate = try await etcd.get(.prefix("/p/"), options: GetOptions(sortOrder: .descend, sortTarget: .createRevision))
      #expect(byCreate.kvs.map(\.keyString) == ["/p/c", "/p/b", "/p/a"])
      let byVersion = try await etcd.get(.prefix("/p/"), options: GetOptions(sortOrder: .descend, sortTarget: .version))
      #expect(byVersion.kvs.first?.keyString == "/p/a")
      let byMod = try await etcd.get(.prefix("/p/"), options: GetOptions(sortOrder: .ascend, sortTarget: .modRevision))
      #expect(byMod.kvs.map(\.keyString) == ["/p/b", "/p/c", "/p/a"])

      let keysOnly = try await etcd.get(.prefix("/p/"), options: GetOptions(keysOnly: true))
      #expect(keysOnly.kvs.count == 3 && keysOnly.kvs.allSatisfy { $0.value.isEmpty })

      let serializable = try await etcd.get("/q", options: GetOptions(serializable: true))
      #expect(serializable.kvs.first?.valueString == "x")

      var modFilter = GetOptions()
      modFilter.minModRevision = revisions[1]
      modFilter.maxModRevision = revisions[2]
      #expect(try await etcd.get(.prefix("/p/"), options: modFilter).kvs.map(\.keyString) == ["/p/b", "/p/c"])
      var createFilter = GetOptions()
      createFilter.maxCreateRevision = revisions[0]
      #expect(try await etcd.get(.prefix("/p/"), options: createFilter).kvs.map(\.keyString) == ["/p/a"])
    }
  }

  @Test func deleteWithPrevKVPrefixAndFromKey() async throws {
    try await withEtcd { etcd, _ in
      for key in ["/d/a", "/d/b", "/e/a", "/e/b", "/f"] { try await etcd.put(key, "v-\(key)") }
      let one = try await etcd.delete("/d/a", prevKV: true)
      #expect(one.deleted == 1 && one.prevKVs.map(\.valueString) == ["v-/d/a"])
      let prefix = try await etcd.delete(.prefix("/e/"))
      #expect(prefix.deleted == 2 && prefix.prevKVs.isEmpty)
      let fromKey = try await etcd.delete(.fromKey("/d/b"), prevKV: true)
      #expect(fromKey.deleted == 2 && fromKey.prevKVs.map(\.keyString) == ["/d/b", "/f"])
      #expect(try await etcd.get(.all, options: GetOptions(countOnly: true)).count == 0)
      let none = try await etcd.delete("/missing")
      #expect(none.deleted == 0)
    }
  }

  @Test func txnComparesAndBranches() async throws {
    try await withEtcd { etcd, _ in
      let put = try await etcd.put("/t", "1")
      let lease = try await etcd.grant(ttl: 60)
      try await etcd.put("/leased", "x", options: PutOptions(lease: lease.id))

      let cases: [(Compare, Bool)] = [
        (.value("/t", .equal, "1"), true),
        (.value("/t", .notEqual, "1"), false),
        (.value("/t", .greater, "0"), true),
        (.version("/t", .equal, 1), true),
        (.version("/t", .greater, 1), false),
        (.createRevision("/t", .equal, put.header.revision), true),
        (.modRevision("/t", .less, put.header.revision), false),
        (.lease("/leased", .equal, lease.id), true),
        (.lease("/t", .equal, lease.id), false),
      ]
      for (compare, expected) in cases {
        let r = try await etcd.txn(if: [compare], then: [.get("/t")], else: [.get("/leased")])
        #expect(r.succeeded == expected, "\(compare)")
        #expect(r.responses.first?.get?.kvs.first?.keyString == (expected ? "/t" : "/leased"))
      }

      // Compare-and-swap on mod revision, as the agent's write-back does.
      let swap = try await etcd.txn(
        if: [.modRevision("/t", .equal, put.header.revision)],
        then: [.put("/t", "2", PutOptions(prevKV: true))], else: [.get("/t")])
      #expect(swap.succeeded && swap.responses.first?.put?.prevKV?.valueString == "1")
      let lost = try await etcd.txn(
        if: [.modRevision("/t", .equal, put.header.revision)],
        then: [.put("/t", "3")], else: [.get("/t")])
      #expect(!lost.succeeded && lost.responses.first?.get?.kvs.first?.valueString == "2")

      // Nested txn and delete inside a txn, all in one revision.
      let nested = try await etcd.txn(if: [], then: [
        .delete(.key(Array("/leased".utf8)), prevKV: true),
        .txn(compare: [.value("/t", .equal, "2")], success: [.put("/n", "y")], failure: []),
      ])
      #expect(nested.responses.first?.delete?.deleted == 1)
      #expect(nested.responses.last?.txn?.succeeded == true)
      #expect(try await etcd.get("/n").kvs.first?.modRevision == nested.header.revision)
    }
  }

  @Test func opAndDo() async throws {
    try await withEtcd { etcd, _ in
      let put = try await etcd.do(.put("/op", "v"))
      #expect(put.put != nil)
      let get = try await etcd.do(.get("/op"))
      #expect(get.get?.kvs.first?.valueString == "v")
      #expect(get.header.revision == put.header.revision)
      let txn = try await etcd.do(.txn(compare: [.value("/op", .equal, "v")], success: [.delete("/op")], failure: []))
      #expect(txn.txn?.succeeded == true)
      let del = try await etcd.do(.delete("/op"))
      #expect(del.delete?.deleted == 0)
    }
  }

  @Test func paginatedReadIsPinnedToOneRevision() async throws {
    try await withEtcd { etcd, _ in
      for i in 0..<250 { try await etcd.put(String(format: "/page/%04d", i), "v\(i)") }
      var pages = 0
      var seen: [KeyValue] = []
      let revision = try await etcd.forEachPage(.prefix("/page/"), pageSize: 100) { page in
        pages += 1
        seen += page
      }
      // Changes made after the first page must not show up in later pages: write between
      // two reads of the same pinned revision and compare.
      try await etcd.put("/page/0249", "changed")
      try await etcd.put("/page/9999", "new")
      try await etcd.delete("/page/0000")
      let snapshot = try await etcd.getAll(.prefix("/page/"), pageSize: 100)
      #expect(pages == 3)
      #expect(seen.count == 250 && seen.map(\.keyString) == seen.map(\.keyString).sorted())
      #expect(snapshot.revision == revision + 3)
      #expect(snapshot.kvs.count == 250 && snapshot.kvs.last?.keyString == "/page/9999")
      let pinned = try await etcd.get(.prefix("/page/"), options: GetOptions(revision: revision))
      #expect(pinned.kvs == seen)
    }
  }

  @Test func compactionMakesOldRevisionsUnreadable() async throws {
    try await withEtcd { etcd, _ in
      let first = try await etcd.put("/c", "1")
      let second = try await etcd.put("/c", "2")
      try await etcd.compact(second.header.revision, physical: true)
      let error = await #expect(throws: EtcdError.self) {
        try await etcd.get("/c", options: GetOptions(revision: first.header.revision))
      }
      #expect(error?.code == .compacted)
      let future = await #expect(throws: EtcdError.self) {
        try await etcd.get("/c", options: GetOptions(revision: second.header.revision + 100))
      }
      #expect(future?.code == .futureRevision)
      try await etcd.defragment()
      #expect(try await etcd.get("/c").kvs.first?.valueString == "2", "data intact after defragmentation")
    }
  }

  @Test func requestTooLargeAndTooManyOpsAreReportedClearly() async throws {
    try await withEtcd { etcd, _ in
      // Over etcd's --max-request-bytes (1.5 MiB): etcd's own error. Over the gRPC
      // server's limit (max-request-bytes + 512 KiB): grpc-go's. Both are requestTooLarge.
      for size in [1_600_000, 2 * 1024 * 1024 + 100] {
        let big = [UInt8](repeating: 0x61, count: size)
        let tooLarge = await #expect(throws: EtcdError.self) { try await etcd.put(Array("/big".utf8), big) }
        #expect(tooLarge?.code == .requestTooLarge, "\(size) bytes: \(String(describing: tooLarge))")
        #expect(tooLarge?.description.contains("aaaa") == false, "no value in the error")
      }

      let ops = (0..<129).map { Op.put("/many/\($0)", "v") }
      let tooMany = await #expect(throws: EtcdError.self) { try await etcd.txn(if: [], then: ops) }
      #expect(tooMany?.code == .tooManyOps)
      #expect(tooMany?.message.contains("too many operations") == true)

      let duplicate = await #expect(throws: EtcdError.self) {
        try await etcd.txn(if: [], then: [.put("/dup", "1"), .put("/dup", "2")])
      }
      #expect(duplicate?.code == .duplicateKey)
    }
  }

  @Test func statusAndMemberList() async throws {
    try await withEtcd { etcd, server in
      let status = try await etcd.connect()
      #expect(!status.version.isEmpty && status.leader != 0 && status.clusterID != 0)
      let members = try await etcd.memberList()
      #expect(members.count == 1 && members[0].clientURLs == [server.endpoint])
    }
  }

  @Test func unreachableEtcdFailsWithUnavailable() async throws {
    let port = try freePorts(1)[0]
    var configuration = try EtcdConfiguration(endpoints: ["127.0.0.1:\(port)"])
    configuration.dialTimeout = .milliseconds(500)
    try await withEtcdClient(configuration) { etcd in
      let error = await #expect(throws: EtcdError.self) { try await etcd.connect() }
      #expect(error?.code == .unavailable || error?.code == .deadlineExceeded)
    }
  }
}
