import EtcdTestSupport
import GRPCCore
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import EtcdClient

/// DirectTransport's connection handler on an embedded channel, with one call's stream on it:
/// what it writes for the call, and how it reads every shape of response a server can send,
/// well-formed or not.
@Suite("DirectTransport's HTTP/2 streams") struct DirectStreamHandlerTests {
  /// A call on an embedded channel, its stream open and its request written.
  struct Harness {
    let channel: EmbeddedChannel
    let call: DirectCall
    let connection: DirectConnectionHandler
    let stream: DirectStream
    var result: Result<ByteBuffer, any Error>? {
      var outcome: Result<ByteBuffer, any Error>?
      self.call.promise.futureResult.whenComplete { outcome = $0 }
      return outcome
    }

    init(mode: DirectCall.Mode, timeout: Duration? = .seconds(30), receiveLimit: Int = 1 << 20) throws {
      let loop = EmbeddedEventLoop()
      self.channel = EmbeddedChannel(loop: loop)
      self.call = DirectCall(
        path: "/etcdserverpb.KV/Put", scheme: "http", metadata: ["token": "t0k"], mode: mode, timeout: timeout,
        maxReceiveBytes: receiveLimit, promise: loop.makePromise())
      self.connection = try Self.connectionHandler(loop: loop)
      try self.channel.pipeline.syncOperations.addHandler(self.connection)
      try self.channel.connect(to: .init(ipAddress: "127.0.0.1", port: 2379)).wait()
      guard let stream = self.connection.open(self.call, authority: "etcd-1:2379") else {
        throw RPCError(code: .internalError, message: "the connection took no stream")
      }
      self.stream = stream
      #expect(stream.id == 1)
    }

    static func connectionHandler(loop: any EventLoop) throws -> DirectConnectionHandler {
      let configuration = try EtcdConfiguration(endpoints: ["127.0.0.1:2379"])
      let member = DirectMember(
        endpoint: configuration.endpoints[0], eventLoop: loop, security: try DirectSecurity(configuration),
        keepalive: .init(interval: .seconds(10), timeout: .seconds(5)), dialTimeout: .seconds(1), installsLiveness: false)
      return DirectConnectionHandler(member: member, ready: loop.makePromise(), waitsForTLS: false)
    }

    /// The frames written, each checked to be on the call's stream.
    func outbound() throws -> [HTTP2Frame.FramePayload] {
      var frames: [HTTP2Frame.FramePayload] = []
      while let frame = try self.channel.readOutbound(as: HTTP2Frame.self) {
        #expect(frame.streamID == self.stream.id)
        frames.append(frame.payload)
      }
      return frames
    }

    func receive(_ payload: HTTP2Frame.FramePayload) throws {
      try self.channel.writeInbound(HTTP2Frame(streamID: self.stream.id, payload: payload))
    }

    func headers(_ pairs: [(String, String)], end: Bool = false) throws {
      try self.receive(.headers(.init(headers: HPACKHeaders(pairs), endStream: end)))
    }

    func data(_ bytes: [UInt8], end: Bool = false) throws {
      try self.receive(.data(.init(data: .byteBuffer(ByteBuffer(bytes: bytes)), endStream: end)))
    }

    /// The call's stream was reset from this side (RST_STREAM CANCEL) and left the table.
    func wasReset() throws -> Bool {
      let frames = try self.outbound()
      guard case .rstStream(.cancel) = frames.last else { return false }
      return self.connection.openStreams == 0 && self.channel.isActive
    }
  }

