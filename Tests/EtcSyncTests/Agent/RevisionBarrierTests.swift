import EtcdClient
import EtcdTestSupport
import Testing

@testable import EtcSync

/// `RevisionBarrier` joins per-range watchers into whole revisions; `disjointRanges` chooses
/// the ranges. Pure logic: generated histories and interleavings, checked against the history
/// itself (the state at each released revision).
@Suite("Revision barrier")
struct RevisionBarrierTests {
  static func put(_ key: String, _ value: String, revision: Int64, version: Int64 = 1) -> WatchEvent {
    WatchEvent(kind: .put, kv: KeyValue(key: Array(key.utf8), value: Array(value.utf8), createRevision: revision,
                                        modRevision: revision, version: version))
  }

  static func response(_ events: [WatchEvent], revision: Int64? = nil) -> WatchResponse {
    let header = ResponseHeader(clusterID: 1, memberID: 1, revision: revision ?? events.last?.revision ?? 0, raftTerm: 1)
    return WatchResponse(header: header, watchID: 0, events: events)
  }

  @Test("a transaction over two ranges is released whole, once both watchers delivered it")
  func transactionAcrossRanges() {
    var barrier = RevisionBarrier(ranges: [.prefix("/a/"), .prefix("/c/")], revision: 4)
    barrier.receive(Self.response([Self.put("/a/x", "1", revision: 5)]), from: 0)
    #expect(barrier.release().events.isEmpty)
    #expect(barrier.lagging().map(\.watcher) == [1])
    barrier.receive(Self.response([Self.put("/c/y", "1", revision: 5)]), from: 1)
    let released = barrier.release()
    #expect(released.revision == 5)
    #expect(released.events.map { String(decoding: $0.kv.key, as: UTF8.self) } == ["/a/x", "/c/y"])
    #expect(barrier.lagging().isEmpty)
  }

  @Test("an idle range is confirmed by a read, and only from where the read began")
  func confirmation() {
    var barrier = RevisionBarrier(ranges: [.prefix("/a/"), .prefix("/c/")], revision: 4)
    barrier.receive(Self.response([Self.put("/a/x", "1", revision: 6)]), from: 0)
    #expect(barrier.lagging() == [RevisionBarrier.Lag(watcher: 1, range: .prefix("/c/"), from: 4, heldCountDelta: 0)])
    // The watcher moved while the read was in flight: the read proves nothing.
    barrier.receive(Self.response([Self.put("/c/y", "1", revision: 5)]), from: 1)
    barrier.confirm(1, unchangedFrom: 4, through: 6)
    #expect(barrier.through == [6, 5])
    #expect(barrier.release().revision == 5)
    barrier.confirm(1, unchangedFrom: 5, through: 6)
    let released = barrier.release()
    #expect(released.revision == 6)
    #expect(released.events.map(\.revision) == [6])
  }

  @Test("progress notifications move a watcher; repeated events are dropped")
  func progressAndRepeats() {
    var barrier = RevisionBarrier(ranges: [.prefix("/a/"), .prefix("/c/")], revision: 4)
    barrier.receive(Self.response([], revision: 9), from: 1)
    barrier.receive(Self.response([Self.put("/a/x", "1", revision: 7)]), from: 0)
    barrier.receive(Self.response([Self.put("/a/x", "1", revision: 7)]), from: 0)
    #expect(barrier.release().revision == 7)
    barrier.receive(Self.response([], revision: 9), from: 0)
    let released = barrier.release()
    #expect(released.revision == 9)
    #expect(released.events.isEmpty)
  }

  @Test("confirmAll moves every watcher only from the released revision")
  func confirmAll() {
    var barrier = RevisionBarrier(ranges: [.prefix("/a/"), .prefix("/c/")], revision: 4)
    barrier.confirmAll(unchangedFrom: 3, through: 8)
    #expect(barrier.through == [4, 4])
    barrier.confirmAll(unchangedFrom: 4, through: 8)
    #expect(barrier.through == [8, 8])
    #expect(barrier.release().revision == 8)
  }

  static func lag(_ watcher: Int, from: Int64) -> RevisionBarrier.Lag {
    RevisionBarrier.Lag(watcher: watcher, range: .prefix("/r\(watcher)/"), from: from, heldCountDelta: 0)
  }

