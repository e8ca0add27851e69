import Foundation

/// Options of a Get (clientv3's `OpOption`s for `Get`).
public struct GetOptions: Sendable, Hashable {
  /// Order of the results.
  public enum SortOrder: Sendable, Hashable { case none, ascend, descend }
  /// What to sort by.
  public enum SortTarget: Sendable, Hashable { case key, version, createRevision, modRevision, value }

  /// At most this many keys (0 = no limit); the response says whether there were `more`.
  public var limit: Int64 = 0
  /// Read at this revision (0 = the latest).
  public var revision: Int64 = 0
  public var sortOrder: SortOrder = .none
  public var sortTarget: SortTarget = .key
  /// Return keys without values.
  public var keysOnly = false
  /// Return only the count.
  public var countOnly = false
  /// Serve from the member's local store without a quorum round trip (may be stale).
  public var serializable = false
  public var minModRevision: Int64 = 0
  public var maxModRevision: Int64 = 0
  public var minCreateRevision: Int64 = 0
  public var maxCreateRevision: Int64 = 0

  public init(limit: Int64 = 0, revision: Int64 = 0, sortOrder: SortOrder = .none, sortTarget: SortTarget = .key,
              keysOnly: Bool = false, countOnly: Bool = false, serializable: Bool = false) {
    self.limit = limit
    self.revision = revision
    self.sortOrder = sortOrder
    self.sortTarget = sortTarget
    self.keysOnly = keysOnly
    self.countOnly = countOnly
    self.serializable = serializable
  }
}

/// Options of a Put.
public struct PutOptions: Sendable, Hashable {
  /// Attach the key to this lease (0 = none).
  public var lease: Int64 = 0
  /// Return the previous key-value.
  public var prevKV = false
  /// Keep the current value (update only the lease); the value given must be empty.
  public var ignoreValue = false
  /// Keep the current lease; `lease` must be 0.
  public var ignoreLease = false

  public init(lease: Int64 = 0, prevKV: Bool = false, ignoreValue: Bool = false, ignoreLease: Bool = false) {
    self.lease = lease
    self.prevKV = prevKV
    self.ignoreValue = ignoreValue
    self.ignoreLease = ignoreLease
  }
}

/// A comparison in a Txn's `if` clause: `target(key) <op> operand`.
public struct Compare: Sendable, Hashable {
  /// What is compared, with the operand.
  public enum Target: Sendable, Hashable {
    case value([UInt8])
    case version(Int64)
    case createRevision(Int64)
    case modRevision(Int64)
    case lease(Int64)
  }
  public enum Result: Sendable, Hashable { case equal, notEqual, greater, less }

  public var range: KeyRange
  public var target: Target
  public var result: Result

  public init(_ range: KeyRange, _ target: Target, _ result: Result) {
    self.range = range
    self.target = target
    self.result = result
  }

  public static func value(_ key: String, _ result: Result, _ value: String) -> Compare {
    Compare(.key(key), .value(Array(value.utf8)), result)
  }
  public static func value(_ key: String, _ result: Result, _ value: [UInt8]) -> Compare {
    Compare(.key(key), .value(value), result)
  }
  public static func version(_ key: String, _ result: Result, _ version: Int64) -> Compare {
    Compare(.key(key), .version(version), result)
  }
  public static func createRevision(_ key: String, _ result: Result, _ revision: Int64) -> Compare {
    Compare(.key(key), .createRevision(revision), result)
  }
  public static func modRevision(_ key: String, _ result: Result, _ revision: Int64) -> Compare {
    Compare(.key(key), .modRevision(revision), result)
  }
  public static func lease(_ key: String, _ result: Result, _ lease: Int64) -> Compare {
    Compare(.key(key), .lease(lease), result)
  }

