import Foundation
import GRPCCore
import GRPCProtobuf
import NIOCore

extension EtcdClient {
  // MARK: Get

  /// Reads a key or range (clientv3's `Get`).
  public func get(_ range: KeyRange, options: GetOptions = GetOptions()) async throws(EtcdError) -> GetResponse {
    let request = rangeRequest(range, options)
    let wire = try await self.unary(idempotent: true) { [request] metadata, callOptions in
      // Decoded straight into GetResponse, a large one only here, off the event loop: see
      // RangeResponseDeserializer.
      if let direct = self.direct {
        return RangeWire.buffer(try await self.invoke(direct, Etcdserverpb_KV.Method.Range.descriptor, request, metadata, callOptions))
      }
      return try await self.grpc.unary(
        request: ClientRequest(message: request, metadata: metadata),
        descriptor: Etcdserverpb_KV.Method.Range.descriptor,
        serializer: ProtobufSerializer<Etcdserverpb_RangeRequest>(),
        deserializer: RangeResponseDeserializer(),
        options: callOptions
      ) { try $0.message }
    }
    // A caller on the client's event loop (eventLoopExecutor) would decode a large response
    // there and hold up every call and watch on the loop: it is decoded on the global pool.
    if case .buffer(let buffer) = wire, buffer.readableBytes > RangeResponseDeserializer.decodeInPlaceLimit,
      let direct = self.direct, direct.eventLoop.inEventLoop
    {
      let decoded: Result<GetResponse, EtcdError> = await withTaskExecutorPreference(globalConcurrentExecutor) {
        do throws(EtcdError) { return .success(try wire.response()) } catch { return .failure(error) }
      }
      return try decoded.get()
    }
    return try wire.response()
  }

  /// Reads one key.
  public func get(_ key: String, options: GetOptions = GetOptions()) async throws(EtcdError) -> GetResponse {
    try await self.get(.key(key), options: options)
  }

  /// The value of one key, or `nil` if it does not exist.
  public func value(_ key: String) async throws(EtcdError) -> KeyValue? {
    try await self.get(.key(key)).kvs.first
  }

  // MARK: Put / Delete

  /// Writes a key (clientv3's `Put`).
  @discardableResult
  public func put(_ key: [UInt8], _ value: [UInt8], options: PutOptions = PutOptions()) async throws(EtcdError) -> PutResponse {
    let request = putRequest(key, value, options)
    return try await self.unary(idempotent: false) { [request] metadata, callOptions in
      PutResponse(try await self.invoke(Etcdserverpb_KV.Method.Put.descriptor, request, metadata, callOptions, as: Etcdserverpb_PutResponse.self))
    }
  }

  @discardableResult
  public func put(_ key: String, _ value: String, options: PutOptions = PutOptions()) async throws(EtcdError) -> PutResponse {
    try await self.put(Array(key.utf8), Array(value.utf8), options: options)
  }

  /// Deletes a key or range (clientv3's `Delete`). etcd's DeleteRange has no limit: a prefix
  /// delete removes every matching key in one revision.
  @discardableResult
  public func delete(_ range: KeyRange, prevKV: Bool = false) async throws(EtcdError) -> DeleteResponse {
    let request = deleteRequest(range, prevKV: prevKV)
    return try await self.unary(idempotent: false) { [request] metadata, callOptions in
      DeleteResponse(try await self.invoke(Etcdserverpb_KV.Method.DeleteRange.descriptor, request, metadata, callOptions, as: Etcdserverpb_DeleteRangeResponse.self))
    }
  }

  @discardableResult
  public func delete(_ key: String, prevKV: Bool = false) async throws(EtcdError) -> DeleteResponse {
    try await self.delete(.key(key), prevKV: prevKV)
  }

  // MARK: Txn / Op

  /// Runs `success` if every compare holds, else `failure`, atomically in one revision.
  public func txn(if compare: [Compare], then success: [Op], else failure: [Op] = []) async throws(EtcdError) -> TxnResponse {
    let request = txnRequest(compare, success, failure)
    let readOnly = (success + failure).allSatisfy(\.isReadOnly)
    return try await self.unary(idempotent: readOnly) { [request] metadata, callOptions in
      TxnResponse(try await self.invoke(Etcdserverpb_KV.Method.Txn.descriptor, request, metadata, callOptions, as: Etcdserverpb_TxnResponse.self))
    }
  }

  /// Runs one ``Op`` (clientv3's `Do`).
  @discardableResult
  public func `do`(_ op: Op) async throws(EtcdError) -> OpResponse {
    switch op {
    case .get(let range, let options): .get(try await self.get(range, options: options))
    case .put(let key, let value, let options): .put(try await self.put(key, value, options: options))
    case .delete(let range, let prevKV): .delete(try await self.delete(range, prevKV: prevKV))
    case .txn(let compare, let success, let failure): .txn(try await self.txn(if: compare, then: success, else: failure))
    }
  }

  /// Compacts the key-value history up to `revision`. With `physical`, returns only once
  /// the compaction has been applied to the backend.
  @discardableResult
  public func compact(_ revision: Int64, physical: Bool = false) async throws(EtcdError) -> ResponseHeader {
    var request = Etcdserverpb_CompactionRequest()
    request.revision = revision
    request.physical = physical
    return try await self.unary(idempotent: false) { [request] metadata, callOptions in
      ResponseHeader(try await self.invoke(Etcdserverpb_KV.Method.Compact.descriptor, request, metadata, callOptions, as: Etcdserverpb_CompactionResponse.self).header)
    }
  }
}

/// Paged reads pinned at one revision (`getAll`, `forEachPage`) come from ``RangeReader``.
extension EtcdClient: RangeReader {}

/// All keys of a range at one revision.
public struct Snapshot: Sendable, Hashable {
  /// The revision every key was read at.
  public var revision: Int64
  /// The keys, in key order.
  public var kvs: [KeyValue]

  /// A snapshot made without etcd (an in-memory etcd in tests).
  public init(revision: Int64, kvs: [KeyValue]) {
    self.revision = revision
    self.kvs = kvs
  }
}

extension Op {
  var isReadOnly: Bool {
    switch self {
    case .get: true
    case .put, .delete: false
    case .txn(_, let success, let failure): (success + failure).allSatisfy(\.isReadOnly)
    }
  }
}
