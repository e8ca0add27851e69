import GRPCCore
import NIOCore
import GRPCNIOTransportHTTP2Posix

/// Decodes etcd's `RangeResponse` straight from the protobuf wire format into ``GetResponse``.
///
/// A 100k-key read is dominated by decoding. Going through swift-protobuf's generated message
/// first, and then copying each key and value into ``KeyValue``, costs two allocations per
/// field and two passes. This decoder reads the bytes once and allocates only the key and value
/// arrays. Unknown fields are skipped, as protobuf requires, so newer etcd versions stay
/// readable. `RangeResponseDecoderTests` checks it against swift-protobuf on random messages.
///
/// A large response is not decoded here but handed on as bytes (``RangeWire``): the call runs on
/// the connections' event loop, and decoding 100k keys there (about 0.1 s) would hold up every
/// other call and watch of the process. ``EtcdClient/get(_:options:)`` decodes it after the call,
/// on the caller's own executor.
struct RangeResponseDeserializer: MessageDeserializer {
  typealias Message = RangeWire

  /// Responses up to this size are decoded on the event loop, in the call.
  static let decodeInPlaceLimit = 64 * 1024

  func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> RangeWire {
    if serializedMessageBytes.count > Self.decodeInPlaceLimit {
      if let bytes = serializedMessageBytes as? GRPCNIOTransportBytes { return .transportBytes(bytes) }
      return .bytes(serializedMessageBytes.withUnsafeBytes { [UInt8]($0) })
    }
    return .decoded(try Self.decode(serializedMessageBytes))
  }

  static func decode<Bytes: GRPCContiguousBytes>(_ bytes: Bytes) throws -> GetResponse {
    try bytes.withUnsafeBytes { buffer in
      var reader = WireReader(buffer)
      return try reader.rangeResponse()
    }
  }
}

/// A Range response as the call returns it: decoded, or (when large) still in wire format.
enum RangeWire: Sendable {
  case decoded(GetResponse)
  /// The transport's own buffer, without a copy.
  case transportBytes(GRPCNIOTransportBytes)
  case bytes([UInt8])
  /// DirectTransport's buffer: always decoded by the caller, off the event loop.
  case buffer(ByteBuffer)

  /// The response, decoding it here if the call did not.
  func response() throws(EtcdError) -> GetResponse {
    do {
      switch self {
      case .decoded(let response): return response
      case .transportBytes(let bytes): return try RangeResponseDeserializer.decode(bytes)
      case .bytes(let bytes): return try RangeResponseDeserializer.decode(bytes)
      case .buffer(let buffer):
        return try buffer.withUnsafeReadableBytes { raw in
          var reader = WireReader(raw)
          return try reader.rangeResponse()
        }
      }
    } catch {
      throw EtcdError(.internalError, "cannot decode etcd's Range response: \(error)", cause: error)
    }
  }
}

/// A protobuf decoding failure: the bytes are not a valid message of the expected type.
struct WireFormatError: Error, CustomStringConvertible {
  var description: String
}

/// A cursor over protobuf wire-format bytes.
struct WireReader {
  private let buffer: UnsafeRawBufferPointer
  private var index: Int
  private let end: Int

  init(_ buffer: UnsafeRawBufferPointer) {
    self.init(buffer, from: 0, to: buffer.count)
  }

  private init(_ buffer: UnsafeRawBufferPointer, from start: Int, to end: Int) {
    self.buffer = buffer
    self.index = start
    self.end = end
  }

  var isAtEnd: Bool { self.index >= self.end }

  mutating func varint() throws(WireFormatError) -> UInt64 {
    var result: UInt64 = 0
    var shift: UInt64 = 0
    while self.index < self.end {
      let byte = self.buffer[self.index]
      self.index += 1
      result |= UInt64(byte & 0x7F) << shift
      if byte < 0x80 { return result }
      shift += 7
      if shift > 63 { break }
    }
    throw WireFormatError(description: "malformed varint")
  }

  /// A field tag: (field number, wire type).
  mutating func tag() throws(WireFormatError) -> (field: Int, wireType: Int) {
    let key = try self.varint()
    return (Int(key >> 3), Int(key & 7))
  }

  /// A length-delimited field's bounds, advancing past it.
  mutating func lengthDelimited() throws(WireFormatError) -> Range<Int> {
    let length = try self.varint()
    guard length <= UInt64(self.end - self.index) else { throw WireFormatError(description: "truncated field") }
    let start = self.index
    self.index += Int(length)
    return start..<self.index
  }

  mutating func bytes() throws(WireFormatError) -> [UInt8] {
    let range = try self.lengthDelimited()
    return [UInt8](UnsafeRawBufferPointer(rebasing: self.buffer[range]))
  }

  mutating func message(_ range: Range<Int>) -> WireReader {
    WireReader(self.buffer, from: range.lowerBound, to: range.upperBound)
  }

  mutating func skip(wireType: Int) throws(WireFormatError) {
    switch wireType {
    case 0: _ = try self.varint()
    case 1: try self.advance(8)
    case 2: _ = try self.lengthDelimited()
    case 5: try self.advance(4)
    default: throw WireFormatError(description: "unsupported wire type \(wireType)")
    }
  }

  private mutating func advance(_ count: Int) throws(WireFormatError) {
    guard self.end - self.index >= count else { throw WireFormatError(description: "truncated field") }
    self.index += count
  }

  // MARK: etcd messages

  mutating func rangeResponse() throws(WireFormatError) -> GetResponse {
    var response = GetResponse(header: ResponseHeader(revision: 0), kvs: [], more: false, count: 0)
    while !self.isAtEnd {
      let (field, wireType) = try self.tag()
      switch (field, wireType) {
      case (1, 2):
        var header = self.message(try self.lengthDelimited())
        response.header = try header.responseHeader()
      case (2, 2):
        var kv = self.message(try self.lengthDelimited())
        response.kvs.append(try kv.keyValue())
      case (3, 0): response.more = try self.varint() != 0
      case (4, 0): response.count = Int64(bitPattern: try self.varint())
      default: try self.skip(wireType: wireType)
      }
    }
    return response
  }

  mutating func responseHeader() throws(WireFormatError) -> ResponseHeader {
    var header = ResponseHeader(revision: 0)
    while !self.isAtEnd {
      let (field, wireType) = try self.tag()
      switch (field, wireType) {
      case (1, 0): header.clusterID = try self.varint()
      case (2, 0): header.memberID = try self.varint()
      case (3, 0): header.revision = Int64(bitPattern: try self.varint())
      case (4, 0): header.raftTerm = try self.varint()
      default: try self.skip(wireType: wireType)
      }
    }
    return header
  }

  mutating func keyValue() throws(WireFormatError) -> KeyValue {
    var kv = KeyValue(key: [], value: [])
    while !self.isAtEnd {
      let (field, wireType) = try self.tag()
      switch (field, wireType) {
      case (1, 2): kv.key = try self.bytes()
      case (2, 0): kv.createRevision = Int64(bitPattern: try self.varint())
      case (3, 0): kv.modRevision = Int64(bitPattern: try self.varint())
      case (4, 0): kv.version = Int64(bitPattern: try self.varint())
      case (5, 2): kv.value = try self.bytes()
      case (6, 0): kv.lease = Int64(bitPattern: try self.varint())
      default: try self.skip(wireType: wireType)
      }
    }
    return kv
  }
}
