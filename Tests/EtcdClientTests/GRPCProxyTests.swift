import EtcdClient
import EtcdTestSupport
import Foundation
import Testing

/// Runs `body` with a client that talks to a fresh etcd only through `etcd grpc-proxy`.
func withEtcdBehindProxy<T: Sendable>(
  _ body: (EtcdClient, EtcdGRPCProxy, EtcdClient) async throws -> T
) async throws -> T {
  try await EtcdServer.with { server in
    let proxy = try await EtcdGRPCProxy.start(inFrontOf: [server])
    defer { proxy.stop() }
    return try await withEtcdClient(server.configuration()) { direct in
      try await withEtcdClient(proxy.configuration()) { client in try await body(client, proxy, direct) }
    }
  }
}

/// A watch from "now" that is live: its creation confirmed (through the proxy, a watch that
/// starts a new upstream watch is live only once etcd has answered that one).
func liveWatch(_ etcd: EtcdClient, _ range: KeyRange, _ options: WatchOptions = WatchOptions()) async -> EventCollector {
  var options = options
  options.createdNotify = true
  let collector = EventCollector(etcd.watch(range, options: options))
  _ = await collector.wait { $0.responses.contains(where: \.created) || $0.error != nil }
  return collector
}

/// etcd's gRPC proxy numbers watches itself (it ignores the ID a create request asks for),
/// answers creates out of order, ignores progress requests (3.4) and shares one upstream watch
/// among identical ones: the client must work through it. Every test also checks that no
/// response made the client re-create its stream (`watchProtocolViolations`), which would hide
/// a mix-up behind a resume.
@Suite("EtcdClient through etcd's gRPC proxy", .timeLimit(.minutes(3))) struct GRPCProxyTests {
  @Test("two watches on one stream each get their own events, in order, with the proxy's IDs")
  func twoWatches() async throws {
    try await withEtcdBehindProxy { etcd, _, _ in
      let a = await liveWatch(etcd, .prefix("/a/"))
      let b = await liveWatch(etcd, .prefix("/b/"), WatchOptions(prevKV: true))
      try await etcd.put("/a/0", "0")
      try await etcd.put("/b/0", "0")
      #expect(await a.wait { !$0.events.isEmpty })
      #expect(await b.wait { !$0.events.isEmpty })
      var last: Int64 = 0
      for i in 1...5 {
        try await etcd.put("/a/\(i)", "a\(i)")
        last = try await etcd.put("/b/\(i)", "b\(i)").header.revision
      }
      try await etcd.delete("/b/1")
      #expect(await a.wait { $0.events.last?.kv.keyString == "/a/5" })
      #expect(await b.wait { $0.events.last?.kind == .delete })
      #expect(a.events.allSatisfy { $0.kv.keyString.hasPrefix("/a/") }, "\(a.events.map(\.kv.keyString))")
      #expect(b.events.allSatisfy { $0.kv.keyString.hasPrefix("/b/") }, "\(b.events.map(\.kv.keyString))")
      #expect(a.events.suffix(5).map(\.kv.valueString) == ["a1", "a2", "a3", "a4", "a5"])
      #expect(b.events.suffix(6).map(\.kv.valueString) == ["b1", "b2", "b3", "b4", "b5", ""])
      #expect(b.events.last?.prevKV?.valueString == "b1")
      #expect(b.events.dropLast().last?.kv.modRevision == last)
      #expect(a.error == nil && b.error == nil)
      #expect(etcd.watchProtocolViolations == 0)
      a.stop()
      b.stop()
    }
  }

  @Test("a watch from a past revision replays the history, and one ended by its consumer leaves the others alone")
  func historyAndCancel() async throws {
    try await withEtcdBehindProxy { etcd, _, _ in
      let first = try await etcd.put("/h/a", "1").header.revision
      try await etcd.put("/h/b", "2")
      let history = EventCollector(etcd.watch(.prefix("/h/"), options: WatchOptions(startRevision: first)))
      #expect(await history.wait { $0.events.count == 2 })
      #expect(history.events.map(\.kv.keyString) == ["/h/a", "/h/b"])
      // Three more watches; the middle one goes away, the last keeps receiving.
      let keep = await liveWatch(etcd, .prefix("/h/"))
      let gone = await liveWatch(etcd, .prefix("/h/"))
      try await etcd.put("/h/c", "3")
      #expect(await keep.wait { $0.events.count == 1 })
      #expect(await gone.wait { $0.events.count == 1 })
      gone.stop()
      try await etcd.put("/h/d", "4")
      #expect(await keep.wait { $0.events.map(\.kv.keyString) == ["/h/c", "/h/d"] })
      #expect(await history.wait { $0.events.map(\.kv.keyString) == ["/h/a", "/h/b", "/h/c", "/h/d"] })
      #expect(keep.error == nil && history.error == nil)
      #expect(etcd.watchProtocolViolations == 0)
      keep.stop()
      history.stop()
    }
  }

  @Test("a watch from a compacted revision ends with the compaction; a new watch of that range on the same stream still hears every change")
  func compacted() async throws {
    try await withEtcdBehindProxy { etcd, _, _ in
      // Another watch keeps the stream (and the proxy's side of it) open throughout, as the
      // agent's status-request watch does.
      let other = await liveWatch(etcd, .key("/elsewhere"))
      let first = try await etcd.put("/c/a", "1").header.revision
      let last = try await etcd.put("/c/a", "2").header.revision
      try await etcd.compact(last)
      let watch = EventCollector(etcd.watch(.prefix("/c/"), options: WatchOptions(startRevision: first)))
      #expect(await watch.wait { $0.error != nil })
      #expect(watch.error?.code == .compacted, "\(String(describing: watch.error))")
      // What the agent does next: re-read, and watch the same range from after the read.
      // The proxy must not attach it to the upstream watch the compaction ended.
      let again = EventCollector(etcd.watch(.prefix("/c/"), options: WatchOptions(startRevision: last + 1)))
      let next = try await etcd.put("/c/b", "3").header.revision
      #expect(await again.wait { $0.events.last?.kv.modRevision == next })
      #expect(again.events.map(\.kv.valueString) == ["3"])
      try await etcd.put("/elsewhere", "x")
      #expect(await other.wait { $0.events.count == 1 })
      #expect(etcd.watchProtocolViolations == 0)
      again.stop()
      other.stop()
    }
  }

  @Test("a proxy restart: the watch resumes after the last revision it delivered and misses nothing")
  func proxyRestart() async throws {
    try await withEtcdBehindProxy { etcd, proxy, direct in
      let watch = await liveWatch(etcd, .prefix("/r/"))
      try await etcd.put("/r/0", "0")
      #expect(await watch.wait { $0.events.count == 1 })
      proxy.stop()
      // Written while the proxy is down, through the server directly.
      for i in 1...3 { try await direct.put("/r/\(i)", "\(i)") }
      try await proxy.restart()
      try await direct.put("/r/4", "4")
      #expect(await watch.wait { $0.events.count == 5 })
      #expect(watch.events.map(\.kv.valueString) == ["0", "1", "2", "3", "4"])
      #expect(watch.error == nil)
      #expect(etcd.watchProtocolViolations == 0)
      watch.stop()
    }
  }

  @Test("a progress request through the proxy (which ignores it) disturbs nothing: every event arrives, in order")
  func progress() async throws {
    try await withEtcdBehindProxy { etcd, _, _ in
      let watch = await liveWatch(etcd, .prefix("/p/"), WatchOptions(progressNotify: true))
      try await etcd.put("/p/0", "0")
      #expect(await watch.wait { $0.events.count == 1 })
      let revision = try await etcd.put("/other", "x").header.revision
      etcd.requestWatchProgress()
      try await etcd.put("/p/1", "1")
      #expect(await watch.wait { $0.events.count == 2 })
      #expect(watch.responses.allSatisfy { $0.events.isEmpty || $0.header.revision >= $0.events.last!.kv.modRevision })
      #expect(watch.events.map(\.kv.valueString) == ["0", "1"])
      #expect(revision > 0 && watch.error == nil)
      #expect(etcd.watchProtocolViolations == 0)
      watch.stop()
    }
  }
}
