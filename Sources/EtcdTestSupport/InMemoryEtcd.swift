import EtcdClient
import Synchronization

/// An etcd in memory, for tests of code that needs etcd's semantics but not its process: the
/// agent's logic through its `EtcdStore` seam (the conformance is declared where both are
/// visible, in the tests). It answers with `EtcdClient`'s own types and errors.
///
/// What it keeps as etcd does: one revision counter (1 when empty, +1 per write, one per Txn),
/// each key's create and mod revisions and version, leases, and the history of every revision
/// until it is compacted, so that reads at a past revision and watches from one work. A read
/// or watch below the compaction fails with ``EtcdError`` `compacted`, as etcd's does.
///
/// What it adds for tests: ``failNext(_:with:when:)`` makes the next requests fail (etcd
/// unreachable, say), ``disconnectWatches()``/``reconnectWatches()`` break every watch's
/// stream and resume it the way `EtcdClient` does (from the next undelivered revision, or
/// `compacted` if that is gone), and leases run on a clock the test moves (``advance(by:)``).
///
/// Keys and values are bytes throughout and are compared as bytes.
///
/// Limit: deliveries to watchers are sent after the write's lock is released, so writes from
/// two tasks at once may reach a watcher out of revision order. Write from one task at a time.
public final class InMemoryEtcd: RangeReader {
  /// What ``watchProtocolViolations`` answers: a test says when the store "restarted its
  /// watch over a response that made no sense" (``countWatchProtocolViolation()``).
  private let violations = Atomic<Int>(0)

  /// The watch responses that made no sense so far (`EtcdClient`'s counter); only what
  /// ``countWatchProtocolViolation()`` counted.
  public var watchProtocolViolations: Int { self.violations.load(ordering: .relaxed) }

  /// Counts one watch response that made no sense, as `EtcdClient` does before restarting
  /// its stream.
  public func countWatchProtocolViolation() { self.violations.add(1, ordering: .relaxed) }

  /// The cluster ID every header carries.
  public let clusterID: UInt64
  let state: Mutex<State>

  public init(clusterID: UInt64 = 0xE7C5_1DE0) {
    self.clusterID = clusterID
    self.state = Mutex(State(clusterID: clusterID))
  }

  /// One request, as failure injection and ``requests`` see it.
  public enum Request: Sendable, Hashable {
    case range(KeyRange, GetOptions)
    case txn
    case status
    case compact
    case watch(KeyRange, WatchOptions)
    case lease
  }

  /// A key's value from one revision on; `kv == nil` is a delete (a tombstone).
  struct Version {
    var revision: Int64
    var kv: KeyValue?
  }

  struct Fault {
    var remaining: Int
    var code: EtcdError.Code
    var matches: @Sendable (Request) -> Bool
  }

  struct State {
    let clusterID: UInt64
    var revision: Int64 = 1
    var compacted: Int64 = 0
    /// Every key's versions, oldest first (those before the compaction pruned).
    var keys: [[UInt8]: [Version]] = [:]
    /// Each revision's events, in order (those before the compaction dropped).
    var log: [(revision: Int64, events: [WatchEvent])] = []
    var watchers: [Int64: Watcher] = [:]
    var nextWatchID: Int64 = 1
    var leases: [Int64: LeaseRecord] = [:]
    var nextLeaseID: Int64 = 0x694D_0001
    var now: Duration = .zero
    var faults: [Fault] = []
    var requests: [Request] = []

    var header: ResponseHeader { self.header(at: self.revision) }

    func header(at revision: Int64) -> ResponseHeader {
      ResponseHeader(clusterID: self.clusterID, memberID: 1, revision: revision, raftTerm: 2)
    }

    /// Fails the request if a fault matches it, and records it.
    mutating func admit(_ request: Request) throws(EtcdError) {
      self.requests.append(request)
      guard let index = self.faults.firstIndex(where: { $0.remaining > 0 && $0.matches(request) }) else { return }
      self.faults[index].remaining -= 1
      let code = self.faults[index].code
      if self.faults[index].remaining == 0 { self.faults.remove(at: index) }
      throw EtcdError(code, "injected failure (InMemoryEtcd)")
    }

    /// The live key-value of `key` at `revision`.
    func value(_ key: [UInt8], at revision: Int64) -> KeyValue? {
      self.keys[key]?.last { $0.revision <= revision }?.kv
    }

    /// The live key-values of `range` at `revision`, in key order.
    func values(_ range: KeyRange, at revision: Int64) -> [KeyValue] {
      if range.rangeEnd.isEmpty { return self.value(range.key, at: revision).map { [$0] } ?? [] }
      return self.keys.keys.filter { range.contains($0) }
        .sorted { $0.lexicographicallyPrecedes($1) }
        .compactMap { self.value($0, at: revision) }
    }
  }

  // MARK: Test controls

  /// The store's current revision.
  public var revision: Int64 { self.state.withLock { $0.revision } }

