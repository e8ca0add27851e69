/// Anything that answers etcd's Range request: ``EtcdClient``, or a store without etcd (such
/// as the test support's in-memory one). Paged reads pinned at one revision are built on it
/// once, here, for both.
public protocol RangeReader: Sendable {
  /// One Range request.
  func get(_ range: KeyRange, options: GetOptions) async throws(EtcdError) -> GetResponse
}

extension RangeReader {
  /// Reads a whole range of any size, `pageSize` keys per request, every page pinned to one
  /// revision: `revision`, or else the revision of the first page. The result is one
  /// consistent snapshot. Without a given revision, a read whose revision is compacted
  /// mid-way starts over at the current revision (up to 3 times); with one, it throws
  /// `compacted`.
  public func getAll(_ range: KeyRange, revision: Int64 = 0, pageSize: Int64 = 10_000, keysOnly: Bool = false) async throws(EtcdError) -> Snapshot {
    var kvs: [KeyValue] = []
    var attempts = 0
    while true {
      attempts += 1
      kvs.removeAll(keepingCapacity: true)
      do {
        let read = try await self.pages(range, revision: revision, pageSize: pageSize, keysOnly: keysOnly) { page in
          // The first page says how many keys the range holds: one allocation, not a
          // doubling series (for 100k keys that held 11 MB at once).
          if kvs.isEmpty { kvs.reserveCapacity(Int(clamping: page.count)) }
          kvs.append(contentsOf: page.kvs)
        }
        return Snapshot(revision: read, kvs: kvs)
      } catch where error.code == .compacted && revision == 0 && attempts < 3 {
        continue
      }
    }
  }

  /// Calls `body` with each page of a range, in key order, all pinned to one revision
  /// (`revision`, or else the first page's), which it returns. Throws `compacted` if that
  /// revision is compacted before the last page.
  public func forEachPage(
    _ range: KeyRange,
    revision: Int64 = 0,
    pageSize: Int64 = 10_000,
    keysOnly: Bool = false,
    _ body: ([KeyValue]) throws -> Void
  ) async throws(EtcdError) -> Int64 {
    try await self.pages(range, revision: revision, pageSize: pageSize, keysOnly: keysOnly) { try body($0.kvs) }
  }

  /// ``forEachPage(_:revision:pageSize:keysOnly:_:)`` with each whole response.
  func pages(
    _ range: KeyRange,
    revision: Int64,
    pageSize: Int64,
    keysOnly: Bool,
    _ body: (GetResponse) throws -> Void
  ) async throws(EtcdError) -> Int64 {
    // No sort order: etcd returns keys in key order anyway, and any sort order (or a
    // min/max revision filter) makes it read the whole range for every page before
    // truncating it to the limit (etcdserver/apply.go).
    var options = GetOptions(limit: max(pageSize, 1), revision: revision, keysOnly: keysOnly)
    var current = range
    var pinned = revision
    while true {
      let page = try await self.get(current, options: options)
      if pinned == 0 {
        pinned = page.header.revision
        options.revision = pinned
      }
      do { try body(page) } catch { throw EtcdError.wrap(error) }
      guard page.more, let last = page.kvs.last else { return pinned }
      if current.rangeEnd.isEmpty { return pinned }
      current.key = last.key + [0]
    }
  }
}
