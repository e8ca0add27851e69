/// A read-only view of one consistent snapshot of keys and values, as templates see it.
///
/// The agent implements this over its ordered snapshot so that rendering reads the
/// snapshot in place: nothing is copied, and every read in one render sees one revision.
/// Keys are compared as UTF-8 bytes (etcd's order). Values are bytes; templates render
/// them as UTF-8 text.
///
/// An ordered map answers both requirements cheaply: an exact lookup, and a walk that
/// starts at the first key `>= prefix` and stops at the first key without the prefix.
public protocol TemplateDataSource: Sendable {
  /// The value stored under exactly `key`, or `nil` if there is no such key.
  func value(forKey key: String) -> [UInt8]?

  /// Calls `body` with every key that starts with `prefix` (byte-wise) and its value, in
  /// ascending byte order of the keys, until `body` returns `false`.
  func forEachEntry(withPrefix prefix: String, _ body: (_ key: String, _ value: [UInt8]) -> Bool)
}

extension TemplateDataSource {
  /// All keys that start with `prefix`, in ascending byte order.
  public func keys(withPrefix prefix: String) -> [String] {
    var keys: [String] = []
    forEachEntry(withPrefix: prefix) { key, _ in
      keys.append(key)
      return true
    }
    return keys
  }
}