  var proto: Etcdserverpb_Compare {
    var c = Etcdserverpb_Compare()
    c.key = Data(self.range.key)
    c.rangeEnd = Data(self.range.rangeEnd)
    switch self.result {
    case .equal: c.result = .equal
    case .notEqual: c.result = .notEqual
    case .greater: c.result = .greater
    case .less: c.result = .less
    }
    switch self.target {
    case .value(let v): c.target = .value; c.targetUnion = .value(Data(v))
    case .version(let v): c.target = .version; c.targetUnion = .version(v)
    case .createRevision(let v): c.target = .create; c.targetUnion = .createRevision(v)
    case .modRevision(let v): c.target = .mod; c.targetUnion = .modRevision(v)
    case .lease(let v): c.target = .lease; c.targetUnion = .lease(v)
    }
    return c
  }
}

/// One operation, to run alone with ``EtcdClient/do(_:)`` or inside a Txn
/// (clientv3's `OpGet`, `OpPut`, `OpDelete`, `OpTxn`).
public indirect enum Op: Sendable, Hashable {
  case get(KeyRange, GetOptions = GetOptions())
  case put(key: [UInt8], value: [UInt8], PutOptions = PutOptions())
  case delete(KeyRange, prevKV: Bool = false)
  case txn(compare: [Compare], success: [Op], failure: [Op])

  public static func put(_ key: String, _ value: String, _ options: PutOptions = PutOptions()) -> Op {
    .put(key: Array(key.utf8), value: Array(value.utf8), options)
  }
  public static func get(_ key: String, _ options: GetOptions = GetOptions()) -> Op { .get(.key(key), options) }
  public static func delete(_ key: String, prevKV: Bool = false) -> Op { .delete(.key(key), prevKV: prevKV) }

  var requestOp: Etcdserverpb_RequestOp {
    var op = Etcdserverpb_RequestOp()
    switch self {
    case .get(let range, let options): op.request = .requestRange(rangeRequest(range, options))
    case .put(let key, let value, let options): op.request = .requestPut(putRequest(key, value, options))
    case .delete(let range, let prevKV): op.request = .requestDeleteRange(deleteRequest(range, prevKV: prevKV))
    case .txn(let compare, let success, let failure): op.request = .requestTxn(txnRequest(compare, success, failure))
    }
    return op
  }
}

/// The result of a Get.
public struct GetResponse: Sendable, Hashable {
  public var header: ResponseHeader
  public var kvs: [KeyValue]
  /// Whether more keys matched than `limit` allowed.
  public var more: Bool
  /// Number of keys in the range (all of them, not only those returned).
  public var count: Int64

  /// A response made without etcd (an in-memory etcd in tests).
  public init(header: ResponseHeader, kvs: [KeyValue], more: Bool, count: Int64) {
    self.header = header
    self.kvs = kvs
    self.more = more
    self.count = count
  }

  init(_ r: Etcdserverpb_RangeResponse) {
    self.header = ResponseHeader(r.header)
    self.kvs = r.kvs.map(KeyValue.init)
    self.more = r.more
    self.count = r.count
  }
}

/// The result of a Put.
public struct PutResponse: Sendable, Hashable {
  public var header: ResponseHeader
  /// The key before the put, when `prevKV` was asked for and the key existed.
  public var prevKV: KeyValue?

  /// A response made without etcd (an in-memory etcd in tests).
  public init(header: ResponseHeader, prevKV: KeyValue? = nil) {
    self.header = header
    self.prevKV = prevKV
  }

  init(_ r: Etcdserverpb_PutResponse) {
    self.header = ResponseHeader(r.header)
    self.prevKV = r.hasPrevKv ? KeyValue(r.prevKv) : nil
  }
}

/// The result of a Delete.
public struct DeleteResponse: Sendable, Hashable {
  public var header: ResponseHeader
  public var deleted: Int64
  /// The deleted keys, when `prevKV` was asked for.
  public var prevKVs: [KeyValue]

  /// A response made without etcd (an in-memory etcd in tests).
  public init(header: ResponseHeader, deleted: Int64, prevKVs: [KeyValue] = []) {
    self.header = header
    self.deleted = deleted
    self.prevKVs = prevKVs
  }

  init(_ r: Etcdserverpb_DeleteRangeResponse) {
    self.header = ResponseHeader(r.header)
    self.deleted = r.deleted
    self.prevKVs = r.prevKvs.map(KeyValue.init)
  }
}

