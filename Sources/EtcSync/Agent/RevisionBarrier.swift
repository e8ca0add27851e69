import EtcdClient

/// Joins the responses of several watchers, one per disjoint key range, into whole revisions.
///
/// etcd delivers each revision whole to one watcher, but says nothing about the order of two
/// watchers' responses: a transaction that writes two ranges at revision R reaches their
/// watchers in two responses, and between them a render would see half of R. The barrier
/// holds each watcher's events until every watcher is known to have delivered everything up
/// to their revision, and releases whole revisions only.
///
/// A watcher is known *through* revision R after an event of R (events come in revision
/// order), after a progress notification of R, or after a read has shown its range unchanged
/// from its last known revision to R (``confirm(_:unchangedFrom:through:)``). A watcher whose
/// range is idle learns nothing from its stream; ``lagging()`` names the watchers behind the
/// newest revision seen, for the agent to check with one read each.
///
/// A value type with no clock or I/O: the agent feeds it and acts on what it returns.
struct RevisionBarrier: Sendable {
  /// The ranges watched, one per watcher; disjoint.
  let ranges: [KeyRange]
  /// Per watcher: every event of its range up to this revision has been delivered.
  private(set) var through: [Int64]
  /// Per watcher: events delivered above ``released``, in revision order.
  private var held: [[WatchEvent]]
  /// The revision released so far: every event up to it has left the barrier.
  private(set) var released: Int64

  /// A barrier over `ranges` whose content is known at `revision` (a snapshot's).
  init(ranges: [KeyRange], revision: Int64) {
    self.ranges = ranges
    self.through = Array(repeating: revision, count: ranges.count)
    self.held = Array(repeating: [], count: ranges.count)
    self.released = revision
  }

  /// The revision up to which every watcher has delivered everything.
  var safe: Int64 { self.through.min() ?? self.released }
  /// The newest revision any watcher is known through.
  var newest: Int64 { self.through.max() ?? self.released }

  /// Takes one watcher's response: its events (those at or below what the watcher already
  /// delivered are dropped as repeats), or, without events, a progress notification of the
  /// header's revision.
  mutating func receive(_ response: WatchResponse, from watcher: Int) {
    guard self.ranges.indices.contains(watcher) else { return }
    if response.events.isEmpty {
      self.through[watcher] = max(self.through[watcher], response.header.revision)
      return
    }
    // Against what was known before this response: one revision's events come together.
    let known = self.through[watcher]
    for event in response.events where event.revision > known {
      self.held[watcher].append(event)
      self.through[watcher] = max(self.through[watcher], event.revision)
    }
  }

  /// Every held event up to ``safe``, in revision order (a revision's events together), and
  /// the revision the snapshot may now move to.
  mutating func release() -> (events: [WatchEvent], revision: Int64) {
    let safe = self.safe
    guard safe > self.released else { return ([], self.released) }
    var events: [WatchEvent] = []
    var sources = 0
    for index in self.held.indices {
      let count = self.held[index].prefix { $0.revision <= safe }.count
      guard count > 0 else { continue }
      events += self.held[index][..<count]
      self.held[index].removeFirst(count)
      sources += 1
    }
    // Stable: each watcher's events keep their order within a revision. One watcher's are in
    // order already (the common case: a burst in one range).
    if sources > 1 { events = Self.stableSortedByRevision(events) }
    self.released = safe
    return (events, safe)
  }

  /// A watcher behind the newest revision seen: its range, the revision it is known through,
  /// and how many keys it holds beyond the released snapshot's (keys its held events created
  /// minus those they deleted), so that a read can tell whether it changed since.
  struct Lag: Sendable, Equatable {
    var watcher: Int
    var range: KeyRange
    var from: Int64
    var heldCountDelta: Int
  }

  /// The watchers behind ``newest``; empty when every watcher is at it.
  func lagging() -> [Lag] {
    let newest = self.newest
    return self.ranges.indices.compactMap { index in
      guard self.through[index] < newest else { return nil }
      let delta = self.held[index].reduce(0) { sum, event in
        switch event.kind {
        case .put: sum + (event.kv.version == 1 ? 1 : 0)
        case .delete: sum - 1
        }
      }
      return Lag(watcher: index, range: self.ranges[index], from: self.through[index], heldCountDelta: delta)
    }
  }

  /// A read found `watcher`'s range unchanged from `from` through `revision`: it is known
  /// through `revision`, unless its stream has moved it since the read began (then the read
  /// described an older state and proves nothing).
  mutating func confirm(_ watcher: Int, unchangedFrom from: Int64, through revision: Int64) {
    guard self.ranges.indices.contains(watcher), self.through[watcher] == from else { return }
    self.through[watcher] = max(from, revision)
  }

  /// Reads found every range at `revision` as it was at the released revision `from`: every
  /// watcher is known through `revision`. Events held up to it are dropped, not applied:
  /// whatever they did was undone by `revision` (a key created, then deleted), and the events
  /// that undid it, not yet delivered, will be dropped as repeats when they come.
  mutating func confirmAll(unchangedFrom from: Int64, through revision: Int64) {
    guard self.released == from else { return }
    for index in self.through.indices {
      self.held[index].removeAll { $0.revision <= revision }
      self.through[index] = max(self.through[index], revision)
    }
  }

  private static func stableSortedByRevision(_ events: [WatchEvent]) -> [WatchEvent] {
    events.enumerated().sorted { a, b in
      a.element.revision != b.element.revision ? a.element.revision < b.element.revision : a.offset < b.offset
    }.map(\.element)
  }
}

/// The disjoint ranges that hold exactly the keys of `ranges`: overlapping or touching ones
/// joined, in key order. A single key stays a single key unless joined.
func disjointRanges(_ ranges: [KeyRange]) -> [KeyRange] {
  // An empty end is the key alone ([key, key+0)); [0] is "to the end of the key space",
  // written here as nil.
  func end(_ range: KeyRange) -> [UInt8]? {
    if range.rangeEnd.isEmpty { return range.key + [0] }
    return range.rangeEnd == [0] ? nil : range.rangeEnd
  }
  func precedes(_ a: [UInt8]?, _ b: [UInt8]?) -> Bool {
    guard let a else { return false }
    guard let b else { return true }
    return a.lexicographicallyPrecedes(b)
  }
  let sorted = ranges.sorted { $0.key.lexicographicallyPrecedes($1.key) }
  var joined: [(range: KeyRange, end: [UInt8]?)] = []
  for range in sorted {
    let rangeEnd = end(range)
    if let last = joined.last, !precedes(last.end, range.key) {
      // Starts inside (or right at the end of) the last one: join, keeping the later end.
      let newEnd = precedes(last.end, rangeEnd) ? rangeEnd : last.end
      guard newEnd != last.end else { continue }
      joined[joined.count - 1] = (KeyRange(key: last.range.key, rangeEnd: newEnd ?? [0]), newEnd)
    } else {
      joined.append((range, rangeEnd))
    }
  }
  return joined.map(\.range)
}
