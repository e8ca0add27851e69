import GRPCCore
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Testing

@testable import EtcdClient

/// DirectConnectionHandler behind a real `NIOHTTP2Handler`, talking to a server-side
/// `NIOHTTP2Handler` on a second embedded channel: the library's own ordering of frames and
/// events, its flow control and its stream errors, which the single-channel tests can only
/// imitate.
@Suite("DirectTransport's connection handler against a real HTTP/2 peer") struct DirectConnectionPairTests {
  /// The frames the server's HTTP/2 handler passed on.
  final class Received: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTP2Frame
    var frames: [HTTP2Frame] = []
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      self.frames.append(self.unwrapInboundIn(data))
    }
    func resets(of id: HTTP2StreamID) -> Int { DirectConnectionPairTests.resets(of: id, in: self.frames) }
  }

  /// RST_STREAM frames on stream `id` among `frames`.
  static func resets(of id: HTTP2StreamID, in frames: [HTTP2Frame]) -> Int {
    frames.filter { frame in
      guard frame.streamID == id, case .rstStream = frame.payload else { return false }
      return true
    }.count
  }

  struct Pair {
    let loop = EmbeddedEventLoop()
    let client: EmbeddedChannel
    let server: EmbeddedChannel
    let connection: DirectConnectionHandler
    let received = Received()
    /// What the client's HTTP/2 handler wrote: the wire, not only what reached the server's
    /// handler (which drops a RST_STREAM for a stream it closed).
    let written = DirectWrittenFrames()
    final class Log: @unchecked Sendable { var frames: [HTTP2Frame] = [] }
    let log = Log()

    /// `serverValidates: false` lets the server send what a broken server would.
    init(serverValidates: Bool = true, windowSize: Int = DirectConnection.windowSize, serverSettings: HTTP2Settings? = nil) throws {
      self.client = EmbeddedChannel(loop: self.loop)
      self.server = EmbeddedChannel(loop: self.loop)
      let written = self.written
      let log = self.log
      written.observer = { log.frames.append($0) }
      // The client's HTTP/2 handler as DirectTransport configures it.
      let (settings, streamSettings) = DirectMember.http2Configuration(validatesHeaderBlocks: false, windowSize: windowSize)
      try self.client.pipeline.syncOperations.addHandler(
        NIOHTTP2Handler(mode: .client, frameDelegate: written, connectionConfiguration: settings, streamConfiguration: streamSettings))
      let configuration = try EtcdConfiguration(endpoints: ["127.0.0.1:2379"])
      let member = DirectMember(
        endpoint: configuration.endpoints[0], eventLoop: self.loop, security: try DirectSecurity(configuration),
        keepalive: .init(interval: .seconds(10), timeout: .seconds(5)), dialTimeout: .seconds(1), installsLiveness: false)
      self.connection = DirectConnectionHandler(
        member: member, ready: self.loop.makePromise(), waitsForTLS: false, written: written, windowSize: windowSize)
      try self.client.pipeline.syncOperations.addHandler(self.connection)
      var serverConfiguration = NIOHTTP2Handler.ConnectionConfiguration()
      if !serverValidates {
        serverConfiguration.headerBlockValidation = .disabled
        serverConfiguration.contentLengthValidation = .disabled
      }
      if let serverSettings { serverConfiguration.initialSettings = serverSettings }
      try self.server.pipeline.syncOperations.addHandler(NIOHTTP2Handler(mode: .server, connectionConfiguration: serverConfiguration))
      try self.server.pipeline.syncOperations.addHandler(self.received)
      try self.client.connect(to: .init(ipAddress: "127.0.0.1", port: 2379)).wait()
      try self.server.connect(to: .init(ipAddress: "127.0.0.1", port: 40000)).wait()
      try self.exchange()
    }

    /// Moves bytes both ways until neither side has more to send.
    func exchange() throws {
      var moved = true
      while moved {
        moved = false
        while let bytes = try self.client.readOutbound(as: ByteBuffer.self) {
          try self.server.writeInbound(bytes)
          moved = true
        }
        while let bytes = try self.server.readOutbound(as: ByteBuffer.self) {
          try self.client.writeInbound(bytes)
          moved = true
        }
      }
    }

    func call(receiveLimit: Int = 1 << 20, request: [UInt8] = [1]) -> (DirectCall, DirectStream?) {
      let call = DirectCall(
        path: "/etcdserverpb.KV/Range", scheme: "http", metadata: [:], mode: .unary(DirectStreamHandlerTests.framed(request)),
        timeout: .seconds(30), maxReceiveBytes: receiveLimit, promise: self.loop.makePromise())
      return (call, self.connection.open(call, authority: "etcd:2379"))
    }

    func send(_ id: HTTP2StreamID, _ payload: HTTP2Frame.FramePayload) throws {
      self.server.write(HTTP2Frame(streamID: id, payload: payload), promise: nil)
      self.server.flush()
      try self.exchange()
    }

    func answer(_ id: HTTP2StreamID, _ body: [UInt8]) throws {
      try self.send(id, .headers(.init(headers: HPACKHeaders(DirectStreamHandlerTests.ok))))
      try self.send(id, .data(.init(data: .byteBuffer(ByteBuffer(bytes: DirectStreamHandlerTests.message(body))))))
      try self.send(id, .headers(.init(headers: HPACKHeaders([("grpc-status", "0")]), endStream: true)))
    }

    /// RST_STREAM frames the client wrote on stream `id`.
    func clientResets(of id: HTTP2StreamID) -> Int { DirectConnectionPairTests.resets(of: id, in: self.log.frames) }

    func finish() {
      _ = try? self.client.finish()
      _ = try? self.server.finish()
    }
  }

  static func result(_ call: DirectCall) -> Result<ByteBuffer, any Error>? {
    var outcome: Result<ByteBuffer, any Error>?
    call.promise.futureResult.whenComplete { outcome = $0 }
    return outcome
  }

  @Test func aUnaryCallLeavesTheTableOnceAnswered() throws {
    let pair = try Pair()
    defer { pair.finish() }
    let (call, stream) = pair.call()
    let id = try #require(stream?.id)
    try pair.exchange()
    #expect(pair.received.frames.contains { $0.streamID == id })
    try pair.answer(id, [7, 7])
    guard case .success(let body) = Self.result(call) else { Issue.record("\(String(describing: Self.result(call)))"); return }
    #expect(Array(body.readableBytesView) == [7, 7])
    #expect(pair.connection.openStreams == 0)
    #expect(pair.clientResets(of: id) == 0)
  }

  /// A protocol error in one stream's frames (swift-nio-http2 resets that stream and reports
  /// the error unwrapped) fails that call only: the connection and the other call go on.
  @Test func aBrokenStreamFailsOnlyItsOwnCall() throws {
    let pair = try Pair(serverValidates: false)
    defer { pair.finish() }
    let (broken, first) = pair.call()
    let (other, second) = pair.call()
    let brokenID = try #require(first?.id), otherID = try #require(second?.id)
    try pair.exchange()
    // Trailers that do not end the stream: a stream error on the client, header validation
    // or not.
    try pair.send(brokenID, .headers(.init(headers: HPACKHeaders(DirectStreamHandlerTests.ok))))
    try pair.send(brokenID, .data(.init(data: .byteBuffer(ByteBuffer(bytes: DirectStreamHandlerTests.message([1, 2, 3, 4, 5]))))))
    // (Raw bytes: the server's handler would refuse to send them. HEADERS, END_HEADERS only;
    // "grpc-status: 0" as a literal without indexing.)
    let id = UInt32(Int32(brokenID))
    let block: [UInt8] = [0x00, 11] + Array("grpc-status".utf8) + [1] + Array("0".utf8)
    let frame: [UInt8] = [0, 0, UInt8(block.count), 0x01, 0x04,
                          UInt8(id >> 24), UInt8((id >> 16) & 0xff), UInt8((id >> 8) & 0xff), UInt8(id & 0xff)] + block
    try pair.client.writeInbound(ByteBuffer(bytes: frame))
    try pair.exchange()
    guard case .failure(let error as RPCError) = Self.result(broken) else { Issue.record("\(String(describing: Self.result(broken)))"); return }
    #expect(error.code == .unavailable || error.code == .internalError)
    #expect(pair.clientResets(of: brokenID) == 1, "swift-nio-http2 resets the stream it refused")
    #expect(pair.client.isActive, "one stream's error closed the connection")
    #expect(Self.result(other) == nil)
    try pair.answer(otherID, [9])
    guard case .success = Self.result(other) else { Issue.record("\(String(describing: Self.result(other)))"); return }
    #expect(pair.connection.openStreams == 0)
  }

  /// An informational answer (103 Early Hints, from a proxy) before the response's headers is
  /// skipped: the call completes with the message.
  @Test func anInformationalAnswerIsSkipped() throws {
    let pair = try Pair()
    defer { pair.finish() }
    let (call, stream) = pair.call()
    let id = try #require(stream?.id)
    try pair.exchange()
    try pair.send(id, .headers(.init(headers: HPACKHeaders([(":status", "103"), ("link", "</a>; rel=preload")]))))
    #expect(Self.result(call) == nil)
    try pair.answer(id, [7, 8])
    guard case .success(let body) = Self.result(call) else { Issue.record("\(String(describing: Self.result(call)))"); return }
    #expect(Array(buffer: body) == [7, 8])
  }

  /// A connection error (here a SETTINGS frame whose length is not a multiple of 6: a frame
  /// size error) closes the connection and fails every call on it.
  @Test func aConnectionErrorClosesTheConnection() throws {
    let pair = try Pair(serverValidates: false)
    defer { pair.finish() }
    let (call, stream) = pair.call()
    _ = try #require(stream)
    try pair.exchange()
    try pair.client.writeInbound(ByteBuffer(bytes: [0, 0, 5, 4, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5]))
    #expect(!pair.client.isActive)
    guard case .failure(let error as RPCError) = Self.result(call) else { Issue.record("\(String(describing: Self.result(call)))"); return }
    #expect(error.code == .unavailable)
  }

  /// A response of 20 MiB, far over the 8 MiB windows, arrives whole: the handler gives the
  /// connection's and the stream's windows back as it reads.
  @Test func aResponseLargerThanTheWindowsArrivesWhole() throws {
    let pair = try Pair()
    defer { pair.finish() }
    let (call, stream) = pair.call(receiveLimit: 64 << 20)
    let id = try #require(stream?.id)
    try pair.exchange()
    try pair.send(id, .headers(.init(headers: HPACKHeaders(DirectStreamHandlerTests.ok))))
    let size = 20 << 20
    var message = ByteBuffer()
    message.writeInteger(UInt8(0))
    message.writeInteger(UInt32(size))
    message.writeRepeatingByte(0x5a, count: size)
    // The server's handler holds what its window does not allow until WINDOW_UPDATEs come.
    while message.readableBytes > 0 {
      let chunk = message.readSlice(length: min(16_384, message.readableBytes))!
      pair.server.write(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(chunk)))), promise: nil)
    }
    pair.server.flush()
    try pair.exchange()
    try pair.send(id, .headers(.init(headers: HPACKHeaders([("grpc-status", "0")]), endStream: true)))
    guard case .success(let body) = Self.result(call) else { Issue.record("\(String(describing: Self.result(call)))"); return }
    #expect(body.readableBytes == size)
    #expect(pair.client.isActive)
  }

  /// Many responses through small windows (128 KiB), each under the window but together 40
  /// times it, of sizes that leave the connection's window given back at odd points: every
  /// one arrives. (Window given back but never counted as written would pile up until none
  /// was given back and the connection stalled.)
  @Test func manyResponsesThroughSmallWindowsAllArrive() throws {
    let size = 128 << 10
    let pair = try Pair(windowSize: size)
    defer { pair.finish() }
    for round in 0..<100 {
      let (call, stream) = pair.call()
      let id = try #require(stream?.id)
      try pair.exchange()
      let body = [UInt8](repeating: UInt8(round & 0xff), count: 20_000 + (round * 7_919) % 40_000)
      try pair.answer(id, body)
      guard case .success(let got) = Self.result(call) else {
        Issue.record("response \(round): \(String(describing: Self.result(call)))")
        return
      }
      #expect(got.readableBytes == body.count)
    }
    #expect(pair.client.isActive)
    #expect(pair.connection.openStreams == 0)
  }

  /// A cancelled call whose stream both sides had not ended is reset on the wire: the
  /// negative case of the tests above, so their zero counts mean something.
  @Test func aCancelledCallIsResetOnTheWire() throws {
    let pair = try Pair()
    defer { pair.finish() }
    let (call, stream) = pair.call()
    let id = try #require(stream?.id)
    try pair.exchange()
    try pair.send(id, .headers(.init(headers: HPACKHeaders(DirectStreamHandlerTests.ok))))
    call.finish(.failure(CancellationError()))
    try pair.exchange()
    #expect(pair.clientResets(of: id) == 1)
    #expect(pair.received.resets(of: id) == 1)
  }

  /// A call whose HEADERS swift-nio-http2 still holds (the server allows one stream at a time)
  /// fails at a GOAWAY even with the highest last stream: swift-nio-http2 would refuse to open
  /// it, with an error and no close event, and the call would wait. The call already sent is
  /// still answered.
  @Test func goAwayEndsACallWhoseHeadersWereHeldBack() throws {
    let pair = try Pair(serverSettings: [HTTP2Setting(parameter: .maxConcurrentStreams, value: 1)])
    defer { pair.finish() }
    let (sent, first) = pair.call()
    let (held, second) = pair.call()
    let sentID = try #require(first?.id), heldID = try #require(second?.id)
    try pair.exchange()
    #expect(!pair.received.frames.contains { $0.streamID == heldID }, "the server's limit did not hold the second stream")
    try pair.send(.rootStream, .goAway(lastStreamID: .maxID, errorCode: .noError, opaqueData: nil))
    guard case .failure(let error as RPCError) = Self.result(held) else { Issue.record("\(String(describing: Self.result(held)))"); return }
    #expect(error.code == .unavailable)
    #expect(Self.result(sent) == nil)
    try pair.answer(sentID, [5])
    guard case .success = Self.result(sent) else { Issue.record("\(String(describing: Self.result(sent)))"); return }
  }

  /// When etcd ends a call while its request's END_STREAM is still held back by flow control
  /// (etcd's window smaller than the request), the stream is reset: this side has not ended
  /// it, whatever was queued.
  @Test func aCallEndedWhileItsRequestWaitsForWindowIsReset() throws {
    let pair = try Pair(serverSettings: [HTTP2Setting(parameter: .initialWindowSize, value: 16)])
    defer { pair.finish() }
    let (call, stream) = pair.call(request: [UInt8](repeating: 2, count: 200))
    let id = try #require(stream?.id)
    try pair.exchange()
    let endWritten = pair.log.frames.contains { frame in
      guard frame.streamID == id, case .data(let data) = frame.payload else { return false }
      return data.endStream
    }
    #expect(!endWritten, "the request was not held back")
    try pair.send(id, .headers(.init(headers: HPACKHeaders(DirectStreamHandlerTests.ok + [("grpc-status", "8")]), endStream: true)))
    guard case .failure(let error as RPCError) = Self.result(call) else { Issue.record("\(String(describing: Self.result(call)))"); return }
    #expect(error.code == .resourceExhausted)
    #expect(pair.clientResets(of: id) == 1)
    #expect(pair.connection.openStreams == 0)
  }

  /// GOAWAY fails the calls above its last stream, which are not reset (swift-nio-http2 closed
  /// them), and the connection takes no new call; a call below it is still answered.
  @Test func goAwayEndsTheUnansweredCallsWithoutResettingThem() throws {
    let pair = try Pair()
    defer { pair.finish() }
    let (kept, first) = pair.call()
    let (dropped, second) = pair.call()
    let keptID = try #require(first?.id), droppedID = try #require(second?.id)
    try pair.exchange()
    try pair.send(.rootStream, .goAway(lastStreamID: keptID, errorCode: .noError, opaqueData: nil))
    guard case .failure(let error as RPCError) = Self.result(dropped) else { Issue.record("\(String(describing: Self.result(dropped)))"); return }
    #expect(error.code == .unavailable)
    #expect(pair.clientResets(of: droppedID) == 0)
    let (refused, none) = pair.call()
    #expect(none == nil)
    refused.finish(.failure(CancellationError()))
    try pair.answer(keptID, [3])
    guard case .success = Self.result(kept) else { Issue.record("\(String(describing: Self.result(kept)))"); return }
    #expect(pair.connection.openStreams == 0)
  }

  /// etcd's RST_STREAM fails the call with gRPC's meaning of its code and is not answered with
  /// another; a failure ending in trailers is not reset either (both sides ended the stream).
  @Test func aClosedStreamIsNotResetAgain() throws {
    let pair = try Pair()
    defer { pair.finish() }
    let (refused, first) = pair.call()
    let (failed, second) = pair.call()
    let refusedID = try #require(first?.id), failedID = try #require(second?.id)
    try pair.exchange()
    try pair.send(refusedID, .rstStream(.refusedStream))
    guard case .failure(let error as RPCError) = Self.result(refused) else { Issue.record("\(String(describing: Self.result(refused)))"); return }
    #expect(error.code == .unavailable)
    try pair.send(failedID, .headers(.init(headers: HPACKHeaders(DirectStreamHandlerTests.ok + [("grpc-status", "9")]), endStream: true)))
    guard case .failure(let failure as RPCError) = Self.result(failed) else { Issue.record("\(String(describing: Self.result(failed)))"); return }
    #expect(failure.code == .failedPrecondition)
    try pair.exchange()
    #expect(pair.clientResets(of: refusedID) == 0)
    #expect(pair.clientResets(of: failedID) == 0)
    #expect(pair.connection.openStreams == 0)
  }
}

/// The window given back: once half is used; what was queued counts as given until swift-nio-
/// http2 wrote it (no second increment while its WINDOW_UPDATE waits for the socket), and
/// nothing stays counted once it was written.
@Test func aWindowIsGivenBackOnceAndNotAgainWhileItsUpdateWaits() {
  var window = DirectWindow()
  let size = 8 << 20
  #expect(window.giveBack(inbound: size - 1000, size: size) == nil)
  #expect(window.giveBack(inbound: size / 2, size: size) == size / 2)
  // Further DATA while that update waits (the reported window keeps falling): nothing more.
  #expect(window.giveBack(inbound: size / 2 - 16_384, size: size) == nil)
  #expect(window.giveBack(inbound: 1000, size: size) == nil)
  window.sent(size / 2)
  #expect(window.pending == 0)
  // Written: the next report holds it (less the frame that brought it); once used, again.
  #expect(window.giveBack(inbound: size / 2 + 500, size: size) == nil)
  #expect(window.giveBack(inbound: 500, size: size) == size - 500)
  window.sent(size - 500)
  #expect(window.pending == 0)
}
