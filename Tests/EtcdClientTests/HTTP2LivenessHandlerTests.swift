@testable import EtcdClient
import NIOCore
import NIOEmbedded
import Testing

/// Byte-level tests of the handler that answers etcd's PINGs: the inbound frame stream is
/// split at every possible point and must come out with exactly the PINGs removed.
@Suite struct HTTP2LivenessHandlerTests {
  /// Builds one frame: 9-byte header and payload.
  static func frame(type: UInt8, flags: UInt8 = 0, stream: UInt32 = 0, payload: [UInt8]) -> [UInt8] {
    let n = payload.count
    return [UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF), type, flags,
            UInt8(stream >> 24), UInt8(stream >> 16 & 0xFF), UInt8(stream >> 8 & 0xFF), UInt8(stream & 0xFF)] + payload
  }
  static func ping(_ value: UInt64, ack: Bool = false, stream: UInt32 = 0) -> [UInt8] {
    frame(type: 6, flags: ack ? 1 : 0, stream: stream, payload: (0..<8).map { UInt8(value >> (56 - 8 * $0) & 0xFF) })
  }

  /// A realistic mix: SETTINGS, HEADERS, DATA (larger than a read), PINGs to answer, a PING
  /// ACK and malformed PINGs that must pass through, WINDOW_UPDATE.
  static let passThrough: [[UInt8]] = [
    frame(type: 4, payload: [0, 3, 0, 0, 0, 100]),
    frame(type: 1, flags: 4, stream: 1, payload: Array(repeating: 0x88, count: 12)),
    frame(type: 0, stream: 1, payload: (0..<40).map { UInt8($0) }),
    ping(0xDEAD, ack: true),                                   // someone else's ACK
    frame(type: 6, payload: [1, 2, 3]),                         // PING of wrong length
    ping(7, stream: 3),                                         // PING on a stream
    frame(type: 8, payload: [0, 0, 1, 0]),
    frame(type: 0, flags: 1, stream: 1, payload: [9, 9]),
  ]
  static let answered: [UInt64] = [0x0102_0304_0506_0708, 42]

  static var stream: (input: [UInt8], expected: [UInt8]) {
    let p = passThrough
    let input = p[0] + ping(answered[0]) + p[1] + p[2] + p[3] + p[4] + ping(answered[1]) + p[5] + p[6] + p[7]
    return (input, p.flatMap { $0 })
  }

  /// Feeds `chunks` to a fresh handler; returns what reached the next handler and what was written back.
  static func run(_ chunks: [[UInt8]]) throws -> (forwarded: [UInt8], written: [UInt8]) {
    let channel = EmbeddedChannel(handler: HTTP2LivenessHandler(keepalive: nil))
    for chunk in chunks {
      var buffer = channel.allocator.buffer(capacity: chunk.count)
      buffer.writeBytes(chunk)
      try channel.writeInbound(buffer)
    }
    channel.pipeline.fireChannelReadComplete()
    var forwarded: [UInt8] = []
    while var buffer = try channel.readInbound(as: ByteBuffer.self) {
      forwarded += buffer.readBytes(length: buffer.readableBytes)!
    }
    var written: [UInt8] = []
    while let data = try channel.readOutbound(as: IOData.self) {
      if case .byteBuffer(var buffer) = data { written += buffer.readBytes(length: buffer.readableBytes)! }
    }
    _ = try channel.finish()
    return (forwarded, written)
  }

  /// With an ACK delay, the answer to etcd's PING is written at once but leaves with the next
  /// flush (the next request's), or after the delay when nothing else is written.
  @Test func aHeldAckLeavesWithTheNextRequestOrAfterTheDelay() throws {
    let loop = EmbeddedEventLoop()
    let channel = EmbeddedChannel(handler: HTTP2LivenessHandler(keepalive: nil, ackDelay: .milliseconds(1)), loop: loop)
    func bytes(_ array: [UInt8]) -> ByteBuffer { channel.allocator.buffer(bytes: array) }
    func flushed() throws -> [UInt8] {
      var written: [UInt8] = []
      while let data = try channel.readOutbound(as: IOData.self) {
        if case .byteBuffer(var buffer) = data { written += buffer.readBytes(length: buffer.readableBytes)! }
      }
      return written
    }
    try channel.writeInbound(bytes(Self.ping(42)))
    channel.pipeline.fireChannelReadComplete()
    #expect(try flushed().isEmpty, "the ACK left on its own")
    let request = Self.frame(type: 1, flags: 4, stream: 1, payload: [0x83])
    try channel.writeOutbound(bytes(request))
    #expect(try flushed() == Self.ping(42, ack: true) + request)
    loop.advanceTime(by: .milliseconds(2))
    #expect(try flushed().isEmpty)
    try channel.writeInbound(bytes(Self.ping(43)))
    channel.pipeline.fireChannelReadComplete()
    #expect(try flushed().isEmpty)
    loop.advanceTime(by: .microseconds(999))
    #expect(try flushed().isEmpty)
    loop.advanceTime(by: .microseconds(1))
    #expect(try flushed() == Self.ping(43, ack: true))
    _ = try channel.finish()
  }

  @Test func wholeStreamInOneRead() throws {
    let (input, expected) = Self.stream
    let result = try Self.run([input])
    #expect(result.forwarded == expected)
    #expect(result.written == Self.answered.flatMap { Self.ping($0, ack: true) })
  }

  @Test func everySplitPoint() throws {
    let (input, expected) = Self.stream
    let acks = Self.answered.flatMap { Self.ping($0, ack: true) }
    for cut in 1..<input.count {
      let result = try Self.run([Array(input[..<cut]), Array(input[cut...])])
      #expect(result.forwarded == expected, "split at \(cut)")
      #expect(result.written == acks, "split at \(cut)")
    }
  }

  @Test func everyPairOfSplitPoints() throws {
    let (input, expected) = Self.stream
    for a in stride(from: 1, to: input.count - 1, by: 3) {
      for b in (a + 1)..<input.count {
        let result = try Self.run([Array(input[..<a]), Array(input[a..<b]), Array(input[b...])])
        #expect(result.forwarded == expected, "split at \(a), \(b)")
        #expect(result.written.count == 2 * 17, "split at \(a), \(b)")
      }
    }
  }

  @Test func oneByteAtATime() throws {
    let (input, expected) = Self.stream
    let result = try Self.run(input.map { [$0] })
    #expect(result.forwarded == expected)
    #expect(result.written == Self.answered.flatMap { Self.ping($0, ack: true) })
  }

  @Test func keepalivePingsOnlyWithOpenStreamsAndClosesWithoutAck() throws {
    let loop = EmbeddedEventLoop()
    let handler = HTTP2LivenessHandler(keepalive: .init(interval: .seconds(5), timeout: .seconds(1)), pingData: 99)
    let channel = EmbeddedChannel(handler: handler, loop: loop)
    try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()

    loop.advanceTime(by: .seconds(6))
    #expect(try channel.readOutbound(as: IOData.self) == nil, "no ping while no stream is open")

    // The client sends its preface and SETTINGS, then opens stream 1 (HEADERS), split
    // across writes the way a real client may split them.
    let opening = HTTP2LivenessHandler.clientPreface + Self.frame(type: 4, payload: []) +
      Self.frame(type: 1, flags: 4, stream: 1, payload: [0x82, 0x84])
    for chunk in [opening[..<10], opening[10..<30], opening[30...]] {
      var buffer = channel.allocator.buffer(capacity: chunk.count)
      buffer.writeBytes(chunk)
      try channel.writeOutbound(IOData.byteBuffer(buffer))
      _ = try channel.readOutbound(as: IOData.self)
    }
    var headers = channel.allocator.buffer(capacity: 16)
    headers.writeBytes(Self.frame(type: 8, stream: 1, payload: [0, 0, 1, 0]))  // WINDOW_UPDATE
    try channel.writeOutbound(IOData.byteBuffer(headers))
    _ = try channel.readOutbound(as: IOData.self)

    loop.advanceTime(by: .milliseconds(4500))  // t = 10.5 s: the PING went out at 10 s
    guard case .byteBuffer(var ping)? = try channel.readOutbound(as: IOData.self) else {
      Issue.record("expected a keepalive PING")
      return
    }
    #expect(ping.readBytes(length: ping.readableBytes)! == Self.ping(99))

    // The ACK arrives: it is consumed, and the connection stays open.
    var ack = channel.allocator.buffer(capacity: 17)
    ack.writeBytes(Self.ping(99, ack: true))
    try channel.writeInbound(ack)
    #expect(try channel.readInbound(as: ByteBuffer.self) == nil)
    loop.advanceTime(by: .seconds(2))
    #expect(channel.isActive)

    // The next PING gets no ACK: the handler closes the connection.
    loop.advanceTime(by: .seconds(3))
    #expect(try channel.readOutbound(as: IOData.self) != nil)
    loop.advanceTime(by: .seconds(1))
    #expect(!channel.isActive)
  }

  @Test func streamClosedByServerStopsKeepalive() throws {
    let loop = EmbeddedEventLoop()
    let channel = EmbeddedChannel(handler: HTTP2LivenessHandler(keepalive: .init(interval: .seconds(5), timeout: .seconds(1))), loop: loop)
    try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
    var headers = channel.allocator.buffer(capacity: 40)
    headers.writeBytes(HTTP2LivenessHandler.clientPreface + Self.frame(type: 1, flags: 4, stream: 1, payload: [0x82]))
    try channel.writeOutbound(IOData.byteBuffer(headers))
    _ = try channel.readOutbound(as: IOData.self)
    // The server's trailers (HEADERS with END_STREAM) end the stream.
    var trailers = channel.allocator.buffer(capacity: 16)
    trailers.writeBytes(Self.frame(type: 1, flags: 5, stream: 1, payload: [0x88]))
    try channel.writeInbound(trailers)
    loop.advanceTime(by: .seconds(11))
    #expect(try channel.readOutbound(as: IOData.self) == nil)
    #expect(channel.isActive)
  }
}