/// The result of a Txn.
public struct TxnResponse: Sendable, Hashable {
  public var header: ResponseHeader
  /// Whether the compares held (the `then` branch ran).
  public var succeeded: Bool
  /// One response per operation of the branch that ran.
  public var responses: [OpResponse]

  /// A response made without etcd (an in-memory etcd in tests).
  public init(header: ResponseHeader, succeeded: Bool, responses: [OpResponse]) {
    self.header = header
    self.succeeded = succeeded
    self.responses = responses
  }

  init(_ r: Etcdserverpb_TxnResponse) {
    self.header = ResponseHeader(r.header)
    self.succeeded = r.succeeded
    self.responses = r.responses.map(OpResponse.init)
  }
}

/// The result of one ``Op``.
public indirect enum OpResponse: Sendable, Hashable {
  case get(GetResponse)
  case put(PutResponse)
  case delete(DeleteResponse)
  case txn(TxnResponse)

  init(_ r: Etcdserverpb_ResponseOp) {
    switch r.response {
    case .responseRange(let v): self = .get(GetResponse(v))
    case .responsePut(let v): self = .put(PutResponse(v))
    case .responseDeleteRange(let v): self = .delete(DeleteResponse(v))
    case .responseTxn(let v): self = .txn(TxnResponse(v))
    case nil: self = .txn(TxnResponse(Etcdserverpb_TxnResponse()))
    }
  }

  public var header: ResponseHeader {
    switch self {
    case .get(let r): r.header
    case .put(let r): r.header
    case .delete(let r): r.header
    case .txn(let r): r.header
    }
  }
  public var get: GetResponse? { if case .get(let r) = self { r } else { nil } }
  public var put: PutResponse? { if case .put(let r) = self { r } else { nil } }
  public var delete: DeleteResponse? { if case .delete(let r) = self { r } else { nil } }
  public var txn: TxnResponse? { if case .txn(let r) = self { r } else { nil } }
}

// MARK: - Protobuf builders

func rangeRequest(_ range: KeyRange, _ o: GetOptions) -> Etcdserverpb_RangeRequest {
  var r = Etcdserverpb_RangeRequest()
  r.key = Data(range.key)
  r.rangeEnd = Data(range.rangeEnd)
  r.limit = o.limit
  r.revision = o.revision
  switch o.sortOrder {
  case .none: r.sortOrder = .none
  case .ascend: r.sortOrder = .ascend
  case .descend: r.sortOrder = .descend
  }
  switch o.sortTarget {
  case .key: r.sortTarget = .key
  case .version: r.sortTarget = .version
  case .createRevision: r.sortTarget = .create
  case .modRevision: r.sortTarget = .mod
  case .value: r.sortTarget = .value
  }
  r.keysOnly = o.keysOnly
  r.countOnly = o.countOnly
  r.serializable = o.serializable
  r.minModRevision = o.minModRevision
  r.maxModRevision = o.maxModRevision
  r.minCreateRevision = o.minCreateRevision
  r.maxCreateRevision = o.maxCreateRevision
  return r
}

func putRequest(_ key: [UInt8], _ value: [UInt8], _ o: PutOptions) -> Etcdserverpb_PutRequest {
  var r = Etcdserverpb_PutRequest()
  r.key = Data(key)
  r.value = Data(value)
  r.lease = o.lease
  r.prevKv = o.prevKV
  r.ignoreValue = o.ignoreValue
  r.ignoreLease = o.ignoreLease
  return r
}

func deleteRequest(_ range: KeyRange, prevKV: Bool) -> Etcdserverpb_DeleteRangeRequest {
  var r = Etcdserverpb_DeleteRangeRequest()
  r.key = Data(range.key)
  r.rangeEnd = Data(range.rangeEnd)
  r.prevKv = prevKV
  return r
}

func txnRequest(_ compare: [Compare], _ success: [Op], _ failure: [Op]) -> Etcdserverpb_TxnRequest {
  var r = Etcdserverpb_TxnRequest()
  r.compare = compare.map(\.proto)
  r.success = success.map(\.requestOp)
  r.failure = failure.map(\.requestOp)
  return r
}
