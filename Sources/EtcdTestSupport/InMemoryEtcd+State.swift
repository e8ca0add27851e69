import EtcdClient
import Synchronization

// Reads, Txns and commits of `InMemoryEtcd`, on its state under the lock.
extension InMemoryEtcd {
  /// The changes of one revision in the making.
  struct Write {
    var revision: Int64
    var events: [WatchEvent] = []
  }

  /// Stream work to do once the lock is released: yielding (or finishing) inside it could run
  /// a termination handler that takes the lock again.
  struct Deliveries {
    typealias Continuation = AsyncThrowingStream<WatchResponse, any Error>.Continuation
    var responses: [(Continuation, WatchResponse)] = []
    var endings: [(Continuation, EtcdError)] = []

    mutating func append(_ other: Deliveries) {
      self.responses += other.responses
      self.endings += other.endings
    }

    func deliver() {
      for (continuation, response) in self.responses { continuation.yield(response) }
      for (continuation, error) in self.endings { continuation.finish(throwing: error) }
    }
  }
}

extension InMemoryEtcd.State {
  // MARK: Range

  func range(_ range: KeyRange, _ options: GetOptions) throws(EtcdError) -> GetResponse {
    let revision = options.revision == 0 ? self.revision : options.revision
    if revision > self.revision {
      throw EtcdError(.futureRevision, "etcdserver: mvcc: required revision is a future revision")
    }
    if revision < self.compacted {
      throw EtcdError.compacted(revision: self.compacted)
    }
    return self.read(range, options, at: revision)
  }

  func read(_ range: KeyRange, _ options: GetOptions, at revision: Int64) -> GetResponse {
    let all = self.values(range, at: revision)
    var kvs = all.filter { kv in
      (options.minModRevision == 0 || kv.modRevision >= options.minModRevision)
        && (options.maxModRevision == 0 || kv.modRevision <= options.maxModRevision)
        && (options.minCreateRevision == 0 || kv.createRevision >= options.minCreateRevision)
        && (options.maxCreateRevision == 0 || kv.createRevision <= options.maxCreateRevision)
    }
    if options.sortOrder != .none {
      kvs.sort { a, b in
        let ascending: Bool
        switch options.sortTarget {
        case .key: ascending = a.key.lexicographicallyPrecedes(b.key)
        case .version: ascending = a.version < b.version
        case .createRevision: ascending = a.createRevision < b.createRevision
        case .modRevision: ascending = a.modRevision < b.modRevision
        case .value: ascending = a.value.lexicographicallyPrecedes(b.value)
        }
        return options.sortOrder == .descend ? !ascending && a != b : ascending
      }
    }
    var more = false
    // A count-only read returns no keys, so never `more` (etcd's apply.go).
    if options.limit > 0 && kvs.count > Int(options.limit) && !options.countOnly {
      kvs.removeLast(kvs.count - Int(options.limit))
      more = true
    }
    if options.countOnly {
      kvs = []
    } else if options.keysOnly {
      kvs = kvs.map { KeyValue(key: $0.key, value: [], createRevision: $0.createRevision, modRevision: $0.modRevision,
                               version: $0.version, lease: $0.lease) }
    }
    return GetResponse(header: self.header, kvs: kvs, more: more, count: Int64(all.count))
  }

  // MARK: Txn

  /// Evaluates the compares, then runs the branch they choose into `write`.
  mutating func runTxn(_ compare: [Compare], _ success: [Op], _ failure: [Op],
                       _ write: inout InMemoryEtcd.Write) throws(EtcdError) -> TxnResponse {
    let succeeded = compare.allSatisfy { self.holds($0, at: write.revision) }
    let branch = succeeded ? success : failure
    // Checked before anything is written: a Txn that fails changes nothing.
    try self.checkLeases(branch)
    var responses: [OpResponse] = []
    for op in branch {
      switch op {
      case .get(let range, let options):
        // At the Txn's own revision: what its earlier operations wrote is visible.
        responses.append(.get(self.read(range, options, at: write.revision)))
      case .put(let key, let value, let options):
        responses.append(.put(self.put(key, value, options, &write)))
      case .delete(let range, let prevKV):
        responses.append(.delete(self.delete(range, prevKV: prevKV, &write)))
      case .txn(let compare, let success, let failure):
        responses.append(.txn(try self.runTxn(compare, success, failure, &write)))
      }
    }
    return TxnResponse(header: self.header, succeeded: succeeded, responses: responses)
  }

