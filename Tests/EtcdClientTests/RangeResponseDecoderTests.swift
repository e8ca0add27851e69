@testable import EtcdClient
import Foundation
import GRPCCore
import SwiftProtobuf
import Testing

/// The hand-written RangeResponse decoder must agree with swift-protobuf on any message.
@Suite struct RangeResponseDecoderTests {
  static func randomBytes(_ count: Int, _ rng: inout SystemRandomNumberGenerator) -> Data {
    Data((0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) })
  }

  static func randomResponse(kvs: Int) -> Etcdserverpb_RangeResponse {
    var rng = SystemRandomNumberGenerator()
    var r = Etcdserverpb_RangeResponse()
    r.header.clusterID = .random(in: 0 ... .max)
    r.header.memberID = .random(in: 0 ... .max)
    r.header.revision = .random(in: .min ... .max)   // negative values are 10-byte varints
    r.header.raftTerm = .random(in: 0 ... .max)
    r.more = .random()
    r.count = .random(in: 0 ... .max)
    r.kvs = (0..<kvs).map { i in
      var kv = Mvccpb_KeyValue()
      kv.key = randomBytes(Int.random(in: 0...40), &rng)
      kv.value = i % 7 == 0 ? Data() : randomBytes(Int.random(in: 0...(i % 50 == 0 ? 70_000 : 300)), &rng)
      kv.createRevision = .random(in: 0 ... .max)
      kv.modRevision = .random(in: .min ... .max)
      kv.version = .random(in: 0...1000)
      kv.lease = i % 3 == 0 ? 0 : .random(in: .min ... .max)
      return kv
    }
    return r
  }

  @Test(arguments: [0, 1, 5, 300])
  func agreesWithSwiftProtobuf(kvs: Int) throws {
    for _ in 0..<5 {
      let message = Self.randomResponse(kvs: kvs)
      let bytes: [UInt8] = try message.serializedBytes()
      let decoded = try RangeResponseDeserializer().deserialize(bytes).response()
      #expect(decoded == GetResponse(message))
    }
  }

  static func varint(_ value: Int) -> [UInt8] {
    var v = UInt64(value), out: [UInt8] = []
    while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
    return out + [UInt8(v)]
  }

  @Test func skipsUnknownFieldsOfEveryWireType() throws {
    let message = Self.randomResponse(kvs: 3)
    // Unknown fields 15 (varint), 16 (fixed64), 17 (bytes), 18 (fixed32), as a newer etcd
    // could send them, at the top level and inside one key-value.
    let unknown: [UInt8] = [0x78, 0x96, 0x01, 0x81, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0x8A, 0x01, 2, 0xAA, 0xBB, 0x95, 0x01, 1, 2, 3, 4]
    var withoutKVs = message
    withoutKVs.kvs = []
    var bytes: [UInt8] = try withoutKVs.serializedBytes()
    for (i, kv) in message.kvs.enumerated() {
      let kvBytes: [UInt8] = try kv.serializedBytes() + (i == 1 ? unknown : [])
      bytes += [0x12] + Self.varint(kvBytes.count) + kvBytes
    }
    bytes += unknown
    let decoded = try RangeResponseDeserializer().deserialize(bytes).response()
    #expect(decoded == GetResponse(message))
  }

  @Test func truncatedInputIsAnErrorNotACrash() throws {
    let bytes: [UInt8] = try Self.randomResponse(kvs: 4).serializedBytes()
    for cut in stride(from: 1, to: bytes.count, by: max(1, bytes.count / 200)) {
      let prefix = Array(bytes[..<cut])
      // Either a clean error or (when the cut falls between fields) a shorter message.
      _ = try? RangeResponseDeserializer().deserialize(prefix)
    }
    #expect(throws: WireFormatError.self) { try RangeResponseDeserializer().deserialize([0x12, 0x05, 0x0A]) }
    #expect(throws: WireFormatError.self) { try RangeResponseDeserializer().deserialize([0x0B]) }  // wire type 3
  }
}
