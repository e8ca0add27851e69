import EtcdClient
import EtcdTestSupport
import Foundation
import Synchronization
import Testing

/// Collects the events of a watch in the background until told to stop.
final class EventCollector: Sendable {
  private let state = Mutex<(events: [WatchEvent], responses: [WatchResponse], error: EtcdError?)>(([], [], nil))
  private let task: Mutex<Task<Void, Never>?> = Mutex(nil)

  init(_ stream: WatchStream) {
    let task = Task {
      do {
        for try await response in stream {
          self.state.withLock { $0.responses.append(response); $0.events += response.events }
        }
      } catch {
        self.state.withLock { $0.error = error as? EtcdError }
      }
    }
    self.task.withLock { $0 = task }
  }

  var events: [WatchEvent] { self.state.withLock { $0.events } }
  var responses: [WatchResponse] { self.state.withLock { $0.responses } }
  var error: EtcdError? { self.state.withLock { $0.error } }

  /// Waits (up to a limit, which only bounds a failing test) until `condition` holds.
  func wait(upTo limit: Duration = .seconds(30), until condition: (EventCollector) -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
      if condition(self) { return true }
      try? await Task.sleep(for: .milliseconds(20))
    }
    return condition(self)
  }

  func stop() { self.task.withLock { $0?.cancel() } }
}

@Suite("Watch against a real etcd") struct WatchTests {
  @Test func watchFromRevisionDeliversEveryEventInOrder() async throws {
    try await withEtcd { etcd, _ in
      let first = try await etcd.put("/w/a", "1")
      try await etcd.put("/w/b", "2")
      try await etcd.delete("/w/a")
      try await etcd.put("/other", "x")
      let watch = EventCollector(etcd.watch(.prefix("/w/"), options: WatchOptions(startRevision: first.header.revision + 1, prevKV: true)))
      try await etcd.put("/w/c", "3")
      #expect(await watch.wait { $0.events.count == 3 })
      let events = watch.events
      #expect(events.map(\.kind) == [.put, .delete, .put])
      #expect(events.map(\.kv.keyString) == ["/w/b", "/w/a", "/w/c"])
      #expect(events[1].prevKV?.valueString == "1", "prevKV on delete")
      #expect(events.map(\.revision) == events.map(\.revision).sorted())
      watch.stop()
    }
  }

  @Test func filtersAndMultiplexedWatchers() async throws {
    try await withEtcd { etcd, _ in
      // Every watch starts at an explicit revision, so none depends on when it was created.
      let start = try await etcd.put("/m-start", "").header.revision + 1
      let noPuts = WatchOptions(startRevision: start, filterPuts: true)
      let noDeletes = WatchOptions(startRevision: start, filterDeletes: true)
      let from = WatchOptions(startRevision: start)
      let deletesOnly = EventCollector(etcd.watch(.prefix("/m/"), options: noPuts))
      let putsOnly = EventCollector(etcd.watch(.prefix("/m/"), options: noDeletes))
      let single = EventCollector(etcd.watch("/m/x", options: from))
      let range = EventCollector(etcd.watch(.range("/m/a", "/m/c"), options: from))
      for key in ["/m/a", "/m/b", "/m/c", "/m/x"] { try await etcd.put(key, "v") }
      try await etcd.delete(.prefix("/m/"))
      #expect(await putsOnly.wait { $0.events.count == 4 })
      #expect(await deletesOnly.wait { $0.events.count == 4 })
      #expect(await single.wait { $0.events.count == 2 })
      #expect(await range.wait { $0.events.count == 4 })
      #expect(putsOnly.events.allSatisfy { $0.kind == .put })
      #expect(deletesOnly.events.allSatisfy { $0.kind == .delete })
      #expect(single.events.map(\.kind) == [.put, .delete])
      #expect(range.events.map(\.kv.keyString) == ["/m/a", "/m/b", "/m/a", "/m/b"])
      #expect(range.events.map(\.kind) == [.put, .put, .delete, .delete])
      // The prefix delete is one revision: both watchers got it in one response.
      #expect(deletesOnly.responses.last?.events.count == 4)
      for w in [deletesOnly, putsOnly, single, range] { w.stop() }
    }
  }

  @Test func cancellingOneWatcherLeavesTheOthers() async throws {
    try await withEtcd { etcd, _ in
      let start = try await etcd.put("/x", "0").header.revision + 1
      let a = EventCollector(etcd.watch("/x", options: WatchOptions(startRevision: start)))
      let b = EventCollector(etcd.watch("/x", options: WatchOptions(startRevision: start)))
      try await etcd.put("/x", "1")
      #expect(await a.wait { $0.events.count == 1 })
      a.stop()
      try await etcd.put("/x", "2")
      #expect(await b.wait { $0.events.count == 2 })
      try await Task.sleep(for: .milliseconds(200))
      #expect(a.events.count == 1)
      b.stop()
    }
  }

  @Test func progressNotificationsAndRequestProgress() async throws {
    try await withEtcd { etcd, _ in
      let rev = try await etcd.put("/prog", "v").header.revision
      var options = WatchOptions(startRevision: rev + 1)
      options.createdNotify = true
      let watch = EventCollector(etcd.watch("/prog", options: options))
      #expect(await watch.wait { $0.responses.contains(where: \.created) })
      try await etcd.put("/unrelated", "v")
      etcd.requestWatchProgress()
      #expect(await watch.wait { $0.responses.contains(where: \.isProgressNotify) })
      let progress = try #require(watch.responses.first { $0.isProgressNotify })
      #expect(progress.header.revision >= rev + 1)
      #expect(watch.events.isEmpty)
      watch.stop()
    }
  }