  static func result(_ target: Int64, _ outcomes: [(RevisionBarrier.Lag, RangeCheckResult.Outcome)]) -> RangeCheckResult {
    RangeCheckResult(generation: 1, target: target, outcomes: outcomes.map { (lag: $0.0, outcome: $0.1) })
  }

  @Test("range checks: one round at a time; a range found changed is not read again until its watcher moves")
  func rangeChecksRounds() {
    var checks = RangeChecks()
    let now = ContinuousClock.now
    let r1 = checks.start([Self.lag(1, from: 4)], target: 6, now: now)
    #expect(r1)
    let r2 = checks.start([Self.lag(1, from: 4)], target: 6, now: now)
    #expect(!r2, "one round at a time")
    let r3 = checks.ended(Self.result(6, [(Self.lag(1, from: 4), .changed)]), now: now)
    #expect(r3 == nil)
    let r4 = checks.start([Self.lag(1, from: 4)], target: 6, now: now)
    #expect(!r4, "the watch brings what the read found")
    // The watcher moved while the read was under way (to 5, still behind 6): that is another
    // state, which no read has looked at. Not reading it again would wait forever when the
    // range is idle from there on.
    let r5 = checks.start([Self.lag(1, from: 5)], target: 6, now: now)
    #expect(r5)
    let r6 = checks.ended(Self.result(6, [(Self.lag(1, from: 5), .unchanged)]), now: now)
    #expect(r6 == nil)
    // A newer revision elsewhere: read again.
    let r7 = checks.start([Self.lag(1, from: 6)], target: 7, now: now)
    #expect(r7)
    #expect(checks.rounds == 3)
  }

  @Test("range checks: of two ranges read, one confirmed and one changed, only a move of the changed one reads again")
  func rangeChecksPartial() {
    var checks = RangeChecks()
    let now = ContinuousClock.now
    let r8 = checks.start([Self.lag(1, from: 4), Self.lag(2, from: 4)], target: 6, now: now)
    #expect(r8)
    _ = checks.ended(Self.result(6, [(Self.lag(1, from: 4), .unchanged), (Self.lag(2, from: 4), .changed)]), now: now)
    let r9 = checks.start([Self.lag(2, from: 4)], target: 6, now: now)
    #expect(!r9)
    let r10 = checks.start([Self.lag(2, from: 5)], target: 6, now: now)
    #expect(r10)
  }

  @Test("range checks: a failed read is tried again after a pause that doubles, up to 2 s")
  func rangeChecksRetry() throws {
    var checks = RangeChecks()
    let now = ContinuousClock.now
    var pauses: [Duration] = []
    for _ in 0..<8 {
      let r11 = checks.start([Self.lag(1, from: 4)], target: 6, now: now + .seconds(100))
      #expect(r11)
      let ended = checks.ended(Self.result(6, [(Self.lag(1, from: 4), .failed)]), now: now)
      let at = try #require(ended)
      pauses.append(at - now)
      let r12 = checks.start([Self.lag(1, from: 4)], target: 6, now: at - .milliseconds(1))
      #expect(!r12, "not before the pause")
    }
    #expect(pauses.first == .milliseconds(100))
    #expect(zip(pauses, pauses.dropFirst()).allSatisfy { $0 <= $1 })
    #expect(pauses.last == .seconds(2))
    // A read that succeeds ends the failures.
    let r13 = checks.start([Self.lag(1, from: 4)], target: 6, now: now + .seconds(200))
    #expect(r13)
    let r14 = checks.ended(Self.result(6, [(Self.lag(1, from: 4), .unchanged)]), now: now)
    #expect(r14 == nil)
    #expect(checks.failures == 0)
  }

