import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Testing

/// ``InMemoryEtcd`` answers as etcd does: one script run against a real etcd (through
/// `EtcdClient`) and against the in-memory store gives the same transcript; then what only
/// the in-memory store has (failure injection, broken watches, a lease clock).
@Suite("InMemoryEtcd")
struct InMemoryEtcdTests {
  /// Runs the same requests against `store` and writes down what a caller can observe:
  /// revisions (relative to the first), keys, values, versions, `more`, counts, compare
  /// outcomes, watch events, and error codes.
  static func transcript(_ store: any EtcdStore, compact: (Int64) async throws -> Void) async throws -> [String] {
    var lines: [String] = []
    let base = try await store.status(timeout: nil).header.revision
    func rel(_ revision: Int64) -> Int64 { revision == 0 ? 0 : revision - base }
    func describe(_ kvs: [KeyValue]) -> String {
      kvs.map { "\($0.keyString)=\($0.valueString)@c\(rel($0.createRevision))m\(rel($0.modRevision))v\($0.version)" }
        .joined(separator: ",")
    }
    func put(_ key: String, _ value: String) async throws -> Int64 {
      try await store.txn(if: [], then: [.put(key, value)], else: []).header.revision
    }
    func get(_ label: String, _ range: KeyRange, _ options: GetOptions = GetOptions()) async {
      do {
        let response = try await store.get(range, options: options)
        lines.append("\(label): [\(describe(response.kvs))] more \(response.more) count \(response.count) at \(rel(response.header.revision))")
      } catch {
        lines.append("\(label): \(error.code)")
      }
    }

    let first = try await store.txn(if: [], then: [.put("/s/a", "1"), .put("/s/b", "2")], else: []).header.revision
    lines.append("txn of two puts at \(rel(first))")
    lines.append("put at \(rel(try await put("/s/a", "11")))")
    let deleted = try await store.txn(if: [], then: [.delete(.key("/s/b"))], else: [])
    lines.append("delete at \(rel(deleted.header.revision)): \(deleted.responses.first?.delete?.deleted ?? -1)")
    let none = try await store.txn(if: [], then: [.delete(.key("/s/nothing"))], else: [])
    lines.append("delete of nothing at \(rel(none.header.revision))")
    _ = try await put("/s/c", "3")
    _ = try await put("/t/x", "9")
    let last = try await put("/s/a", "111")

    await get("prefix", .prefix("/s/"))
    await get("limit 1", .prefix("/s/"), GetOptions(limit: 1))
    await get("at first", .prefix("/s/"), GetOptions(revision: first))
    await get("keys only", .prefix("/s/"), GetOptions(keysOnly: true))
    await get("count only", .prefix("/s/"), GetOptions(countOnly: true))
    await get("count only, limit 1", .prefix("/s/"), GetOptions(limit: 1, countOnly: true))
    var filtered = GetOptions(revision: last, keysOnly: true)
    filtered.minModRevision = last
    await get("modified at last", .prefix("/s/"), filtered)
    await get("future", .prefix("/s/"), GetOptions(revision: last + 10))
    await get("from key", .fromKey("/s/b"))

    // Compares: mod revision, missing keys, value, version; the else branch's get.
    let lost = try await store.txn(if: [Compare(.key("/s/a"), .modRevision(first), .equal)], then: [.put("/s/a", "no")],
                                   else: [.get(.key("/s/a"))])
    lines.append("lost: \(lost.succeeded) [\(describe(lost.responses.first?.get?.kvs ?? []))] at \(rel(lost.header.revision))")
    let missing = try await store.txn(
      if: [Compare(.key("/s/missing"), .version(0), .equal), Compare(.key("/s/missing"), .modRevision(0), .equal)],
      then: [], else: [])
    lines.append("missing key has version and mod revision 0: \(missing.succeeded)")
    let value = try await store.txn(if: [Compare(.key("/s/missing"), .value([]), .equal)], then: [], else: [])
    lines.append("missing key's value compare: \(value.succeeded)")
    let won = try await store.txn(
      if: [Compare(.key("/s/a"), .value(Array("111".utf8)), .equal), Compare(.key("/s/c"), .version(1), .equal),
           Compare(.prefix("/s/"), .createRevision(first - 1), .greater)],
      then: [.put("/s/d", "4"), .delete(.key("/s/c")), .get(.prefix("/s/"))], else: [])
    lines.append("won: \(won.succeeded) at \(rel(won.header.revision)) sees [\(describe(won.responses.last?.get?.kvs ?? []))]")
    let range = try await store.txn(if: [Compare(.prefix("/s/"), .version(0), .greater)], then: [], else: [])
    lines.append("range compare: \(range.succeeded)")

    // A watch from the first revision: every event since, whole revisions in order.
    let now = try await store.status(timeout: nil).header.revision
    var events: [String] = []
    for try await response in store.watch(.prefix("/s/"), options: WatchOptions(startRevision: first, prevKV: true)) {
      for event in response.events {
        events.append("\(event.kind) \(event.kv.keyString)=\(event.kv.valueString)@\(rel(event.revision)) prev \(event.prevKV?.valueString ?? "-")")
      }
      if response.events.last?.revision ?? 0 >= now { break }
    }
    lines.append("watch: " + events.joined(separator: "; "))

    // Compaction: reads and watches below it fail.
    try await compact(last)
    await get("at first after compaction", .prefix("/s/"), GetOptions(revision: first))
    await get("at the compaction", .prefix("/s/"), GetOptions(revision: last))
    do {
      for try await _ in store.watch(.prefix("/s/"), options: WatchOptions(startRevision: first)) {}
      lines.append("watch below the compaction: ended without error")
    } catch {
      let error = error as? EtcdError
      lines.append("watch below the compaction: \(error?.code.description ?? "?") at \(rel(error?.compactRevision ?? 0))")
    }
    var pages: [String] = []
    let pinned = try await store.forEachPage(.prefix("/s/"), revision: 0, pageSize: 1, keysOnly: false) { pages.append(describe($0)) }
    lines.append("pages at \(rel(pinned)): \(pages.joined(separator: " | "))")
    return lines
  }