  @Test func periodicProgressNotifications() async throws {
    try await withEtcd(arguments: ["--experimental-watch-progress-notify-interval", "300ms"]) { etcd, _ in
      let rev = try await etcd.put("/quiet", "v").header.revision
      let watch = EventCollector(etcd.watch("/quiet", options: WatchOptions(startRevision: rev + 1, progressNotify: true)))
      let silent = EventCollector(etcd.watch("/quiet", options: WatchOptions(startRevision: rev + 1)))
      try await etcd.put("/elsewhere", "v")
      #expect(await watch.wait { $0.responses.filter(\.isProgressNotify).count >= 2 })
      #expect(watch.responses.allSatisfy(\.isProgressNotify) && watch.events.isEmpty)
      #expect(watch.responses.last!.header.revision >= rev + 1)
      #expect(silent.responses.isEmpty, "no notifications without progressNotify")
      watch.stop()
      silent.stop()
    }
  }

  @Test func compactedStartRevisionEndsTheWatchWithItsRevision() async throws {
    try await withEtcd { etcd, _ in
      let first = try await etcd.put("/c", "1").header.revision
      try await etcd.put("/c", "2")
      let third = try await etcd.put("/c", "3").header.revision
      try await etcd.compact(third)
      let watch = EventCollector(etcd.watch("/c", options: WatchOptions(startRevision: first)))
      #expect(await watch.wait { $0.error != nil })
      #expect(watch.error?.code == .compacted)
      #expect(watch.error?.compactRevision == third)
    }
  }

  @Test func fragmentedRevisionsAreJoined() async throws {
    // With a 1 MiB request limit, etcd splits a watch response larger than that into
    // fragments. One txn rewrites 12 keys of 80 KB; with prevKV its single revision carries
    // about 1.9 MB of events, so it arrives in fragments that the client joins again.
    try await withEtcd(arguments: ["--max-request-bytes", "1048576"]) { etcd, _ in
      let value = String(repeating: "v", count: 80_000)
      _ = try await etcd.txn(if: [], then: (0..<12).map { Op.put("/frag/\($0)", value) })
      let rewrite = try await etcd.txn(if: [], then: (0..<12).map { Op.put("/frag/\($0)", value + "2") })
      var options = WatchOptions(startRevision: rewrite.header.revision, prevKV: true)
      options.fragment = true
      let watch = EventCollector(etcd.watch(.prefix("/frag/"), options: options))
      #expect(await watch.wait { $0.events.count == 12 })
      #expect(watch.responses.count == 1, "one revision, delivered whole")
      #expect(watch.events.allSatisfy { $0.prevKV?.value.count == 80_000 && $0.revision == rewrite.header.revision })
      watch.stop()
    }
  }

  @Test func resumesAfterEtcdIsKilledAndRestartedWithNothingMissed() async throws {
    try await EtcdServer.with { server in
      try await withEtcdClient(server.configuration()) { etcd in
        let start = try await etcd.put("/r/0", "0").header.revision
        let watch = EventCollector(etcd.watch(.prefix("/r/"), options: WatchOptions(startRevision: start)))
        for i in 1...50 { try await etcd.put("/r/\(i)", "\(i)") }
        #expect(await watch.wait { $0.events.count == 51 })
        server.kill9()
        try await server.restart()
        // Writes made by another client while ours is still reconnecting.
        try await withEtcdClient(server.configuration()) { other in
          for i in 51...100 { try await other.put("/r/\(i)", "\(i)") }
        }
        #expect(await watch.wait { $0.events.count == 101 })
        let keys = watch.events.map(\.kv.keyString)
        #expect(keys == (0...100).map { "/r/\($0)" }, "every event once, in order")
        #expect(watch.error == nil)
        watch.stop()
      }
    }
  }

  /// The transport defect: etcd sends a PING for nearly every request, and swift-nio-http2
  /// drops a connection after 200 of them in 30 s. 20,000 sequential puts must all succeed,
  /// over one connection, while a watch on that connection misses nothing.
  @Test func twentyThousandSequentialPutsWithAWatchOpen() async throws {
    try await withEtcd { etcd, _ in
      let start = try await etcd.put("/load/start", "").header.revision + 1
      let watch = EventCollector(etcd.watch(.prefix("/load/"), options: WatchOptions(startRevision: start)))
      var failures = 0
      for i in 0..<20_000 {
        do { try await etcd.put("/load/\(i % 100)", "\(i)") } catch { failures += 1 }
      }
      #expect(failures == 0)
      #expect(await watch.wait(upTo: .seconds(60)) { $0.events.count == 20_000 })
      let revisions = watch.events.map(\.revision)
      #expect(revisions == Array(start..<(start + 20_000)), "every revision exactly once")
      #expect(watch.error == nil)
      watch.stop()
    }
  }

  /// The same load without the handler loses the connection (and fails RPCs) on this etcd,
  /// so the test above proves something.
  @Test func withoutTheHandlerSequentialPutsFail() async throws {
    try await EtcdServer.with { server in
      var configuration = server.configuration()
      configuration.installsLivenessHandler = false
      try await withEtcdClient(configuration) { etcd in
        var failures = 0
        for i in 0..<2_000 {
          do { try await etcd.put("/load/\(i % 100)", "\(i)") } catch { failures += 1 }
        }
        #expect(failures > 0, "swift-nio-http2 should have closed the connection (ExcessiveControlFrames)")
      }
    }
  }
}
