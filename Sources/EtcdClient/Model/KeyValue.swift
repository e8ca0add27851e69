/// The header every etcd response carries.
public struct ResponseHeader: Sendable, Hashable {
  public var clusterID: UInt64
  public var memberID: UInt64
  /// The store's revision when the request was served.
  public var revision: Int64
  public var raftTerm: UInt64

  public init(clusterID: UInt64 = 0, memberID: UInt64 = 0, revision: Int64, raftTerm: UInt64 = 0) {
    self.clusterID = clusterID
    self.memberID = memberID
    self.revision = revision
    self.raftTerm = raftTerm
  }

  init(_ header: Etcdserverpb_ResponseHeader) {
    self.init(clusterID: header.clusterID, memberID: header.memberID, revision: header.revision, raftTerm: header.raftTerm)
  }
}

/// A key and its value at some revision. Keys and values are bytes; `keyString` and
/// `valueString` decode them as UTF-8.
public struct KeyValue: Sendable, Hashable {
  public var key: [UInt8]
  public var value: [UInt8]
  /// Revision of the last creation of this key.
  public var createRevision: Int64
  /// Revision of the last modification of this key.
  public var modRevision: Int64
  /// Number of modifications since creation (reset to 0 on delete).
  public var version: Int64
  /// The lease the key is attached to, 0 if none.
  public var lease: Int64

  public init(key: [UInt8], value: [UInt8], createRevision: Int64 = 0, modRevision: Int64 = 0, version: Int64 = 0, lease: Int64 = 0) {
    self.key = key
    self.value = value
    self.createRevision = createRevision
    self.modRevision = modRevision
    self.version = version
    self.lease = lease
  }

  init(_ kv: Mvccpb_KeyValue) {
    self.init(key: [UInt8](kv.key), value: [UInt8](kv.value), createRevision: kv.createRevision,
              modRevision: kv.modRevision, version: kv.version, lease: kv.lease)
  }

  public var keyString: String { String(decoding: self.key, as: UTF8.self) }
  public var valueString: String { String(decoding: self.value, as: UTF8.self) }
}

/// A contiguous range of keys: one key, a prefix, everything from a key on, or `[key, end)`.
public struct KeyRange: Sendable, Hashable, CustomStringConvertible {
  public var key: [UInt8]
  /// Empty for a single key; `[0]` means "every key ≥ key".
  public var rangeEnd: [UInt8]

  public init(key: [UInt8], rangeEnd: [UInt8] = []) {
    self.key = key
    self.rangeEnd = rangeEnd
  }

  /// Exactly one key.
  public static func key(_ key: String) -> KeyRange { KeyRange(key: Array(key.utf8)) }
  public static func key(_ key: [UInt8]) -> KeyRange { KeyRange(key: key) }
  /// Every key that starts with `prefix` (clientv3's `WithPrefix`). An empty prefix means all keys.
  public static func prefix(_ prefix: String) -> KeyRange { .prefix(Array(prefix.utf8)) }
  public static func prefix(_ prefix: [UInt8]) -> KeyRange {
    prefix.isEmpty ? .all : KeyRange(key: prefix, rangeEnd: prefixEnd(prefix))
  }
  /// Every key ≥ `key` (clientv3's `WithFromKey`).
  public static func fromKey(_ key: String) -> KeyRange { .fromKey(Array(key.utf8)) }
  public static func fromKey(_ key: [UInt8]) -> KeyRange { KeyRange(key: key.isEmpty ? [0] : key, rangeEnd: [0]) }
  /// Keys in `[start, end)` (clientv3's `WithRange`).
  public static func range(_ start: String, _ end: String) -> KeyRange { KeyRange(key: Array(start.utf8), rangeEnd: Array(end.utf8)) }
  /// Every key.
  public static var all: KeyRange { KeyRange(key: [0], rangeEnd: [0]) }

  /// Whether the range holds `key`.
  public func contains(_ key: [UInt8]) -> Bool {
    if self.rangeEnd.isEmpty { return key == self.key }
    guard !key.lexicographicallyPrecedes(self.key) else { return false }
    return self.rangeEnd == [0] || key.lexicographicallyPrecedes(self.rangeEnd)
  }

  public var description: String {
    let key = String(decoding: self.key, as: UTF8.self)
    if self.rangeEnd.isEmpty { return key }
    if self.rangeEnd == [0] { return "\(key)…" }
    if self.rangeEnd == prefixEnd(self.key) { return "\(key)*" }
    return "[\(key), \(String(decoding: self.rangeEnd, as: UTF8.self)))"
  }
}

/// The smallest key greater than every key with this prefix (etcd's `GetPrefixRangeEnd`).
public func prefixEnd(_ prefix: [UInt8]) -> [UInt8] {
  var end = prefix
  while let last = end.last {
    if last < 0xFF {
      end[end.count - 1] = last + 1
      return end
    }
    end.removeLast()
  }
  return [0]  // all bytes were 0xff: no upper bound
}

/// One change in the key space, as delivered by a watch.
public struct WatchEvent: Sendable, Hashable {
  public enum Kind: Sendable, Hashable { case put, delete }
  public var kind: Kind
  /// The key after the change; for a delete, only `key` and `modRevision` are set.
  public var kv: KeyValue
  /// The key before the change, when the watch asked for `prevKV`.
  public var prevKV: KeyValue?

  public init(kind: Kind, kv: KeyValue, prevKV: KeyValue? = nil) {
    self.kind = kind
    self.kv = kv
    self.prevKV = prevKV
  }

  init(_ event: Mvccpb_Event) {
    self.init(kind: event.type == .delete ? .delete : .put, kv: KeyValue(event.kv),
              prevKV: event.hasPrevKv ? KeyValue(event.prevKv) : nil)
  }

  /// The revision of the change.
  public var revision: Int64 { self.kv.modRevision }
}
