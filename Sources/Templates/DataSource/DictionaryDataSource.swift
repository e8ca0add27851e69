/// An in-memory ``TemplateDataSource`` over a sorted array: for tests, tools and small data.
///
/// Keys are bytes, as in etcd: `/p/\u{E9}` and `/p/e\u{301}` are two keys even though Swift's
/// `String` calls them equal. A `[String: …]` dictionary cannot hold both, so build such
/// data with ``init(pairs:)`` or ``init(stringPairs:)``.
public struct DictionaryDataSource: TemplateDataSource {
  private let keys: [String]
  private let values: [[UInt8]]
  private let index: [ExactString: Int]

  /// Creates a source from keys and byte values.
  public init(_ entries: [String: [UInt8]]) {
    self.init(pairs: entries.map { ($0.key, $0.value) })
  }

  /// Creates a source from keys and text values (stored as UTF-8).
  public init(strings entries: [String: String]) {
    self.init(entries.mapValues { Array($0.utf8) })
  }

  /// Creates a source from key and value pairs; of pairs whose keys have the same bytes,
  /// the last one counts.
  public init(pairs: [(key: String, value: [UInt8])]) {
    let sorted = pairs.enumerated().sorted { lhs, rhs in
      if ByteOrder.less(lhs.element.key, rhs.element.key) { return true }
      if ByteOrder.less(rhs.element.key, lhs.element.key) { return false }
      return lhs.offset < rhs.offset
    }
    var keys: [String] = []
    var values: [[UInt8]] = []
    keys.reserveCapacity(sorted.count)
    values.reserveCapacity(sorted.count)
    for (_, pair) in sorted {
      if let last = keys.last, last.bytesEqual(pair.key) {
        values[values.count - 1] = pair.value
      } else {
        keys.append(pair.key)
        values.append(pair.value)
      }
    }
    var index: [ExactString: Int] = [:]
    index.reserveCapacity(keys.count)
    for (position, key) in keys.enumerated() { index[ExactString(key)] = position }
    self.keys = keys
    self.values = values
    self.index = index
  }

  /// Creates a source from key and text value pairs (values stored as UTF-8).
  public init(stringPairs pairs: [(key: String, value: String)]) {
    self.init(pairs: pairs.map { ($0.key, Array($0.value.utf8)) })
  }

  /// The number of keys.
  public var count: Int { keys.count }

  public func value(forKey key: String) -> [UInt8]? {
    index[ExactString(key)].map { values[$0] }
  }

  public func forEachEntry(withPrefix prefix: String, _ body: (String, [UInt8]) -> Bool) {
    var low = 0
    var high = keys.count
    while low < high {
      let mid = low + (high - low) / 2
      if ByteOrder.less(keys[mid], prefix) { low = mid + 1 } else { high = mid }
    }
    var position = low
    while position < keys.count, ByteOrder.hasPrefix(keys[position], prefix) {
      if !body(keys[position], values[position]) { return }
      position += 1
    }
  }
}
