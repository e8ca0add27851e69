/// An in-memory ``TemplateDataSource`` over a sorted array: for tests, tools and small data.
public struct DictionaryDataSource: TemplateDataSource {
  private let keys: [String]
  private let values: [[UInt8]]
  private let index: [String: Int]

  /// Creates a source from keys and byte values.
  public init(_ entries: [String: [UInt8]]) {
    let sorted = entries.sorted { ByteOrder.less($0.key, $1.key) }
    keys = sorted.map(\.key)
    values = sorted.map(\.value)
    var index: [String: Int] = [:]
    index.reserveCapacity(keys.count)
    for (position, key) in keys.enumerated() { index[key] = position }
    self.index = index
  }

  /// Creates a source from keys and text values (stored as UTF-8).
  public init(strings entries: [String: String]) {
    self.init(entries.mapValues { Array($0.utf8) })
  }

  /// The number of keys.
  public var count: Int { keys.count }

  public func value(forKey key: String) -> [UInt8]? {
    index[key].map { values[$0] }
  }

  public func forEachEntry(withPrefix prefix: String, _ body: (String, [UInt8]) -> Bool) {
    var low = 0
    var high = keys.count
    while low < high {
      let mid = (low + high) / 2
      if ByteOrder.less(keys[mid], prefix) { low = mid + 1 } else { high = mid }
    }
    var position = low
    while position < keys.count, ByteOrder.hasPrefix(keys[position], prefix) {
      if !body(keys[position], values[position]) { return }
      position += 1
    }
  }
}