  static let ok = [(":status", "200"), ("content-type", "application/grpc")]
  static func message(_ body: [UInt8], compressed: UInt8 = 0) -> [UInt8] {
    let n = UInt32(body.count)
    return [compressed, UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)] + body
  }

  static func framed(_ body: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: Self.message(body)) }

  func code(_ result: Result<ByteBuffer, any Error>?) -> RPCError.Code? {
    guard case .failure(let error) = result else { return nil }
    return (error as? RPCError)?.code
  }

  @Test func aUnaryCallIsOneHeadersFrameAndOneDataFrameThatEndsTheStream() throws {
    let h = try Harness(mode: .unary(Self.framed([1, 2, 3])))
    let frames = try h.outbound()
    #expect(frames.count == 2)
    guard case .headers(let headers) = frames.first, case .data(let data) = frames.last else {
      Issue.record("expected HEADERS then DATA, got \(frames)")
      return
    }
    #expect(!headers.endStream)
    #expect(headers.headers.first(name: ":path") == "/etcdserverpb.KV/Put")
    #expect(headers.headers.first(name: ":authority") == "etcd-1:2379")
    #expect(headers.headers.first(name: ":method") == "POST")
    #expect(headers.headers.first(name: "te") == "trailers")
    #expect(headers.headers.first(name: "grpc-timeout") == "30000m")
    #expect(headers.headers.first(name: "token") == "t0k")
    #expect(data.endStream)
    guard case .byteBuffer(let body) = data.data else { Issue.record("no bytes"); return }
    #expect(Array(body.readableBytesView) == Self.message([1, 2, 3]))
  }

  @Test func aResponseSplitAcrossFramesIsJoined() throws {
    let h = try Harness(mode: .unary(Self.framed([])))
    try h.headers(Self.ok)
    let whole = Self.message(Array(repeating: 7, count: 300))
    try h.data(Array(whole[0..<3]))
    try h.data(Array(whole[3..<200]))
    try h.data(Array(whole[200...]))
    #expect(h.result == nil)
    try h.headers([("grpc-status", "0")], end: true)
    guard case .success(let body) = h.result else { Issue.record("\(String(describing: h.result))"); return }
    #expect(Array(body.readableBytesView) == Array(repeating: 7, count: 300))
  }

  @Test func aTrailersOnlyRefusalCarriesEtcdsCodeAndDecodedMessage() throws {
    let h = try Harness(mode: .unary(Self.framed([])))
    try h.headers(Self.ok + [("grpc-status", "11"), ("grpc-message", "etcdserver: mvcc: required revision is a future revision%21")], end: true)
    guard case .failure(let error as RPCError) = h.result else { Issue.record("\(String(describing: h.result))"); return }
    #expect(error.code == .outOfRange)
    #expect(error.message == "etcdserver: mvcc: required revision is a future revision!")
    #expect(EtcdError.wrap(error).code == .futureRevision)
  }

  @Test func malformedResponsesFailTheCallInsteadOfHangingOrSucceeding() throws {
    // No trailers: DATA ends the stream.
    var h = try Harness(mode: .unary(Self.framed([])))
    try h.headers(Self.ok)
    try h.data(Self.message([1]), end: true)
    #expect(code(h.result) == .internalError)
    // Two messages for a unary call.
    h = try Harness(mode: .unary(Self.framed([])))
    try h.headers(Self.ok)
    try h.data(Self.message([1]) + Self.message([2]))
    #expect(code(h.result) == .internalError)
    // A compressed message that was not asked for.
    h = try Harness(mode: .unary(Self.framed([])))
    try h.headers(Self.ok)
    try h.data(Self.message([1], compressed: 1))
    #expect(code(h.result) == .internalError)
    // OK status but no message, and OK status with half a message.
    h = try Harness(mode: .unary(Self.framed([])))
    try h.headers(Self.ok)
    try h.headers([("grpc-status", "0")], end: true)
    #expect(code(h.result) == .internalError)
    h = try Harness(mode: .unary(Self.framed([])))
    try h.headers(Self.ok)
    try h.data(Array(Self.message([1, 2, 3]).prefix(6)))
    try h.headers([("grpc-status", "0")], end: true)
    #expect(code(h.result) == .internalError)
    // No grpc-status at all.
    h = try Harness(mode: .unary(Self.framed([])))
    try h.headers(Self.ok)
    try h.headers([("x", "y")], end: true)
    #expect(code(h.result) == .internalError)
    // Not gRPC: an HTTP error from a proxy, and a 200 of another content type.
    h = try Harness(mode: .unary(Self.framed([])))
    try h.headers([(":status", "503")], end: true)
    #expect(code(h.result) == .unavailable)
    h = try Harness(mode: .unary(Self.framed([])))
    try h.headers([(":status", "200"), ("content-type", "text/html")])
    #expect(code(h.result) == .unknown)
    // The server resets the stream.
    h = try Harness(mode: .unary(Self.framed([])))
    try h.headers(Self.ok)
    try h.receive(.rstStream(.refusedStream))
    #expect(code(h.result) == .unavailable)
    // The stream closes under the call (swift-nio-http2 closed it), or the connection does.
    h = try Harness(mode: .unary(Self.framed([])))
    h.channel.pipeline.fireUserInboundEventTriggered(StreamClosedEvent(streamID: 1, reason: nil))
    #expect(code(h.result) == .unavailable)
    #expect(h.connection.openStreams == 0)
    h = try Harness(mode: .unary(Self.framed([])))
    h.channel.pipeline.fireChannelInactive()
    #expect(code(h.result) == .unavailable)
    #expect(h.connection.openStreams == 0)
  }

  /// Frames of another stream (one already reset, say) reach no call; GOAWAY fails the calls
  /// etcd will not answer and no others, and the connection takes no new stream.
  @Test func framesGoToTheirOwnStreamAndGoAwayEndsOnlyTheUnansweredOnes() throws {
    let h = try Harness(mode: .unary(Self.framed([])))
    let second = DirectCall(
      path: "/etcdserverpb.KV/Range", scheme: "http", metadata: [:], mode: .unary(Self.framed([])), timeout: .seconds(30),
      maxReceiveBytes: 1 << 20, promise: h.channel.eventLoop.makePromise())
    let stream = try #require(h.connection.open(second, authority: "etcd-1:2379"))
    #expect(stream.id == 3)
    var secondResult: Result<ByteBuffer, any Error>?
    second.promise.futureResult.whenComplete { secondResult = $0 }
    // No HTTP/2 handler here: the frames written are reported as its frame delegate would.
    while let frame = try h.channel.readOutbound(as: HTTP2Frame.self) { h.connection.wrote(frame) }
    try h.channel.writeInbound(HTTP2Frame(streamID: 5, payload: .headers(.init(headers: HPACKHeaders([(":status", "503")]), endStream: true))))
    #expect(h.result == nil && secondResult == nil)
    try h.channel.writeInbound(HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: 1, errorCode: .noError, opaqueData: nil)))
    #expect(h.result == nil, "etcd still answers stream 1")
    guard case .failure(let error as RPCError) = secondResult else { Issue.record("\(String(describing: secondResult))"); return }
    #expect(error.code == .unavailable)
    let third = DirectCall(
      path: "/etcdserverpb.KV/Range", scheme: "http", metadata: [:], mode: .unary(Self.framed([])), timeout: .seconds(30),
      maxReceiveBytes: 1 << 20, promise: h.channel.eventLoop.makePromise())
    #expect(h.connection.open(third, authority: "etcd-1:2379") == nil)
    third.finish(.failure(CancellationError()))
    try h.headers(Self.ok)
    try h.data(Self.message([4]))
    try h.headers([("grpc-status", "0")], end: true)
    guard case .success(let body) = h.result else { Issue.record("\(String(describing: h.result))"); return }
    #expect(Array(body.readableBytesView) == [4])
  }

  /// The window is given back once half of it was read, for the connection and for an open
  /// stream; a closed stream's is not, and the first SETTINGS opens the connection's window.
  @Test func flowControlWindowIsGivenBackAsResponsesAreRead() throws {
    let h = try Harness(mode: .unary(Self.framed([])))
    _ = try h.outbound()
    try h.channel.writeInbound(HTTP2Frame(streamID: .rootStream, payload: .settings(.settings([]))))
    // No HTTP/2 handler here: each WINDOW_UPDATE read is reported written, as its frame
    // delegate would.
    var frame = try #require(try h.channel.readOutbound(as: HTTP2Frame.self))
    h.connection.wrote(frame)
    #expect(frame.streamID == .rootStream)
    guard case .windowUpdate(let opening) = frame.payload else { Issue.record("\(frame)"); return }
    #expect(opening == DirectConnection.windowSize - 65_535)
    let size = DirectConnection.windowSize
    h.channel.pipeline.fireUserInboundEventTriggered(NIOHTTP2WindowUpdatedEvent(streamID: 1, inboundWindowSize: size / 2 + 1, outboundWindowSize: nil))
    #expect(try h.channel.readOutbound(as: HTTP2Frame.self) == nil)
    h.channel.pipeline.fireUserInboundEventTriggered(NIOHTTP2WindowUpdatedEvent(streamID: 1, inboundWindowSize: size / 2 - 10, outboundWindowSize: nil))
    frame = try #require(try h.channel.readOutbound(as: HTTP2Frame.self))
    guard case .windowUpdate(let increment) = frame.payload else { Issue.record("\(frame)"); return }
    #expect(frame.streamID == 1 && increment == size / 2 + 10)
    // Not yet written: a further report gives nothing back again.
    h.channel.pipeline.fireUserInboundEventTriggered(NIOHTTP2WindowUpdatedEvent(streamID: 1, inboundWindowSize: size / 2 - 20_000, outboundWindowSize: nil))
    #expect(try h.channel.readOutbound(as: HTTP2Frame.self) == nil)
    h.connection.wrote(frame)
    h.channel.pipeline.fireUserInboundEventTriggered(NIOHTTP2WindowUpdatedEvent(streamID: .rootStream, inboundWindowSize: 100, outboundWindowSize: nil))
    frame = try #require(try h.channel.readOutbound(as: HTTP2Frame.self))
    guard case .windowUpdate(let connectionIncrement) = frame.payload else { Issue.record("\(frame)"); return }
    #expect(frame.streamID == .rootStream && connectionIncrement == size - 100)
    h.channel.pipeline.fireUserInboundEventTriggered(NIOHTTP2WindowUpdatedEvent(streamID: 7, inboundWindowSize: 0, outboundWindowSize: nil))
    #expect(try h.channel.readOutbound(as: HTTP2Frame.self) == nil, "a window for a stream not open")
  }

  /// One stream's error (wrapped with its ID) fails that call only and leaves the connection
  /// and its other calls alone; so does an HTTP/2 error reported unwrapped without a GOAWAY
  /// from swift-nio-http2 (a stream it reset); an error from below HTTP/2 closes the
  /// connection and fails every call. (DirectConnectionPairTests has the real handler's.)
  @Test func aStreamErrorFailsOnlyItsCall() throws {
    let h = try Harness(mode: .unary(Self.framed([])))
    h.channel.pipeline.fireErrorCaught(NIOHTTP2Errors.streamError(streamID: 3, baseError: NIOHTTP2Errors.contentLengthViolated()))
    #expect(h.result == nil && h.channel.isActive)
    h.channel.pipeline.fireErrorCaught(NIOHTTP2Errors.streamError(streamID: 1, baseError: NIOHTTP2Errors.contentLengthViolated()))
    #expect(code(h.result) == .unavailable)
    #expect(h.channel.isActive)
    let unwrapped = try Harness(mode: .unary(Self.framed([])))
    unwrapped.channel.pipeline.fireErrorCaught(NIOHTTP2Errors.trailersWithoutEndStream(streamID: 1))
    #expect(unwrapped.result == nil && unwrapped.channel.isActive)
    let other = try Harness(mode: .unary(Self.framed([])))
    other.channel.pipeline.fireErrorCaught(IOError(errnoCode: ECONNRESET, reason: "read"))
    #expect(code(other.result) == .unavailable)
    #expect(!other.channel.isActive)
  }

  /// A length prefix over the receive limit fails at once, before any of the message is
  /// buffered, and resets the stream: a hostile server cannot make the client hold it.
  @Test func aMessageOverTheReceiveLimitFailsAtItsPrefix() throws {
    let h = try Harness(mode: .unary(Self.framed([])), receiveLimit: 1000)
    try h.headers(Self.ok)
    try h.data([0, 0x7f, 0xff, 0xff, 0xff])
    guard case .failure(let error as RPCError) = h.result else { Issue.record("\(String(describing: h.result))"); return }
    #expect(error.code == .resourceExhausted)
    #expect(EtcdError.wrap(error).code == .responseTooLarge)
    #expect(try h.wasReset())
  }

  @Test func aStreamHandsOnEachWholeMessageInOrderAndEndsWithTheTrailers() throws {
    let received = LockedList()
    let h = try Harness(mode: .stream { received.append(Array($0.readableBytesView)) }, timeout: nil)
    // Requests sent once the stream is open follow the headers, each flushed; then the half-close.
    var frames = try h.outbound()
    #expect(frames.count == 1)  // HEADERS only: no request was waiting, and no deadline is sent
    if case .headers(let headers) = frames.first {
      #expect(!headers.endStream)
      #expect(headers.headers.first(name: "grpc-timeout") == nil)
    }
    h.call.send(Self.framed([9]), end: false)
    h.call.send(nil, end: true)
    frames = try h.outbound()
    #expect(frames.count == 2)
    if case .data(let last) = frames.last { #expect(last.endStream) }
    try h.headers(Self.ok)
    try h.data(Self.message([1]) + Self.message([2, 2]) + Array(Self.message([3, 3, 3]).prefix(4)))
    #expect(received.values == [[1], [2, 2]])
    try h.data(Array(Self.message([3, 3, 3]).dropFirst(4)))
    #expect(received.values == [[1], [2, 2], [3, 3, 3]])
    #expect(h.result == nil)
    try h.headers([("grpc-status", "0")], end: true)
    guard case .success = h.result else { Issue.record("\(String(describing: h.result))"); return }
  }

  /// A consumer that throws (the watch hub refusing a response) ends the stream with its error.
  @Test func aConsumerThatThrowsEndsTheStream() throws {
    struct Refused: Error {}
    let h = try Harness(mode: .stream { _ in throw Refused() }, timeout: nil)
    try h.headers(Self.ok)
    try h.data(Self.message([1]))
    guard case .failure(let error) = h.result else { Issue.record("\(String(describing: h.result))"); return }
    #expect(error is Refused)
    #expect(try h.wasReset())
  }

  @Test func grpcTimeoutAndMessageEncodings() {
    #expect(grpcTimeout(.seconds(30)) == "30000m")
    #expect(grpcTimeout(.microseconds(1500)) == "2m")
    #expect(grpcTimeout(.seconds(200_000)) == "200000S")
    #expect(percentDecoded("a%20b%zz%") == "a b%zz%")
    #expect(percentDecoded("plain") == "plain")
  }
}