  @Test("confirmAll drops what it proved undone: a key created and deleted in between never reaches the snapshot")
  func confirmAllDropsUndoneEvents() {
    var barrier = RevisionBarrier(ranges: [.prefix("/a/"), .prefix("/b/")], revision: 100)
    barrier.receive(Self.response([Self.put("/a/tmp", "x", revision: 101)]), from: 0)
    // A status check read every range at 103: as at 100 (the key is gone again).
    barrier.confirmAll(unchangedFrom: 100, through: 103)
    let released = barrier.release()
    #expect(released.revision == 103)
    #expect(released.events.isEmpty, "the put of 101 was undone by 103")
    // The delete of 102 arrives late: a repeat, dropped.
    let delete = WatchEvent(kind: .delete, kv: KeyValue(key: Array("/a/tmp".utf8), value: [], modRevision: 102))
    barrier.receive(Self.response([delete]), from: 0)
    #expect(barrier.release().events.isEmpty)
    #expect(barrier.lagging().isEmpty)
    // An event after the confirmed revision is held and released as usual.
    barrier.receive(Self.response([Self.put("/b/y", "1", revision: 104)]), from: 1)
    barrier.receive(Self.response([], revision: 104), from: 0)
    #expect(barrier.release().events.map(\.revision) == [104])
  }

  @Test("disjoint ranges: overlapping and touching ones joined, gaps kept")
  func disjoint() {
    func keys(_ ranges: [KeyRange]) -> [String] {
      ranges.map { "\(String(decoding: $0.key, as: UTF8.self))..\(String(decoding: $0.rangeEnd, as: UTF8.self))" }
    }
    #expect(keys(disjointRanges([.prefix("/c/"), .prefix("/a/")])) == ["/a/../a0", "/c/../c0"])
    #expect(keys(disjointRanges([.prefix("/a/"), .prefix("/a/b/"), .key("/a/z")])) == ["/a/../a0"])
    #expect(keys(disjointRanges([.key("/a"), .prefix("/a")])) == ["/a../b"])
    #expect(keys(disjointRanges([.key("/k"), .key("/k")])) == ["/k.."])
    #expect(keys(disjointRanges([.range("/a", "/b"), .range("/b", "/c")])) == ["/a../c"])
    #expect(disjointRanges([.prefix("/a/"), .fromKey("/b")]).map(\.rangeEnd) == [Array("/a0".utf8), [0]])
    #expect(disjointRanges([.fromKey("/a"), .prefix("/b/")]) == [.fromKey("/a")])
    // A single key next to a prefix that starts right after it: `/k\0` is where `/k` ends.
    #expect(keys(disjointRanges([.key("/k"), .prefix("/k\u{0}")])).count == 1)
  }

  /// One generated history: revisions of 1–3 writes over keys of three ranges.
  struct History {
    let ranges: [KeyRange] = [.prefix("/a/"), .prefix("/c/"), .prefix("/e/")]
    /// Each revision's events, from revision 2 on (index 0 is revision 2).
    var revisions: [[WatchEvent]] = []
    var last: Int64 { Int64(self.revisions.count) + 1 }

    init(seed: UInt64, count: Int) {
      var random = SplitMix64(seed: seed)
      var live: [String: (version: Int64, create: Int64)] = [:]
      var undo: String?
      for index in 0..<count {
        let revision = Int64(index) + 2
        var events: [WatchEvent] = []
        var touched: Set<String> = []
        // Now and then a key created and deleted at the next revision: changes that undo
        // themselves, which only the count tells from none.
        if let key = undo {
          self.revisions.append([WatchEvent(kind: .delete, kv: KeyValue(key: Array(key.utf8), value: [], modRevision: revision))])
          undo = nil
          continue
        }
        if Int.random(in: 0..<5, using: &random) == 0 {
          let key = "/\(["a", "c", "e"].randomElement(using: &random)!)/tmp\(revision)"
          self.revisions.append([WatchEvent(kind: .put, kv: KeyValue(key: Array(key.utf8), value: Array("t".utf8),
                                                                     createRevision: revision, modRevision: revision, version: 1))])
          undo = key
          continue
        }
        for _ in 0..<Int.random(in: 1...3, using: &random) {
          let key = "/\(["a", "c", "e"].randomElement(using: &random)!)/\(Int.random(in: 0..<4, using: &random))"
          guard touched.insert(key).inserted else { continue }
          if live[key] != nil, Bool.random(using: &random) {
            events.append(WatchEvent(kind: .delete, kv: KeyValue(key: Array(key.utf8), value: [], modRevision: revision)))
            live[key] = nil
          } else {
            let version = (live[key]?.version ?? 0) + 1
            let create = live[key]?.create ?? revision
            live[key] = (version, create)
            events.append(WatchEvent(kind: .put, kv: KeyValue(key: Array(key.utf8), value: Array("v\(revision)".utf8),
                                                              createRevision: create, modRevision: revision, version: version)))
          }
        }
        self.revisions.append(events)
      }
    }