  @Test("one script, the same transcript from a real etcd and from InMemoryEtcd")
  func sameAsEtcd() async throws {
    let server = try await EtcdServer.start()
    defer { server.destroy() }
    let running = try RunningClient(server.configuration())
    defer { running.stop() }
    let real = try await Self.transcript(running.client) { _ = try await running.client.compact($0, physical: true) }
    let memory = InMemoryEtcd()
    let fake = try await Self.transcript(memory) { _ = try await memory.compact($0) }
    #expect(real.count == fake.count)
    for (etcd, inMemory) in zip(real, fake) {
      #expect(etcd == inMemory)
    }
  }

  @Test("injected failures: the next N matching requests fail, a failed Txn changes nothing")
  func injectedFailures() async throws {
    let etcd = InMemoryEtcd()
    try await etcd.put("/k", "1")
    etcd.failNext(2, when: { if case .txn = $0 { true } else { false } })
    for _ in 0..<2 {
      await #expect(throws: EtcdError.self) { try await etcd.put("/k", "2") }
    }
    // Reads were not selected.
    #expect(try await etcd.get(.key("/k")).kvs.first?.valueString == "1")
    #expect(etcd.revision == 2)
    try await etcd.put("/k", "3")
    #expect(try await etcd.get(.key("/k")).kvs.first?.valueString == "3")
    etcd.failNext(1, with: .permissionDenied)
    do {
      _ = try await etcd.status()
      Issue.record("status should have failed")
    } catch {
      #expect(error.code == .permissionDenied)
    }
  }

  @Test("a broken watch resumes from its next revision without loss or repeats, or ends compacted")
  func brokenWatch() async throws {
    let etcd = InMemoryEtcd()
    let stream = etcd.watch(.prefix("/w/"), options: WatchOptions(startRevision: 1))
    var iterator = stream.makeAsyncIterator()
    let first = try await etcd.put("/w/a", "1")
    #expect(try await iterator.next()?.events.map(\.revision) == [first])
    etcd.disconnectWatches()
    let second = try await etcd.put("/w/b", "2")
    let third = try await etcd.delete("/w/a")
    etcd.reconnectWatches()
    #expect(try await iterator.next()?.events.map(\.revision) == [second])
    let delete = try await iterator.next()?.events.first
    #expect(delete?.kind == .delete && delete?.revision == third && delete?.kv.keyString == "/w/a")
    etcd.requestWatchProgress()
    let progress = try await iterator.next()
    #expect(progress?.isProgressNotify == true && progress?.header.revision == third)

    // Compacted at its next revision, the watch resumes: etcd keeps that revision's events.
    etcd.disconnectWatches()
    let fourth = try await etcd.put("/w/c", "3")
    try await etcd.compact(fourth)
    etcd.reconnectWatches()
    #expect(try await iterator.next()?.events.map(\.revision) == [fourth])
    // Compacted past it, the watch ends with `compacted` and the compact revision.
    etcd.disconnectWatches()
    try await etcd.put("/w/d", "4")
    let sixth = try await etcd.put("/w/e", "5")
    try await etcd.compact(sixth)
    etcd.reconnectWatches()
    do {
      _ = try await iterator.next()
      Issue.record("the watch should have ended compacted")
    } catch {
      #expect((error as? EtcdError)?.code == .compacted && (error as? EtcdError)?.compactRevision == sixth)
    }
  }

  @Test("leases: keys go with a lease that expires on the test's clock; keep-alive and revoke")
  func leases() async throws {
    let etcd = InMemoryEtcd()
    let lease = try await etcd.grant(ttl: 10)
    try await etcd.put("/l/a", "1", lease: lease.id)
    try await etcd.put("/l/b", "2", lease: lease.id)
    let watch = etcd.watch(.prefix("/l/"))
    var iterator = watch.makeAsyncIterator()
    etcd.advance(by: .seconds(6))
    _ = try await etcd.keepAliveOnce(lease.id)
    etcd.advance(by: .seconds(6))
    #expect(try await etcd.get(.prefix("/l/")).count == 2, "kept alive")
    #expect(try await etcd.timeToLive(lease.id, keys: true).keys.count == 2)
    let before = etcd.revision
    etcd.advance(by: .seconds(5))
    #expect(try await etcd.get(.prefix("/l/")).count == 0)
    #expect(etcd.revision == before + 1, "both keys deleted in one revision")
    let expired = try await iterator.next()
    #expect(expired?.events.map(\.kind) == [.delete, .delete])
    #expect(try await etcd.timeToLive(lease.id).ttl == -1)
    do {
      try await etcd.put("/l/c", "3", lease: lease.id)
      Issue.record("a put on an expired lease should fail")
    } catch {
      #expect(error.code == .leaseNotFound)
    }
    let second = try await etcd.grant(ttl: 5)
    try await etcd.put("/l/d", "4", lease: second.id)
    try await etcd.revoke(second.id)
    #expect(try await etcd.get(.key("/l/d")).kvs.isEmpty)
  }
}