/// A list appended to from a `@Sendable` closure.
final class LockedList: Sendable {
  private let items = Mutex<[[UInt8]]>([])
  func append(_ item: [UInt8]) { self.items.withLock { $0.append(item) } }
  var values: [[UInt8]] { self.items.withLock { $0 } }
}

/// DirectTransport against real etcd processes: the same answers and the same errors as the
/// grpc-swift-2 path, failover past a member that cannot be reached, the receive limit.
@Suite("DirectTransport against a real etcd") struct DirectTransportTests {
  /// The oracle is the grpc-swift-2 path on the same etcd: every answer of a scripted run of
  /// calls, and every refusal's error code, must be the same through both.
  @Test func theDirectPathAnswersAsTheGRPCPathDoes() async throws {
    try await EtcdServer.with { server in
      var grpcConfiguration = server.configuration()
      grpcConfiguration.directUnaryCalls = false
      var directConfiguration = server.configuration()
      directConfiguration.directUnaryCalls = true
      try await withEtcdClient(directConfiguration) { direct in
        try await withEtcdClient(grpcConfiguration) { grpc in
          #expect(direct.direct != nil && grpc.direct == nil)
          for i in 0..<50 {
            let client = i % 2 == 0 ? direct : grpc
            try await client.put("/same/\(i % 7)", "v\(i)")
          }
          let lease = try await direct.grant(ttl: 60)
          try await grpc.put("/same/leased", "x", options: PutOptions(lease: lease.id))
          _ = try await direct.txn(if: [.value("/same/1", .equal, "v43")], then: [.put("/same/txn", "yes")], else: [.put("/same/txn", "no")])
          let viaDirect = try await direct.get(.prefix("/same/"))
          let viaGRPC = try await grpc.get(.prefix("/same/"))
          #expect(viaDirect.kvs == viaGRPC.kvs)
          #expect(viaDirect.kvs.count == 9)
          #expect(viaDirect.kvs.first { $0.keyString == "/same/txn" }?.valueString == "yes")
          #expect(try await direct.timeToLive(lease.id).keys == (try await grpc.timeToLive(lease.id).keys))
          let revision = viaDirect.header.revision
          try await direct.compact(revision - 10)
          // The same refusals, the same codes.
          let refusals: [(String, @Sendable (EtcdClient) async throws -> Void)] = [
            ("compacted", { _ = try await $0.get(.key("/same/1"), options: GetOptions(revision: revision - 20)) }),
            ("future", { _ = try await $0.get(.key("/same/1"), options: GetOptions(revision: revision + 1000)) }),
            ("too many ops", { _ = try await $0.txn(if: [], then: (0..<200).map { Op.put("/same/op\($0)", "") }) }),
            ("duplicate key", { _ = try await $0.txn(if: [], then: [.put("/same/d", "1"), .put("/same/d", "2")]) }),
            ("lease not found", { _ = try await $0.revoke(123_456_789) }),
            ("too large", { _ = try await $0.put("/same/big", String(repeating: "x", count: 2 * 1024 * 1024)) }),
          ]
          for (name, call) in refusals {
            let a = await #expect(throws: EtcdError.self, "\(name) through DirectTransport") { try await call(direct) }
            let b = await #expect(throws: EtcdError.self, "\(name) through grpc-swift-2") { try await call(grpc) }
            #expect(a?.code == b?.code, "\(name): \(String(describing: a)) vs \(String(describing: b))")
            #expect(a?.compactRevision == b?.compactRevision)
          }
        }
      }
    }
  }

