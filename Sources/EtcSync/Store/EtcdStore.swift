import EtcdClient

/// What the agent needs from etcd, and nothing more: reads pinned at a revision, a watch from
/// a revision, and Txns for write-back. ``EtcdClient`` is the real one; tests use
/// `InMemoryEtcd` (EtcdTestSupport), which keeps revisions, history and compaction, and can
/// fail on purpose. Presence adds a lease to it (``PresenceStore``).
///
/// The contract is `EtcdClient`'s, which the agent relies on:
/// - every read and Txn answers with a header: the cluster ID and the store's revision;
/// - a read at a revision below the compaction throws ``EtcdError`` `compacted`, one above
///   the store's `futureRevision`;
/// - a watch delivers whole revisions in order from its start revision, resumes by itself
///   after a transient failure without losing or repeating one, sends progress
///   notifications (no events) when asked to, and ends only by throwing an ``EtcdError``:
///   `compacted` (its next revision was compacted), `watchCanceled`, `permissionDenied`, …;
/// - a mutation that fails with `unavailable` may or may not have been applied.
/// Its reads (one Range, and the paged `forEachPage` and `getAll` built on it) are
/// ``RangeReader``'s.
public protocol EtcdStore: RangeReader {
  /// The cluster ID and the store's current revision (in `header`).
  func status(timeout: Duration?) async throws(EtcdError) -> MemberStatus

  /// Watches a range from `options.startRevision`.
  func watch(_ range: KeyRange, options: WatchOptions) -> WatchStream

  /// The watch `watch` (a ``WatchStream/watchID``) may resume after `revision` if its stream
  /// is re-created: the agent knows its range through it by a read.
  func advanceWatch(_ watch: Int64, through revision: Int64)

  /// Runs `success` if every compare holds, else `failure`, atomically in one revision.
  func txn(if compare: [Compare], then success: [Op], else failure: [Op]) async throws(EtcdError) -> TxnResponse

  /// How many watch responses made no sense so far (an unknown watch ID, an answer to no
  /// create): each restarted the watch stream, which resumed without a loss.
  var watchProtocolViolations: Int { get }
}

extension EtcdClient: EtcdStore {}

// The agent's calls, with `EtcdClient`'s defaults.
extension EtcdStore {
  func get(_ range: KeyRange) async throws(EtcdError) -> GetResponse {
    try await self.get(range, options: GetOptions())
  }

  func status() async throws(EtcdError) -> MemberStatus {
    try await self.status(timeout: nil)
  }

  func watch(_ range: KeyRange) -> WatchStream {
    self.watch(range, options: WatchOptions())
  }

  func txn(if compare: [Compare], then success: [Op]) async throws(EtcdError) -> TxnResponse {
    try await self.txn(if: compare, then: success, else: [])
  }
}
