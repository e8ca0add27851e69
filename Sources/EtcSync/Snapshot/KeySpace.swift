import EtcdClient
import Synchronization
import Templates

#if canImport(Glibc)
import Glibc
#endif

/// The agent's in-memory copy of every watched key at one revision: key → (value, create/mod
/// revision, version, lease), kept in etcd's (byte-wise) key order. Every render and plan
/// reads one `KeySpace`, so it sees exactly one revision across all of a mapping's prefixes.
///
/// One sorted array, searched by bisection: a prefix walk reads neighbours in place, and a
/// 100k-key snapshot holds no hash table beside it (it cost a tenth of a one-shot sync's CPU
/// and about 7 MB).
public struct KeySpace: Sendable {
  /// The revision this snapshot is at: every event up to it is applied, none after it.
  public private(set) var revision: Int64
  /// Which read this snapshot descends from: new for every snapshot made (a read of etcd),
  /// kept by ``apply(_:)`` and ``advance(to:)``. Revisions say what changed only within one
  /// lineage: an etcd restored from a backup (a compaction, then a re-read) serves its keys
  /// with their old revisions below a bumped current one.
  public let lineage: UInt64
  /// Every key-value, in key order, each key once.
  private var entries: [KeyValue] = []

  /// An empty snapshot at `revision`.
  public init(revision: Int64 = 0) {
    self.revision = revision
    self.lineage = Self.newLineage()
  }

  private static func newLineage() -> UInt64 { keySpaceLineages.add(1, ordering: .relaxed).newValue }

  /// A snapshot made of the key-values read at `revision` (any order; of a key given twice,
  /// the last one counts).
  public init(revision: Int64, kvs: [KeyValue]) {
    self.revision = revision
    self.lineage = Self.newLineage()
    // etcd returns ranges in key order (pages too): then they are taken as they are.
    var ascending = true
    for index in kvs.indices.dropFirst() where !bytesPrecede(kvs[index - 1].key, kvs[index].key) {
      ascending = false
      break
    }
    if ascending {
      self.entries = kvs
      return
    }
    // Stable, so that of equal keys the later one ends up last and wins.
    let ordered = kvs.enumerated().sorted { left, right in
      bytesPrecede(left.element.key, right.element.key)
        || (left.element.key == right.element.key && left.offset < right.offset)
    }
    self.entries.reserveCapacity(kvs.count)
    for (_, kv) in ordered {
      if let last = self.entries.last, last.key == kv.key {
        self.entries[self.entries.count - 1] = kv
      } else {
        self.entries.append(kv)
      }
    }
  }

  public var count: Int { self.entries.count }

  public subscript(key: [UInt8]) -> KeyValue? {
    let index = self.lowerBound(key)
    guard index < self.entries.count, self.entries[index].key == key else { return nil }
    return self.entries[index]
  }

  /// Applies the events of one or more whole revisions. Events at or below the current
  /// revision are dropped (already applied); a revision below the current one is never
  /// applied. Returns the events that were applied.
  @discardableResult
  public mutating func apply(_ events: [WatchEvent]) -> [WatchEvent] {
    var applied: [WatchEvent] = []
    let base = self.revision
    for event in events where event.revision > base {
      let index = self.lowerBound(event.kv.key)
      let present = index < self.entries.count && self.entries[index].key == event.kv.key
      switch event.kind {
      case .put:
        if present { self.entries[index] = event.kv } else { self.entries.insert(event.kv, at: index) }
      case .delete:
        if present { self.entries.remove(at: index) }
      }
      applied.append(event)
    }
    if let last = applied.last { self.revision = last.revision }
    return applied
  }

  /// How many keys `range` holds (etcd's rule: an empty end is the key alone, `[0]` every key
  /// from it on).
  public func count(in range: KeyRange) -> Int {
    let start = self.lowerBound(range.key)
    if range.rangeEnd.isEmpty {
      return start < self.entries.count && self.entries[start].key == range.key ? 1 : 0
    }
    if range.rangeEnd == [0] { return self.entries.count - start }
    return max(0, self.lowerBound(range.rangeEnd) - start)
  }

  /// Moves the snapshot's revision forward without changes (a progress notification).
  public mutating func advance(to revision: Int64) {
    self.revision = max(self.revision, revision)
  }