  /// A member that cannot be reached is skipped: every call goes to the one that can, and a
  /// client with no reachable member fails its call at the deadline.
  @Test func anUnreachableMemberIsSkippedAndNoMemberMeansTheDeadline() async throws {
    try await EtcdServer.with { server in
      let dead = try freePorts(1)[0]
      var configuration = server.configuration()
      configuration.endpoints.insert(EtcdEndpoint(host: "127.0.0.1", port: dead), at: 0)
      configuration.dialTimeout = .milliseconds(500)
      try await withEtcdClient(configuration) { etcd in
        for i in 0..<20 { try await etcd.put("/failover/\(i)", "\(i)") }
        #expect(try await etcd.get(.prefix("/failover/")).kvs.count == 20)
      }
    }
    var nobody = try EtcdConfiguration(endpoints: ["127.0.0.1:\(try freePorts(1)[0])"])
    nobody.requestTimeout = .seconds(1)
    try await withEtcdClient(nobody) { etcd in
      let error = await #expect(throws: EtcdError.self) { try await etcd.put("/x", "1") }
      #expect(error?.code == .deadlineExceeded)
      #expect(error?.message.contains("127.0.0.1") == true, "the last connection error is named: \(String(describing: error))")
    }
  }

  /// A response over `maxReceiveMessageBytes` fails with `responseTooLarge`, and the client
  /// goes on working.
  @Test func aResponseOverTheReceiveLimitIsRefusedAndTheClientGoesOn() async throws {
    try await EtcdServer.with { server in
      var configuration = server.configuration()
      configuration.maxReceiveMessageBytes = 20_000
      try await withEtcdClient(configuration) { etcd in
        _ = try await etcd.txn(if: [], then: (0..<100).map { Op.put("/limit/\($0)", String(repeating: "v", count: 400)) })
        let error = await #expect(throws: EtcdError.self) { try await etcd.get(.prefix("/limit/")) }
        #expect(error?.code == .responseTooLarge)
        #expect(try await etcd.get(.key("/limit/1")).kvs.count == 1)
      }
    }
  }

  /// After shutdown, a call fails with `clientClosed` instead of waiting.
  @Test func aCallAfterShutdownFailsWithClientClosed() async throws {
    try await EtcdServer.with { server in
      let etcd = try EtcdClient(configuration: server.configuration())
      try await etcd.put("/closed/a", "1")
      etcd.shutdown()
      let error = await #expect(throws: EtcdError.self) { try await etcd.put("/closed/b", "2") }
      #expect(error?.code == .clientClosed)
    }
  }
}