  /// The revision history is compacted up to (0 if never).
  public var compactedRevision: Int64 { self.state.withLock { $0.compacted } }

  /// Every request so far, in order (reads, Txns, status, watch creations, lease calls).
  public var requests: [Request] { self.state.withLock { $0.requests } }

  /// Makes the next `count` requests that `matches` selects fail with `code`, as an
  /// unreachable etcd (`unavailable`, the default) or a refusal would. A failed mutation is
  /// not applied. A watch created meanwhile ends at once with the error.
  public func failNext(_ count: Int = 1, with code: EtcdError.Code = .unavailable,
                       when matches: @escaping @Sendable (Request) -> Bool = { _ in true }) {
    self.state.withLock { $0.faults.append(Fault(remaining: count, code: code, matches: matches)) }
  }

  /// Drops every failure not yet injected.
  public func clearFailures() {
    self.state.withLock { $0.faults.removeAll() }
  }

  /// What `range` holds at `revision` (0: now), for a test's own checks: not recorded in
  /// ``requests`` and never failed by ``failNext(_:with:when:)``. Throws `compacted` or
  /// `futureRevision` as a read would.
  public func contents(_ range: KeyRange, at revision: Int64 = 0) throws(EtcdError) -> Snapshot {
    try self.state.withLock { state throws(EtcdError) in
      let response = try state.range(range, GetOptions(revision: revision))
      return Snapshot(revision: revision == 0 ? state.revision : revision, kvs: response.kvs)
    }
  }

  // MARK: KV

  /// One Range request: at `options.revision` (0 = now), with etcd's limit, `more`, count
  /// (every key of the range at that revision, before the mod/create revision filters),
  /// keys-only and count-only. The header carries the current revision.
  public func get(_ range: KeyRange, options: GetOptions = GetOptions()) async throws(EtcdError) -> GetResponse {
    try self.state.withLock { state throws(EtcdError) in
      try state.admit(.range(range, options))
      return try state.range(range, options)
    }
  }

  /// The cluster ID and the current revision.
  public func status(timeout: Duration? = nil) async throws(EtcdError) -> MemberStatus {
    try self.state.withLock { state throws(EtcdError) in
      try state.admit(.status)
      return MemberStatus(header: state.header, version: "3.5.0-inmemory", leader: 1)
    }
  }

  /// Writes a key (one revision).
  @discardableResult
  public func put(_ key: [UInt8], _ value: [UInt8], lease: Int64 = 0) async throws(EtcdError) -> Int64 {
    try await self.txn(if: [], then: [.put(key: key, value: value, PutOptions(lease: lease))]).header.revision
  }

  @discardableResult
  public func put(_ key: String, _ value: String, lease: Int64 = 0) async throws(EtcdError) -> Int64 {
    try await self.put(Array(key.utf8), Array(value.utf8), lease: lease)
  }

  /// Deletes a key or range (one revision if anything was deleted).
  @discardableResult
  public func delete(_ range: KeyRange) async throws(EtcdError) -> Int64 {
    try await self.txn(if: [], then: [.delete(range)]).header.revision
  }

  @discardableResult
  public func delete(_ key: String) async throws(EtcdError) -> Int64 {
    try await self.delete(.key(key))
  }

  /// Runs `success` if every compare holds, else `failure`, in one revision (none if the
  /// branch writes nothing). Compares as etcd's: a missing key has value compares fail and
  /// revisions, version and lease 0; a range compare holds if it holds for every key.
  public func txn(if compare: [Compare], then success: [Op], else failure: [Op] = []) async throws(EtcdError) -> TxnResponse {
    let (response, deliveries) = try self.state.withLock { state throws(EtcdError) in
      try state.admit(.txn)
      var write = Write(revision: state.revision + 1)
      let response = try state.runTxn(compare, success, failure, &write)
      let deliveries = state.commit(write)
      var answered = response
      answered.header = state.header
      return (answered, deliveries)
    }
    deliveries.deliver()
    return response
  }

  /// Compacts the history up to `revision`: reads below it and watches from below it fail
  /// with `compacted` from now on.
  @discardableResult
  public func compact(_ revision: Int64) async throws(EtcdError) -> ResponseHeader {
    try self.state.withLock { state throws(EtcdError) in
      try state.admit(.compact)
      guard revision > state.compacted else { throw EtcdError.compacted(revision: state.compacted) }
      guard revision <= state.revision else {
        throw EtcdError(.futureRevision, "etcdserver: mvcc: required revision is a future revision")
      }
      state.compacted = revision
      for (key, versions) in state.keys {
        // A read at `revision` or later needs the latest version at or before it, no older one.
        let kept = versions.lastIndex { $0.revision <= revision }.map { index in
          versions[index].kv == nil ? Array(versions[(index + 1)...]) : Array(versions[index...])
        } ?? versions
        state.keys[key] = kept.isEmpty ? nil : kept
      }
      state.log.removeAll { $0.revision < revision }
      return state.header
    }
  }
}