  func checkLeases(_ ops: [Op]) throws(EtcdError) {
    for op in ops {
      switch op {
      case .put(_, _, let options) where options.lease != 0 && self.leases[options.lease] == nil:
        throw EtcdError(.leaseNotFound, "etcdserver: requested lease not found")
      case .txn(_, let success, let failure):
        try self.checkLeases(success + failure)
      default: continue
      }
    }
  }

  /// etcd's compare: a missing key fails a value compare and has 0 for everything else; a
  /// range compare holds if it holds for every key in it.
  func holds(_ compare: Compare, at revision: Int64) -> Bool {
    let kvs = self.values(compare.range, at: revision)
    if kvs.isEmpty {
      if case .value = compare.target { return false }
      return Self.compare(KeyValue(key: compare.range.key, value: []), compare)
    }
    return kvs.allSatisfy { Self.compare($0, compare) }
  }

  static func compare(_ kv: KeyValue, _ compare: Compare) -> Bool {
    let order: Int
    switch compare.target {
    case .value(let value):
      order = kv.value == value ? 0 : (kv.value.lexicographicallyPrecedes(value) ? -1 : 1)
    case .version(let v): order = kv.version == v ? 0 : (kv.version < v ? -1 : 1)
    case .createRevision(let v): order = kv.createRevision == v ? 0 : (kv.createRevision < v ? -1 : 1)
    case .modRevision(let v): order = kv.modRevision == v ? 0 : (kv.modRevision < v ? -1 : 1)
    case .lease(let v): order = kv.lease == v ? 0 : (kv.lease < v ? -1 : 1)
    }
    switch compare.result {
    case .equal: return order == 0
    case .notEqual: return order != 0
    case .greater: return order > 0
    case .less: return order < 0
    }
  }

  mutating func put(_ key: [UInt8], _ value: [UInt8], _ options: PutOptions, _ write: inout InMemoryEtcd.Write) -> PutResponse {
    let previous = self.value(key, at: write.revision)
    let kv = KeyValue(key: key, value: options.ignoreValue ? previous?.value ?? [] : value,
                      createRevision: previous?.createRevision ?? write.revision, modRevision: write.revision,
                      version: (previous?.version ?? 0) + 1, lease: options.ignoreLease ? previous?.lease ?? 0 : options.lease)
    self.record(key, kv, previous: previous, &write)
    write.events.append(WatchEvent(kind: .put, kv: kv, prevKV: previous))
    return PutResponse(header: self.header, prevKV: options.prevKV ? previous : nil)
  }

  mutating func delete(_ range: KeyRange, prevKV: Bool, _ write: inout InMemoryEtcd.Write) -> DeleteResponse {
    let deleted = self.values(range, at: write.revision)
    for previous in deleted {
      self.record(previous.key, nil, previous: previous, &write)
      write.events.append(WatchEvent(kind: .delete, kv: KeyValue(key: previous.key, value: [], modRevision: write.revision),
                                     prevKV: previous))
    }
    return DeleteResponse(header: self.header, deleted: Int64(deleted.count), prevKVs: prevKV ? deleted : [])
  }

  /// Appends a version of `key` at the write's revision, and moves it between leases.
  mutating func record(_ key: [UInt8], _ kv: KeyValue?, previous: KeyValue?, _ write: inout InMemoryEtcd.Write) {
    var versions = self.keys[key] ?? []
    if versions.last?.revision == write.revision { versions.removeLast() }
    versions.append(InMemoryEtcd.Version(revision: write.revision, kv: kv))
    self.keys[key] = versions
    if let old = previous?.lease, old != 0 { self.leases[old]?.keys.remove(key) }
    if let new = kv?.lease, new != 0 { self.leases[new]?.keys.insert(key) }
  }

  /// Makes the write's revision the store's (if it changed anything) and hands its events to
  /// every connected watcher.
  mutating func commit(_ write: InMemoryEtcd.Write) -> InMemoryEtcd.Deliveries {
    guard !write.events.isEmpty else { return InMemoryEtcd.Deliveries() }
    self.revision = write.revision
    self.log.append((write.revision, write.events))
    var deliveries = InMemoryEtcd.Deliveries()
    for id in self.watchers.keys where self.watchers[id]?.connected == true {
      deliveries.append(self.catchUp(id))
    }
    return deliveries
  }
}