  /// Calls `body` with each key-value whose key starts with `prefix`, in key order, until it
  /// returns false.
  public func forEach(withPrefix prefix: [UInt8], _ body: (KeyValue) -> Bool) {
    var index = self.lowerBound(prefix)
    while index < self.entries.count {
      let kv = self.entries[index]
      guard kv.key.starts(with: prefix), body(kv) else { return }
      index += 1
    }
  }

  /// Calls `body` with each key-value that `prefix` covers (``KeyPrefix``'s rule: with
  /// `/app/config`, the key itself and `/app/config/…`, never `/app/config2/…`), in key
  /// order, until it returns false.
  public func forEach(withPrefix prefix: KeyPrefix, _ body: (KeyValue) -> Bool) {
    self.forEach(in: prefix.units, body)
  }

  /// Walks disjoint units (exact keys and prefix walks) sorted in key order.
  func forEach(in units: [(key: [UInt8], exact: Bool)], _ body: (KeyValue) -> Bool) {
    var keepGoing = true
    for unit in units where keepGoing {
      if unit.exact {
        if let kv = self[unit.key] { keepGoing = body(kv) }
      } else {
        self.forEach(withPrefix: unit.key) { kv in
          keepGoing = body(kv)
          return keepGoing
        }
      }
    }
  }

  /// The key-values under `prefix`, in key order.
  public func values(withPrefix prefix: [UInt8]) -> [KeyValue] {
    var result: [KeyValue] = []
    self.forEach(withPrefix: prefix) { result.append($0); return true }
    return result
  }

  /// Index of the first key ≥ `key`.
  private func lowerBound(_ key: [UInt8]) -> Int {
    var low = 0, high = self.entries.count
    while low < high {
      let mid = (low + high) / 2
      if bytesPrecede(self.entries[mid].key, key) { low = mid + 1 } else { high = mid }
    }
    return low
  }
}

/// Whether `a` sorts before `b` byte-wise (etcd's key order), with `memcmp`: the generic
/// `lexicographicallyPrecedes` compares element by element through the iterator protocol.
@inline(__always)
func bytesPrecede(_ a: [UInt8], _ b: [UInt8]) -> Bool {
  a.withUnsafeBufferPointer { x in
    b.withUnsafeBufferPointer { y in
      let common = min(x.count, y.count)
      if common > 0, let left = x.baseAddress, let right = y.baseAddress {
        let order = memcmp(left, right, common)
        if order != 0 { return order < 0 }
      }
      return x.count < y.count
    }
  }
}

/// What a template sees: the snapshot's keys under the mapping's prefixes, read in place.
/// Which keys a prefix covers is ``KeyPrefix``'s rule.
public struct KeySpaceDataSource: TemplateDataSource {
  public let keySpace: KeySpace
  /// The mapping's prefixes; keys outside them are invisible to its template.
  public let prefixes: [KeyPrefix]
  /// What the prefixes cover, as disjoint pieces in key order (each walked once).
  private let units: [(key: [UInt8], exact: Bool)]

  public init(keySpace: KeySpace, prefixes: [String]) {
    self.keySpace = keySpace
    self.prefixes = prefixes.map(KeyPrefix.init)
    self.units = coveringUnits(self.prefixes)
  }

  private func visible(_ key: [UInt8]) -> Bool {
    self.units.contains { $0.exact ? key == $0.key : key.starts(with: $0.key) }
  }

  public func value(forKey key: String) -> [UInt8]? {
    let bytes = Array(key.utf8)
    guard self.visible(bytes) else { return nil }
    return self.keySpace[bytes]?.value
  }

  public func forEachEntry(withPrefix prefix: String, _ body: (String, [UInt8]) -> Bool) {
    let bytes = Array(prefix.utf8)
    // The requested prefix, clipped to each visible piece, in key order.
    var walks: [(key: [UInt8], exact: Bool)] = []
    for unit in self.units {
      if !unit.exact && bytes.starts(with: unit.key) { walks = [(bytes, false)]; break }  // inside one piece
      if unit.key.starts(with: bytes) { walks.append(unit) }                            // a piece inside the request
    }
    self.keySpace.forEach(in: walks) { kv in
      // A key that is not UTF-8 cannot become a template string without changing its bytes
      // (it would read as U+FFFD): no template sees it, and the planner reports it rejected.
      guard let key = String(validating: kv.key, as: UTF8.self) else { return true }
      return body(key, kv.value)
    }
  }
}

/// The last ``KeySpace/lineage`` given out.
private let keySpaceLineages = Atomic<UInt64>(0)