    /// Every key's value at `revision`.
    func state(at revision: Int64) -> [[UInt8]: [UInt8]] {
      var state: [[UInt8]: [UInt8]] = [:]
      for events in self.revisions.prefix(max(0, Int(revision) - 1)) {
        for event in events { state[event.kv.key] = event.kind == .put ? event.kv.value : nil }
      }
      return state
    }

    /// Whether `range` changed in `(from, through]`.
    func changed(_ range: KeyRange, from: Int64, through: Int64) -> Bool {
      guard through > from else { return false }
      return self.revisions[Int(from - 1)..<Int(through - 1)].contains { $0.contains { range.contains($0.kv.key) } }
    }

    /// One watcher's responses: one per revision that touched its range, with now and then a
    /// progress notification of a revision it has delivered everything up to.
    func responses(_ watcher: Int, random: inout SplitMix64) -> [WatchResponse] {
      var responses: [WatchResponse] = []
      for (index, events) in self.revisions.enumerated() {
        let mine = events.filter { self.ranges[watcher].contains($0.kv.key) }
        let revision = Int64(index) + 2
        if !mine.isEmpty { responses.append(RevisionBarrierTests.response(mine)) }
        if Int.random(in: 0..<8, using: &random) == 0 { responses.append(RevisionBarrierTests.response([], revision: revision)) }
      }
      return responses
    }
  }

  @Test("generated histories, random interleavings: every release is exactly the history at its revision",
        arguments: 0..<40)
  func generated(seed: Int) throws {
    let history = History(seed: UInt64(seed) &* 7919 &+ 17, count: 60)
    var random = SplitMix64(seed: UInt64(seed))
    var queues = history.ranges.indices.map { history.responses($0, random: &random) }
    var barrier = RevisionBarrier(ranges: history.ranges, revision: 1)
    var state: [[UInt8]: [UInt8]] = [:]
    var releasedAt: Int64 = 1
    var steps = 0
    while barrier.safe < history.last {
      steps += 1
      try #require(steps < 10_000)
      let waiting = queues.indices.filter { !queues[$0].isEmpty }
      if !waiting.isEmpty, Int.random(in: 0..<4, using: &random) != 0 {
        let watcher = waiting.randomElement(using: &random)!
        barrier.receive(queues[watcher].removeFirst(), from: watcher)
      } else {
        // The agent's read: a lagging range unchanged between where its watcher is and the
        // newest revision is confirmed. Its expected count is what the history holds at `from`.
        let target = barrier.newest
        for lag in barrier.lagging() {
          let atFrom = history.state(at: lag.from).keys.filter { lag.range.contains($0) }.count
          let inSnapshot = state.keys.filter { lag.range.contains($0) }.count
          #expect(inSnapshot + lag.heldCountDelta == atFrom, "seed \(seed): held count of watcher \(lag.watcher)")
          if !history.changed(lag.range, from: lag.from, through: target) {
            barrier.confirm(lag.watcher, unchangedFrom: lag.from, through: target)
          }
        }
        // The status check's read: every range the same at the newest revision as at the
        // released one (a key created and deleted in between, say).
        if target > releasedAt, history.state(at: target) == state, Int.random(in: 0..<3, using: &random) == 0 {
          barrier.confirmAll(unchangedFrom: releasedAt, through: target)
        }
        if waiting.isEmpty && barrier.lagging().isEmpty && barrier.safe < history.last {
          // Everything delivered and confirmed up to the newest event: the rest is idle.
          for index in history.ranges.indices { barrier.receive(Self.response([], revision: history.last), from: index) }
        }
      }
      let (events, revision) = barrier.release()
      #expect(revision >= releasedAt)
      #expect(zip(events, events.dropFirst()).allSatisfy { $0.revision <= $1.revision })
      for event in events {
        #expect(event.revision > releasedAt && event.revision <= revision)
        state[event.kv.key] = event.kind == .put ? event.kv.value : nil
      }
      releasedAt = revision
      #expect(state == history.state(at: revision), "seed \(seed): released revision \(revision)")
    }
    #expect(state == history.state(at: history.last))
  }
}
