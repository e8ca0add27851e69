/// One key and its value, as confd's `get` and `gets` return them.
///
/// Templates read the fields as `.Key` and `.Value`. The key is relative to the render's
/// key prefix, as in confd; the value keeps the data source's bytes.
public struct KVPair: Sendable, Hashable {
  /// The key, relative to the render's key prefix (`/db/host`).
  public var key: String
  /// The value's bytes, rendered as UTF-8 text.
  public var value: [UInt8]

  /// Creates a pair from a key and the value's bytes.
  public init(key: String, value: [UInt8]) {
    self.key = key
    self.value = value
  }

  /// Creates a pair from a key and a text value.
  public init(key: String, value: String) {
    self.init(key: key, value: Array(value.utf8))
  }

  /// The value decoded as UTF-8 (invalid bytes become U+FFFD).
  public var valueString: String { String(decoding: value, as: UTF8.self) }

  /// Pairs are equal when their keys have the same bytes (etcd's notion of one key) and
  /// their values too; canonically equivalent keys spelled differently are two keys.
  public static func == (lhs: KVPair, rhs: KVPair) -> Bool {
    lhs.key.bytesEqual(rhs.key) && lhs.value == rhs.value
  }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(ExactString(key))
    hasher.combine(value)
  }
}
