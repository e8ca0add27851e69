import GRPCCore
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS
import SwiftProtobuf
import Synchronization

/// EtcdClient's own gRPC transport over swift-nio-http2: every unary call, the watch stream
/// and lease keep-alive streams, with no task hops.
///
/// grpc-swift-2's call path moves a unary call between Swift's global pool and the event loop
/// several times (task groups, a child task for the request writer, hops to open, write and
/// close the stream), and keeps each call's deadline with two child tasks and a timer. On the
/// project's 2-core machine that was two thirds of a put's time (docs/benchmarks.md, issue 16).
/// Here a call costs one hop to the event loop and one back: the loop opens an HTTP/2 stream,
/// writes HEADERS and DATA (END_STREAM) in one flush, gathers the response frames and completes
/// one promise; the deadline is one timer on the loop. A stream's responses are handed to its
/// consumer on the loop as each message is whole. Messages are still the generated protobuf
/// types, and grpc-swift-2's `RPCError` carries failures (``EtcdError/wrap(_:)`` maps them).
///
/// One connection per member, on one event loop per client, made at the first call that needs
/// it. A call goes to the next ready member in turn (ready: connected, TLS checked, the
/// server's SETTINGS received); when none is ready it connects to every member at once and
/// takes the first ready one, and a member that cannot be reached is skipped for a backoff
/// (100 ms, growing to 5 s). A unary call waits for a member until its deadline, as grpc's
/// `waitForReady` did; a stream waits as long as it takes. A member that sends GOAWAY, or
/// whose connection is lost, gets no new calls on that connection; a later call connects it
/// anew.
final class DirectTransport: Sendable {
  let eventLoop: any EventLoop
  private let members: [DirectMember]
  /// Round-robin position.
  private let nextMember = Atomic<Int>(0)
  private let closed = Atomic<Bool>(false)
  private let maxSendBytes: Int
  private let maxReceiveBytes: Int
  private let scheme: String

  init(configuration: EtcdConfiguration, eventLoop: any EventLoop) throws(EtcdError) {
    self.eventLoop = eventLoop
    self.maxSendBytes = configuration.maxSendMessageBytes
    self.maxReceiveBytes = configuration.maxReceiveMessageBytes
    self.scheme = configuration.usesTLS ? "https" : "http"
    let security = try DirectSecurity(configuration)
    let keepalive = HTTP2LivenessHandler.Keepalive(
      interval: timeAmount(max(configuration.keepaliveTime, .seconds(5))),
      timeout: timeAmount(max(configuration.keepaliveTimeout, .milliseconds(100)))
    )
    self.members = configuration.endpoints.map { endpoint in
      DirectMember(
        endpoint: endpoint, eventLoop: eventLoop, security: security, keepalive: keepalive,
        dialTimeout: timeAmount(configuration.dialTimeout),
        installsLiveness: configuration.installsLivenessHandler, pingAckDelay: configuration.pingAckDelay.map(timeAmount),
        validatesHeaderBlocks: configuration.validatesHeaderBlocks)
    }
  }

  /// Takes no new calls (they fail with `clientClosed`); each connection closes once the calls
  /// on it have ended.
  func shutdown() {
    guard !self.closed.exchange(true, ordering: .relaxed) else { return }
    let members = self.members
    self.eventLoop.execute { for member in members { member.shutdown() } }
    let waiters = self.waiters.withLock { waiters in
      defer { waiters = [] }
      return waiters
    }
    for waiter in waiters { waiter.resume() }
  }

  /// Returns once ``shutdown()`` was called.
  func waitUntilShutdown() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
      let waiting = self.waiters.withLock { waiters -> Bool in
        guard !self.closed.load(ordering: .relaxed) else { return false }
        waiters.append(continuation)
        return true
      }
      if !waiting { continuation.resume() }
    }
  }
  private let waiters = Mutex<[CheckedContinuation<Void, Never>]>([])

  /// Makes one unary call: `message` is the serialized request; returns the serialized
  /// response. Fails with an `RPCError` (mapped by ``EtcdError/wrap(_:)``), an ``EtcdError``,
  /// or `CancellationError` when the task is cancelled.
  func unary(path: String, message: [UInt8], metadata: Metadata, timeout: Duration) async throws -> ByteBuffer {
    let body = try self.framed(message)
    let call = DirectCall(
      path: path, scheme: self.scheme, metadata: metadata, mode: .unary(body), timeout: timeout,
      maxReceiveBytes: self.maxReceiveBytes, promise: self.eventLoop.makePromise())
    return try await self.run(call)
  }

  /// Runs one bidirectional streaming call until it ends. Each element of `requests` is
  /// written as one message and passed to `onWrite` once written to the stream, on the event
  /// loop (the stream is half-closed when `requests` finishes); each
  /// response message is handed to `onMessage` **on the event loop**, in order, as soon as it
  /// is whole, so it must be quick and must not block. Returns when etcd ends the stream with
  /// status OK; throws when it ends it otherwise, when the connection is lost, when
  /// `onMessage` throws (the stream is then reset), or with `CancellationError` when the task
  /// is cancelled. There is no deadline: the call waits for a member as long as it takes.
  func bidirectional<Request: SwiftProtobuf.Message & Sendable>(
    path: String, metadata: Metadata, requests: AsyncStream<Request>,
    onWrite: @escaping @Sendable (Request) -> Void,
    onMessage: @escaping @Sendable (ByteBuffer) throws -> Void
  ) async throws {
    let call = DirectCall(
      path: path, scheme: self.scheme, metadata: metadata, mode: .stream(onMessage), timeout: nil,
      maxReceiveBytes: self.maxReceiveBytes, promise: self.eventLoop.makePromise())
    let loop = self.eventLoop
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask {
        do {
          // Requests wait in `requests` until the stream is open (or the call ended).
          guard (try? await call.opened?.futureResult.get()) != nil else { return }
          for await request in requests {
            let body = try self.framed(try request.serializedBytes())
            loop.execute { call.send(body, end: false) { onWrite(request) } }
          }
          loop.execute { call.send(nil, end: true) }
        } catch {
          // A request that cannot be sent ends the call with that error.
          loop.execute { call.finish(.failure(error)) }
        }
      }
      _ = try await self.run(call)
      group.cancelAll()
    }
  }

  /// A message with gRPC's 5-byte prefix (not compressed, length).
  private func framed(_ message: [UInt8]) throws -> ByteBuffer {
    guard message.count <= self.maxSendBytes else {
      throw RPCError(
        code: .resourceExhausted,
        message: "trying to send message larger than max (\(message.count) vs. \(self.maxSendBytes))")
    }
    var body = ByteBufferAllocator().buffer(capacity: 5 + message.count)
    body.writeInteger(UInt8(0))
    body.writeInteger(UInt32(message.count))
    body.writeBytes(message)
    return body
  }

  private func run(_ call: DirectCall) async throws -> ByteBuffer {
    if self.closed.load(ordering: .relaxed) {
      let error = EtcdError(.clientClosed, "the etcd client has been shut down")
      call.promise.fail(error)
      call.opened?.fail(error)
      throw error
    }
    let members = self.members
    let turn = UInt(bitPattern: self.nextMember.wrappingAdd(1, ordering: .relaxed).oldValue)
    let start = Int(turn % UInt(members.count))
    let loop = self.eventLoop
    return try await withTaskCancellationHandler {
      loop.execute { call.begin(members: members, start: start) }
      return try await call.promise.futureResult.get()
    } onCancel: {
      loop.execute { call.finish(.failure(CancellationError())) }
    }
  }
}

/// How connections are secured: plaintext, or TLS with one of the three ways
/// ``TransportFactory`` checks a member's certificate.
struct DirectSecurity: Sendable {
  var context: NIOSSLContext?
  /// The name sent as SNI and checked by NIOSSL, the same for every member.
  var serverHostname: String?
  /// Each member's certificate is checked against that member's own host.
  var perMemberIdentity = false
  /// The `:authority` for every call, when one name is configured.
  var authority: String?

  init(_ configuration: EtcdConfiguration) throws(EtcdError) {
    guard configuration.usesTLS else { return }
    let tls = configuration.tls ?? EtcdConfiguration.TLS()
    if case .shared(let name) = configuration.certificateNames {
      self.serverHostname = name
      self.authority = name
    }
    var config = TLSConfiguration.makeClientConfiguration()
    config.applicationProtocols = ["h2"]
    do {
      if let ca = tls.caFile {
        config.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
      }
      if let cert = tls.certFile, let key = tls.keyFile {
        config.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
        config.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
      }
      if tls.insecureSkipVerify {
        config.certificateVerification = .none
      } else if self.serverHostname == nil {
        // Several hosts, or one IP address (not a name NIOSSL checks): MemberIdentityHandler
        // checks each member's certificate against that member's own host.
        config.certificateVerification = .noHostnameVerification
        self.perMemberIdentity = true
      }
      self.context = try NIOSSLContext(configuration: config)
    } catch {
      throw EtcdError(.tlsFailed, "cannot set up the connection: \(error)", cause: error)
    }
  }
}

/// One member's connection, confined to the transport's event loop.
final class DirectMember: @unchecked Sendable {
  let endpoint: EtcdEndpoint
  private let eventLoop: any EventLoop
  private let security: DirectSecurity
  private let keepalive: HTTP2LivenessHandler.Keepalive
  private let dialTimeout: TimeAmount
  private let installsLiveness: Bool
  private let pingAckDelay: TimeAmount?
  private let validatesHeaderBlocks: Bool

  private enum State {
    case idle
    case connecting(EventLoopFuture<DirectConnection>)
    case ready(DirectConnection)
    /// The last connection attempt failed; not tried again before `until` unless every member is.
    case backingOff(until: NIODeadline)
    case shutDown
  }
  private var state = State.idle
  /// The reconnection backoff: 100 ms, doubling to 5 s, ±20 %.
  private var backoff = Backoff()
  /// Calls with a stream open (or opening) on this member's connection.
  private var inFlight = 0
  /// Connections that take no new calls (GOAWAY) but may still carry some; closed at shutdown.
  private var draining: [DirectConnection] = []
  /// Set by ``shutdown()``: the connections close once the last call on them ended.
  private var closesWhenIdle = false

  init(
    endpoint: EtcdEndpoint, eventLoop: any EventLoop, security: DirectSecurity,
    keepalive: HTTP2LivenessHandler.Keepalive, dialTimeout: TimeAmount, installsLiveness: Bool,
    pingAckDelay: TimeAmount? = nil, validatesHeaderBlocks: Bool = false
  ) {
    self.pingAckDelay = pingAckDelay
    self.validatesHeaderBlocks = validatesHeaderBlocks
    self.endpoint = endpoint
    self.eventLoop = eventLoop
    self.security = security
    self.keepalive = keepalive
    self.dialTimeout = dialTimeout
    self.installsLiveness = installsLiveness
    if let name = security.authority {
      self.authority = name
    } else {
      let host = endpoint.host.contains(":") ? "[\(endpoint.host)]" : endpoint.host
      self.authority = "\(host):\(endpoint.port)"
    }
  }

  /// The `:authority` of a call to this member.
  let authority: String

  var isReady: Bool {
    if case .ready = self.state { return true }
    return false
  }

  /// When a failed member may be tried again (nil: it may be tried now).
  var backoffUntil: NIODeadline? {
    if case .backingOff(let until) = self.state, until > .now() { return until }
    return nil
  }

  var isShutDown: Bool {
    if case .shutDown = self.state { return true }
    return false
  }

  /// Neither connected nor connecting, and not backing off: a call may connect it.
  var isIdle: Bool {
    switch self.state {
    case .idle: true
    case .backingOff(let until): until <= .now()
    case .connecting, .ready, .shutDown: false
    }
  }

  /// The member's ready connection, connecting first if needed.
  func connection() -> EventLoopFuture<DirectConnection> {
    switch self.state {
    case .ready(let connection): return self.eventLoop.makeSucceededFuture(connection)
    case .connecting(let future): return future
    case .shutDown: return self.eventLoop.makeFailedFuture(EtcdError(.clientClosed, "the etcd client has been shut down"))
    case .idle, .backingOff: break
    }
    let future = self.connect()
    self.state = .connecting(future)
    future.whenComplete { result in
      guard case .connecting(let pending) = self.state, pending === future else {
        if case .success(let connection) = result { connection.channel.close(promise: nil) }
        return
      }
      switch result {
      case .success(let connection):
        self.backoff.reset()
        self.state = .ready(connection)
        connection.channel.closeFuture.whenComplete { _ in self.lostChannel(connection.channel) }
      case .failure:
        self.state = .backingOff(until: .now() + timeAmount(self.backoff.next()))
      }
    }
    return future
  }

  /// Takes no new calls; the connection closes once the calls on it have ended (at once
  /// when there are none), so in-flight requests finish.
  func shutdown() {
    if case .ready(let connection) = self.state { self.draining.append(connection) }
    self.state = .shutDown
    self.closesWhenIdle = true
    if self.inFlight == 0 { self.closeDraining() }
  }

  func callStarted() { self.inFlight += 1 }

  func callEnded() {
    self.inFlight -= 1
    if self.inFlight == 0, self.closesWhenIdle { self.closeDraining() }
  }

  private func closeDraining() {
    let connections = self.draining
    self.draining = []
    for connection in connections { connection.channel.close(promise: nil) }
  }

  /// The client side's HTTP/2 settings: etcd's response of up to 8 MiB in flight per stream
  /// and per connection, no server push, and as many refused streams per second as gRPC
  /// allows. Without `validatesHeaderBlocks`, swift-nio-http2 does not check header blocks
  /// against HTTP/2's field rules (nor content-length): etcd's headers are checked where they
  /// are read (``DirectStream/checkResponseHeaders(_:)``, the trailers), and the client's own
  /// are fixed. Frame sequencing (trailers must end the stream, for one) is checked either way.
  static func http2Configuration(validatesHeaderBlocks: Bool, windowSize: Int = DirectConnection.windowSize)
    -> (NIOHTTP2Handler.ConnectionConfiguration, NIOHTTP2Handler.StreamConfiguration)
  {
    var connection = NIOHTTP2Handler.ConnectionConfiguration()
    connection.initialSettings = [
      HTTP2Setting(parameter: .enablePush, value: 0),
      HTTP2Setting(parameter: .initialWindowSize, value: windowSize),
      HTTP2Setting(parameter: .maxFrameSize, value: 1 << 14),
      HTTP2Setting(parameter: .maxHeaderListSize, value: HPACKDecoder.defaultMaxHeaderListSize),
    ]
    let validation: NIOHTTP2Handler.ValidationState = validatesHeaderBlocks ? .enabled : .disabled
    connection.headerBlockValidation = validation
    connection.contentLengthValidation = validation
    var stream = NIOHTTP2Handler.StreamConfiguration()
    // etcd refuses a call with RST_STREAM or a trailers-only answer; allow as many as grpc does.
    stream.streamResetFrameRateLimit.maximumCount = 200
    stream.streamResetFrameRateLimit.windowLength = .seconds(1)
    stream.streamErrorRateLimit.maximumCount = 200
    stream.streamErrorRateLimit.windowLength = .seconds(1)
    return (connection, stream)
  }

  /// Connects to the member: its host name is resolved now (so DNS changes are seen at each
  /// reconnection) by NIO's resolver, off the event loop, and its addresses are tried as
  /// happy eyeballs does.
  private func connect() -> EventLoopFuture<DirectConnection> {
    let ready = self.eventLoop.makePromise(of: Void.self)
    let security = self.security
    let host = self.endpoint.host
    let keepalive = self.installsLiveness ? self.keepalive : nil
    let pingAckDelay = self.pingAckDelay
    let validates = self.validatesHeaderBlocks
    let member = self
    let bootstrap = ClientBootstrap(group: self.eventLoop)
      .connectTimeout(self.dialTimeout)
      .channelOption(.tcpOption(.tcp_nodelay), value: 1)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          let sync = channel.pipeline.syncOperations
          if let context = security.context {
            try sync.addHandler(NIOSSLClientHandler(context: context, serverHostname: security.serverHostname))
            if security.perMemberIdentity { try sync.addHandler(MemberIdentityHandler(host: host)) }
          }
          if let keepalive { try sync.addHandler(HTTP2LivenessHandler(keepalive: keepalive, ackDelay: pingAckDelay)) }
          let (connectionConfiguration, streamConfiguration) = DirectMember.http2Configuration(
            validatesHeaderBlocks: validates)
          // No stream multiplexer: DirectConnectionHandler keeps the streams and the windows.
          let written = DirectWrittenFrames()
          try sync.addHandler(
            NIOHTTP2Handler(
              mode: .client, frameDelegate: written, connectionConfiguration: connectionConfiguration,
              streamConfiguration: streamConfiguration))
          try sync.addHandler(
            DirectConnectionHandler(member: member, ready: ready, waitsForTLS: security.context != nil, written: written))
        }
      }
    let endpoint = self.endpoint
    let connected = bootstrap.connect(host: self.endpoint.host, port: self.endpoint.port).flatMapErrorThrowing { error in
      throw RPCError(code: .unavailable, message: "cannot connect to etcd member \(endpoint): \(error)", cause: error)
    }
    connected.whenFailure { ready.fail($0) }
    // Connected but not ready (no TLS handshake, no SETTINGS) within dialTimeout: given up.
    let dialTimeout = self.dialTimeout
    let expiry = self.eventLoop.scheduleTask(in: dialTimeout) {
      ready.fail(RPCError(code: .unavailable, message: "etcd member \(endpoint) did not answer within the dial timeout (\(dialTimeout))"))
    }
    ready.futureResult.whenComplete { _ in expiry.cancel() }
    return connected.flatMap { channel in
      ready.futureResult.flatMapThrowing {
        DirectConnection(channel: channel, handler: try channel.pipeline.syncOperations.handler(type: DirectConnectionHandler.self))
      }.flatMapErrorThrowing { error in
        channel.close(promise: nil)
        throw error
      }
    }
  }

}

/// An open HTTP/2 connection to one member.
final class DirectConnection: @unchecked Sendable {
  /// Flow-control window of the connection and of each stream: a 100k-key Range (tens of MB)
  /// would otherwise wait for a WINDOW_UPDATE every 32 KiB. The same as grpc-swift-2's default.
  static let windowSize = 8 * 1024 * 1024
  let channel: any Channel
  /// The connection's calls (on the event loop only).
  let handler: DirectConnectionHandler

  init(channel: any Channel, handler: DirectConnectionHandler) {
    self.channel = channel
    self.handler = handler
  }
}

/// Told by the HTTP/2 handler of every frame it actually writes, which may be later than we
/// wrote it (it holds frames while the socket takes no writes, and a new stream's HEADERS
/// while the server's stream limit is reached): whether it sent GOAWAY itself, which it does on
/// a connection error (and only then: the client never sends GOAWAY), and, for the connection's
/// handler, which stream's HEADERS and END_STREAM went out and which window it gave back.
final class DirectWrittenFrames: NIOHTTP2FrameDelegate {
  private(set) var goAway = false
  weak var connection: DirectConnectionHandler?
  /// Every frame written (tests).
  var observer: ((HTTP2Frame) -> Void)?

  func wroteFrame(_ frame: HTTP2Frame) {
    if case .goAway = frame.payload { self.goAway = true }
    self.connection?.wrote(frame)
    self.observer?(frame)
  }
}

/// Sits after the HTTP/2 handler, which runs without a stream multiplexer, and carries the
/// connection's calls: each call's HTTP/2 stream is a ``DirectStream`` in a table keyed by
/// stream ID, with no channel, pipeline or handler of its own (swift-nio-http2's multiplexer
/// made each call a child channel, about a tenth of a put's CPU; docs/benchmarks.md). It also
/// tells when the connection is ready (connected, for TLS handshaken and checked, the server's
/// SETTINGS received) and when it takes no new calls (GOAWAY), gives flow-control window back
/// as responses are read, and keeps why the connection failed.
final class DirectConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = HTTP2Frame
  typealias OutboundOut = HTTP2Frame

  private let member: DirectMember
  private let ready: EventLoopPromise<Void>
  /// Set once the TLS handshake completed and the member's name matched (at once without TLS).
  private var secured: Bool
  /// Set once the server's first SETTINGS frame arrived: it speaks HTTP/2.
  private var settled = false
  private var error: (any Error)?
  private var isReady = false
  private var context: ChannelHandlerContext?
  /// The open streams, by ID.
  private var streams: [HTTP2StreamID: DirectStream] = [:]
  /// The next stream's ID: a client's streams are odd and increasing.
  private var nextStreamID: Int32 = 1
  /// Cleared by GOAWAY and when the connection closes: no new streams.
  private var takesStreams = true
  private let windowSize: Int
  private let written: DirectWrittenFrames
  /// The connection's window given back but not yet written by swift-nio-http2.
  private var window = DirectWindow()

  init(
    member: DirectMember, ready: EventLoopPromise<Void>, waitsForTLS: Bool,
    written: DirectWrittenFrames = DirectWrittenFrames(), windowSize: Int = DirectConnection.windowSize
  ) {
    self.member = member
    self.ready = ready
    self.secured = !waitsForTLS
    self.written = written
    self.windowSize = windowSize
    written.connection = self
  }

  /// A frame swift-nio-http2 wrote (its state counts it from now on).
  func wrote(_ frame: HTTP2Frame) {
    switch frame.payload {
    case .windowUpdate(let increment):
      if frame.streamID == .rootStream { self.window.sent(increment) } else { self.streams[frame.streamID]?.window.sent(increment) }
    case .headers(let headers):
      guard let stream = self.streams[frame.streamID] else { return }
      stream.headersWritten = true
      if headers.endStream { stream.localEnded = true }
    case .data(let data) where data.endStream:
      self.streams[frame.streamID]?.localEnded = true
    default:
      break
    }
  }

  /// How many streams are open (tests).
  var openStreams: Int { self.streams.count }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.closeStreams(RPCError(code: .unavailable, message: "the stream to etcd closed before the response"))
    self.context = nil
  }

  /// Opens `call`'s stream and writes its headers and the messages it has (a unary call's one
  /// message and END_STREAM) in one flush. Returns nil when the connection takes no new
  /// stream (closing, GOAWAY, stream IDs used up): the call then goes elsewhere.
  func open(_ call: DirectCall, authority: String) -> DirectStream? {
    guard let context = self.context, self.takesStreams, context.channel.isActive else { return nil }
    guard self.nextStreamID < Int32.max - 2 else {
      // Stream IDs used up: this connection takes no more calls; the next call connects anew.
      self.takesStreams = false
      self.member.lostChannel(context.channel)
      return nil
    }
    let id = HTTP2StreamID(Int(self.nextStreamID))
    self.nextStreamID += 2
    let stream = DirectStream(id: id, call: call, connection: self)
    guard call.attached(stream) else { return nil }
    self.streams[id] = stream
    let (messages, end) = call.takePending()
    context.write(self.wrapOutboundOut(HTTP2Frame(streamID: id, payload: .headers(.init(headers: stream.requestHeaders(authority: authority))))), promise: nil)
    for (index, message) in messages.enumerated() {
      let last = index == messages.count - 1
      context.write(self.wrapOutboundOut(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(message.message), endStream: last && end)))), promise: nil)
    }
    if messages.isEmpty && end {
      context.write(self.wrapOutboundOut(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(ByteBuffer()), endStream: true)))), promise: nil)
    }
    context.flush()
    for message in messages { message.written?() }
    return stream
  }

  /// Writes one DATA frame of `stream`'s, if it is still open.
  func send(_ data: ByteBuffer, end: Bool, on stream: DirectStream) {
    guard let context = self.context, self.streams[stream.id] === stream else { return }
    context.writeAndFlush(self.wrapOutboundOut(HTTP2Frame(streamID: stream.id, payload: .data(.init(data: .byteBuffer(data), endStream: end)))), promise: nil)
  }

  /// Ends `stream` from this side (RST_STREAM CANCEL), if it is still open: not once both
  /// sides ended it (etcd's END_STREAM or RST_STREAM received, and this side's END_STREAM
  /// written by swift-nio-http2, not only queued), since an endpoint must not answer a closed
  /// stream, nor RST_STREAM with RST_STREAM. (A stream whose HEADERS swift-nio-http2 still
  /// holds is dropped unsent by the RST_STREAM.)
  func reset(_ stream: DirectStream) {
    guard self.streams[stream.id] === stream else { return }
    self.streams[stream.id] = nil
    guard let context = self.context, !(stream.remoteEnded && stream.localEnded) else { return }
    context.writeAndFlush(self.wrapOutboundOut(HTTP2Frame(streamID: stream.id, payload: .rstStream(.cancel))), promise: nil)
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let frame = self.unwrapInboundIn(data)
    if frame.streamID == .rootStream {
      switch frame.payload {
      case .goAway(let lastStreamID, _, _):
        self.takesStreams = false
        self.member.lostChannel(context.channel)
        // The streams etcd will not answer: those above its last stream, which swift-nio-http2
        // has closed (they leave the table first, so none is reset), and those whose HEADERS
        // it still holds, which it will refuse to open now (with an error and no
        // StreamClosedEvent, so the calls would wait).
        let error = RPCError(code: .unavailable, message: "etcd member \(self.member.endpoint) is going away (GOAWAY)")
        let unanswered = self.streams.filter { $0.key > lastStreamID || !$0.value.headersWritten }
        for id in unanswered.keys { self.streams[id] = nil }
        for stream in unanswered.values { stream.failed(error) }
      case .settings(.settings) where !self.settled:
        self.settled = true
        // The connection's window from the start, not after the first 64 KiB (it starts at
        // 65,535 bytes whatever SETTINGS say).
        if let increment = self.window.giveBack(inbound: 65_535, size: self.windowSize) {
          context.writeAndFlush(self.wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment))), promise: nil)
        }
        self.checkReady()
      default:
        break
      }
      return
    }
    self.streams[frame.streamID]?.receive(frame.payload)
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if let update = event as? NIOHTTP2WindowUpdatedEvent {
      // Gives the window back once half of it was used, as swift-nio-http2's multiplexer does;
      // the responses are read as they arrive, so nothing is held unread.
      guard let inbound = update.inboundWindowSize else { return }
      if update.streamID == .rootStream {
        if let increment = self.window.giveBack(inbound: inbound, size: self.windowSize) {
          context.writeAndFlush(self.wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment))), promise: nil)
        }
      } else if let stream = self.streams[update.streamID], let increment = stream.window.giveBack(inbound: inbound, size: self.windowSize) {
        context.writeAndFlush(self.wrapOutboundOut(HTTP2Frame(streamID: stream.id, payload: .windowUpdate(windowSizeIncrement: increment))), promise: nil)
      }
      return
    }
    if let closed = event as? StreamClosedEvent {
      if let stream = self.streams.removeValue(forKey: closed.streamID) {
        stream.failed(RPCError(code: .unavailable, message: "the stream to etcd closed before the response"))
      }
      return
    }
    // MemberIdentityHandler passes the handshake on only once the member's name matched.
    if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
      self.secured = true
      self.checkReady()
    }
    context.fireUserInboundEventTriggered(event)
  }

  /// Ready, as grpc counts a connection ready: connected, secured, and the server's SETTINGS
  /// received. A member that accepts TCP but never answers (stopped, or still starting) is not.
  private func checkReady() {
    guard !self.isReady, self.secured, self.settled else { return }
    self.isReady = true
    self.ready.succeed()
  }

  /// One stream's error fails that stream's call only:
  /// - an error writing a stream's frame, which swift-nio-http2 wraps with the stream's ID;
  /// - an error in a frame etcd sent on one stream (say, trailers without END_STREAM), which
  ///   swift-nio-http2 answers with RST_STREAM and reports unwrapped; the stream's
  ///   `StreamClosedEvent` then fails its call.
  ///
  /// Any other error closes the connection, as grpc-swift-2's connection handler does: a
  /// connection error (swift-nio-http2 sent GOAWAY for it, without closing, and a connection in
  /// that state would leave its calls waiting for their deadlines), or one from below HTTP/2
  /// (the socket, TLS). The calls on it fail with `unavailable`; the next call connects anew.
  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    if let streamError = error as? NIOHTTP2Errors.StreamError {
      self.streams[streamError.streamID]?.failed(
        RPCError(code: .unavailable, message: "the stream to etcd failed: \(streamError.baseError)", cause: error))
      return
    }
    if error is any NIOHTTP2Error, !self.written.goAway { return }
    if self.error == nil { self.error = error }
    context.close(promise: nil)
  }

  func channelInactive(context: ChannelHandlerContext) {
    self.takesStreams = false
    let reason = self.error.map { "\($0)" } ?? "the connection closed"
    if !self.isReady { self.ready.fail(RPCError(code: .unavailable, message: "cannot connect to etcd member \(self.member.endpoint): \(reason)", cause: self.error)) }
    self.member.lostChannel(context.channel)
    self.closeStreams(RPCError(code: .unavailable, message: "the stream to etcd closed before the response"))
    context.fireChannelInactive()
  }

  private func closeStreams(_ error: RPCError) {
    self.takesStreams = false
    let streams = self.streams
    self.streams = [:]
    for stream in streams.values { stream.failed(error) }
  }
}

extension DirectMember {
  /// `channel`'s connection ended or its server sent GOAWAY: it takes no new calls, and the
  /// next call connects anew.
  func lostChannel(_ channel: any Channel) {
    if case .ready(let connection) = self.state, connection.channel === channel {
      self.state = .idle
      if channel.isActive {
        self.draining.append(connection)
        channel.closeFuture.whenComplete { _ in self.draining.removeAll { $0 === connection } }
      }
    }
  }
}

/// One call, confined to the transport's event loop: picks a member, opens a stream, and
/// completes `promise` exactly once (the response, or for a streaming call its end; an error;
/// the deadline; cancellation).
final class DirectCall: @unchecked Sendable {
  /// A unary call's one request message, or a streaming call's consumer of response messages.
  enum Mode {
    case unary(ByteBuffer)
    case stream(@Sendable (ByteBuffer) throws -> Void)
  }

  let promise: EventLoopPromise<ByteBuffer>
  let path: String
  let scheme: String
  let metadata: Metadata
  let mode: Mode
  let timeout: Duration?
  let receiveLimit: Int
  private(set) var isDone = false
  private var deadlineTask: Scheduled<Void>?
  private var stream: DirectStream?
  /// The member whose connection carries the call's stream, counted there while it is open.
  private var member: DirectMember?
  private var lastError: (any Error)?
  /// Which round of connection attempts is current (see `attempt`).
  private var round = 0
  private var roundFailures = 0
  /// A streaming call's messages written before its stream was open, and whether the
  /// requests ended (half-close).
  private var pending: [(message: ByteBuffer, written: (@Sendable () -> Void)?)] = []
  /// Completed when the stream opened (or the call ended first): a streaming call's writer
  /// waits for it, so requests made while no member is reachable wait in their own sequence.
  let opened: EventLoopPromise<Void>?
  private var openedDone = false
  private var ended = false

  init(
    path: String, scheme: String, metadata: Metadata, mode: Mode, timeout: Duration?,
    maxReceiveBytes: Int, promise: EventLoopPromise<ByteBuffer>
  ) {
    self.path = path
    self.scheme = scheme
    self.metadata = metadata
    self.mode = mode
    self.timeout = timeout
    self.receiveLimit = maxReceiveBytes
    self.promise = promise
    if case .stream = mode { self.opened = promise.futureResult.eventLoop.makePromise() } else { self.opened = nil }
  }

  private var eventLoop: any EventLoop { self.promise.futureResult.eventLoop }

  func begin(members: [DirectMember], start: Int) {
    guard !self.isDone else { return }
    if let timeout = self.timeout {
      self.deadlineTask = self.eventLoop.scheduleTask(in: timeAmount(timeout)) { [self] in
        let reason = self.lastError.map { ": \($0)" } ?? ""
        self.finish(.failure(RPCError(code: .deadlineExceeded, message: "the request's deadline passed\(reason)")))
      }
    }
    self.attempt(members: members, start: start)
  }

  /// Opens the call's stream on the next ready member from `start`. With none ready, connects
  /// to every member that is not backing off, at once, and takes the first that is ready (as
  /// grpc's round-robin balancer does: a member that accepts TCP but never answers does not
  /// hold the call up while another answers); when every one failed, waits for the earliest
  /// backoff and goes round again.
  private func attempt(members: [DirectMember], start: Int) {
    guard !self.isDone else { return }
    let count = members.count
    if members.allSatisfy(\.isShutDown) {
      self.finish(.failure(EtcdError(.clientClosed, "the etcd client has been shut down")))
      return
    }
    let order = (0..<count).map { members[(start + $0) % count] }
    if let member = order.first(where: \.isReady) {
      self.open(on: member, members: members, next: start + 1)
      // A member lost earlier (restarted, say) is connected again beside, so that the calls
      // spread over every member again, as grpc's round-robin balancer reconnects them.
      for idle in order where idle.isIdle { _ = idle.connection() }
      return
    }
    let candidates = order.filter { $0.backoffUntil == nil && !$0.isShutDown }
    guard !candidates.isEmpty else {
      // Every member failed or is backing off: wait for the first to come out of it.
      let wake = members.compactMap(\.backoffUntil).min() ?? (.now() + .milliseconds(100))
      self.eventLoop.scheduleTask(deadline: wake) { [self] in self.attempt(members: members, start: start) }
      return
    }
    self.round += 1
    let round = self.round
    self.roundFailures = 0
    for member in candidates {
      member.connection().whenComplete { [self] result in
        guard !self.isDone, self.round == round else { return }
        switch result {
        case .success:
          self.round += 1  // the others' answers are for a finished round
          self.open(on: member, members: members, next: start + 1)
        case .failure(let error):
          self.lastError = error
          self.roundFailures += 1
          if self.roundFailures == candidates.count { self.attempt(members: members, start: start + 1) }
        }
      }
    }
  }

  /// Opens the call's stream on `member`'s ready connection; if the connection takes no new
  /// stream (closing, GOAWAY), tries again from `next`.
  private func open(on member: DirectMember, members: [DirectMember], next: Int) {
    member.connection().whenComplete { [self] result in
      guard !self.isDone else { return }
      switch result {
      case .failure(let error):
        self.lastError = error
        self.attempt(members: members, start: next)
      case .success(let connection):
        member.callStarted()
        self.member = member
        guard connection.handler.open(self, authority: member.authority) != nil else {
          // Closing, or GOAWAY: the call goes to another connection.
          if self.member === member {
            self.member = nil
            member.callEnded()
          }
          guard !self.isDone else { return }
          self.lastError = RPCError(code: .unavailable, message: "the connection to etcd member \(member.endpoint) takes no new calls")
          member.lostChannel(connection.channel)
          self.attempt(members: members, start: next)
          return
        }
      }
    }
  }

  /// The call's stream, once open; the connection writes `takePending()` after the headers.
  func attached(_ stream: DirectStream) -> Bool {
    guard !self.isDone else { return false }
    self.stream = stream
    if !self.openedDone {
      self.openedDone = true
      self.opened?.succeed()
    }
    return true
  }

  /// The messages to write after the headers (each with what to run once it is written), and
  /// whether the request side ends with them.
  func takePending() -> (messages: [(message: ByteBuffer, written: (@Sendable () -> Void)?)], end: Bool) {
    switch self.mode {
    case .unary(let body): return ([(body, nil)], true)
    case .stream:
      let pending = self.pending
      self.pending = []
      return (pending, self.ended)
    }
  }

  /// A streaming call's next message (`nil` with `end`: the half-close). `written` runs once
  /// the message was written to the stream, which may be later: the stream opens once a
  /// member is ready.
  func send(_ message: ByteBuffer?, end: Bool, written: (@Sendable () -> Void)? = nil) {
    guard !self.isDone, !self.ended else { return }
    if end { self.ended = true }
    if let stream = self.stream {
      stream.write(message, end: end)
      written?()
    } else if let message {
      self.pending.append((message, written))
    }
  }

  /// Completes the call once; a stream still open is reset (etcd then stops working on it).
  func finish(_ result: Result<ByteBuffer, any Error>) {
    guard !self.isDone else { return }
    self.isDone = true
    self.deadlineTask?.cancel()
    self.deadlineTask = nil
    // A failed call resets its stream; so does a stream that etcd ended while this side was
    // still open (its half-close will never be sent).
    if case .stream = self.mode { self.stream?.reset() } else if case .failure = result { self.stream?.reset() }
    self.stream = nil
    if !self.openedDone {
      self.openedDone = true
      self.opened?.fail(CancellationError())
    }
    if let member = self.member {
      self.member = nil
      member.callEnded()
    }
    self.pending = []
    self.promise.completeWith(result)
  }
}

/// A receive window (the connection's or a stream's) given back once half of it was used.
///
/// swift-nio-http2 reports the window it counts after each DATA frame. It counts a
/// WINDOW_UPDATE of ours only once it wrote it, which may be later: it holds control frames
/// while the socket takes no writes. So an increment counts as given from the moment it is
/// queued until the frame delegate says it was written (``sent(_:)``), and from then on the
/// reported window holds it. Without that, every DATA frame in such a spell would give the
/// whole window back again, and the sum would pass the window's 2^31 - 1 limit, which is a
/// connection error. (Inferring it from a rise in the reported window instead is wrong for the
/// connection: no report follows its WINDOW_UPDATE, and the next DATA frame's report is the
/// rise less that frame, so some of every increment would stay counted for good, and after
/// about a GiB the connection's window would never be given back again.)
struct DirectWindow {
  /// Increments queued and not yet written.
  private(set) var pending = 0

  /// The increment to send after a report of `inbound`, or nil.
  mutating func giveBack(inbound: Int, size: Int) -> Int? {
    let effective = inbound + self.pending
    guard effective <= size / 2 else { return nil }
    let increment = size - effective
    self.pending += increment
    return increment
  }

  /// swift-nio-http2 wrote an increment: its reports count it from now on.
  mutating func sent(_ increment: Int) {
    self.pending = max(0, self.pending - increment)
  }
}

/// A call's HTTP/2 stream on a ``DirectConnectionHandler``: the request's headers, and the
/// response read as its frames arrive: headers, length-prefixed messages (a unary call's one,
/// or each handed to a streaming call's consumer as it is whole), and trailers with
/// `grpc-status`.
final class DirectStream {
  let id: HTTP2StreamID
  private let call: DirectCall
  private let connection: DirectConnectionHandler
  /// swift-nio-http2 wrote the stream's HEADERS, and its END_STREAM; etcd sent END_STREAM or
  /// RST_STREAM.
  var headersWritten = false
  var localEnded = false
  var remoteEnded = false
  /// The stream's flow-control window, as for the connection.
  var window = DirectWindow()
  private var sawHeaders = false
  /// Response bytes not yet made into a whole message.
  private var buffer: ByteBuffer?
  /// A unary call's response message.
  private var message: ByteBuffer?
  /// How far ahead of the bytes received a large message's buffer is grown.
  static let reserveLimit = 4 << 20
  /// The capacity of the buffer holding a message not yet whole (tests).
  var bufferCapacity: Int { self.buffer?.capacity ?? 0 }

  init(id: HTTP2StreamID, call: DirectCall, connection: DirectConnectionHandler) {
    self.id = id
    self.call = call
    self.connection = connection
  }

  /// The request's HEADERS: gRPC's, the deadline as `grpc-timeout`, and the call's metadata.
  func requestHeaders(authority: String) -> HPACKHeaders {
    var headers = HPACKHeaders()
    headers.reserveCapacity(8 + self.call.metadata.count)
    headers.add(name: ":method", value: "POST")
    headers.add(name: ":scheme", value: self.call.scheme)
    headers.add(name: ":path", value: self.call.path)
    headers.add(name: ":authority", value: authority)
    headers.add(name: "content-type", value: "application/grpc")
    headers.add(name: "te", value: "trailers")
    if let timeout = self.call.timeout { headers.add(name: "grpc-timeout", value: grpcTimeout(timeout)) }
    for entry in self.call.metadata {
      if case .string(let value) = entry.value { headers.add(name: entry.key, value: value) }
    }
    return headers
  }

  /// A streaming call's next message, or its half-close.
  func write(_ message: ByteBuffer?, end: Bool) {
    self.connection.send(message ?? ByteBuffer(), end: end, on: self)
  }

  /// Ends the stream from this side (RST_STREAM CANCEL), if it is still open.
  func reset() {
    self.connection.reset(self)
  }

  /// The stream ended or failed before its call was answered.
  func failed(_ error: RPCError) {
    self.call.finish(.failure(error))
  }

  /// One frame of the response.
  func receive(_ payload: HTTP2Frame.FramePayload) {
    switch payload {
    case .headers(let frame) where frame.endStream: self.remoteEnded = true
    case .data(let frame) where frame.endStream: self.remoteEnded = true
    case .rstStream:
      self.remoteEnded = true
      self.localEnded = true  // closed: nothing more is sent on it
    default: break
    }
    guard !self.call.isDone else { return }
    switch payload {
    case .headers(let frame):
      if !self.sawHeaders {
        // An informational answer (1xx: a proxy's 103 Early Hints) precedes the response's
        // own headers and is skipped, as gRPC does; the test is swift-nio-http2's own, so the
        // two agree on which block is the response's.
        if !frame.endStream, frame.headers.first(where: { $0.name == ":status" })?.value.first == "1" { return }
        self.sawHeaders = true
        if let error = Self.checkResponseHeaders(frame.headers) {
          self.call.finish(.failure(error))
          return
        }
        if frame.endStream { self.trailers(frame.headers) }  // trailers-only
      } else {
        self.trailers(frame.headers)
      }
    case .data(let frame):
      guard case .byteBuffer(var bytes) = frame.data else { return }
      if self.buffer == nil {
        self.buffer = bytes
      } else {
        self.buffer!.writeBuffer(&bytes)
      }
      do {
        try self.takeMessages()
      } catch {
        self.call.finish(.failure(error))
        return
      }
      if frame.endStream {
        self.call.finish(.failure(RPCError(code: .internalError, message: "etcd ended the response without trailers")))
      }
    case .rstStream(let code):
      self.call.finish(.failure(Self.resetError(code)))
    default:
      break
    }
  }

  private func takeMessages() throws {
    while var buffer = self.buffer, buffer.readableBytes >= 5 {
      let start = buffer.readerIndex
      guard let compressed = buffer.getInteger(at: start, as: UInt8.self),
        let length = buffer.getInteger(at: start + 1, as: UInt32.self)
      else { return }
      guard Int(length) <= self.call.receiveLimit else {
        throw RPCError(
          code: .resourceExhausted,
          message: "the response exceeded maxReceiveMessageBytes (\(length) vs. \(self.call.receiveLimit))")
      }
      guard compressed == 0 else {
        throw RPCError(code: .internalError, message: "etcd sent a compressed message, which was not asked for")
      }
      guard buffer.readableBytes >= 5 + Int(length) else {
        let wanted = min(5 + Int(length), buffer.readableBytes + Self.reserveLimit)
        if buffer.capacity - buffer.readerIndex < wanted {
          // Fewer reallocations for a large message, but only as much as the frames bring
          // (up to 4 MiB ahead): a length prefix alone must not make the client reserve it.
          buffer.reserveCapacity(minimumWritableBytes: wanted - buffer.readableBytes)
          self.buffer = buffer
        }
        return
      }
      buffer.moveReaderIndex(forwardBy: 5)
      let message = buffer.readSlice(length: Int(length))!
      self.buffer = buffer.readableBytes == 0 ? nil : buffer
      switch self.call.mode {
      case .unary:
        guard self.message == nil else {
          throw RPCError(code: .internalError, message: "etcd sent more than one message for a unary call")
        }
        self.message = message
      case .stream(let consumer):
        try consumer(message)
      }
    }
  }

  private func trailers(_ headers: HPACKHeaders) {
    guard let statusText = headers.first(name: "grpc-status"), let raw = Int(statusText) else {
      self.call.finish(.failure(RPCError(code: .internalError, message: "etcd's response carries no grpc-status")))
      return
    }
    guard raw == 0 else {
      let message = headers.first(name: "grpc-message").map(percentDecoded) ?? ""
      let code = Status.Code(rawValue: raw).flatMap { RPCError.Code($0) } ?? .unknown
      self.call.finish(.failure(RPCError(code: code, message: message)))
      return
    }
    if self.buffer != nil {
      self.call.finish(.failure(RPCError(code: .internalError, message: "etcd's response ends in part of a message")))
      return
    }
    switch self.call.mode {
    case .unary:
      guard let message = self.message else {
        self.call.finish(.failure(RPCError(code: .internalError, message: "etcd's response carries no message")))
        return
      }
      self.message = nil
      self.call.finish(.success(message))
    case .stream:
      self.call.finish(.success(ByteBuffer()))
    }
  }

  /// gRPC's meaning of response headers that are not a gRPC response (an HTTP error).
  static func checkResponseHeaders(_ headers: HPACKHeaders) -> RPCError? {
    guard let status = headers.first(name: ":status") else {
      return RPCError(code: .internalError, message: "etcd's response has no :status")
    }
    if status == "200" {
      if let type = headers.first(name: "content-type"), type.hasPrefix("application/grpc") { return nil }
      return RPCError(code: .unknown, message: "etcd's response is not gRPC (content-type \(headers.first(name: "content-type") ?? "none"))")
    }
    let code: RPCError.Code =
      switch status {
      case "400": .internalError
      case "401": .unauthenticated
      case "403": .permissionDenied
      case "404": .unimplemented
      case "429", "502", "503", "504": .unavailable
      default: .unknown
      }
    return RPCError(code: code, message: "etcd answered with HTTP status \(status)")
  }

  /// gRPC's meaning of a RST_STREAM from the server.
  static func resetError(_ code: HTTP2ErrorCode) -> RPCError {
    switch code {
    case .refusedStream: RPCError(code: .unavailable, message: "etcd refused the stream")
    case .cancel: RPCError(code: .cancelled, message: "etcd cancelled the stream")
    case .enhanceYourCalm: RPCError(code: .resourceExhausted, message: "etcd reset the stream: ENHANCE_YOUR_CALM")
    case .inadequateSecurity: RPCError(code: .permissionDenied, message: "etcd reset the stream: INADEQUATE_SECURITY")
    default: RPCError(code: .internalError, message: "etcd reset the stream: \(code)")
    }
  }
}

/// The `grpc-timeout` header (at most 8 digits and a unit).
func grpcTimeout(_ timeout: Duration) -> String {
  let (seconds, attoseconds) = timeout.components
  let milliseconds = max(0, seconds) * 1000 + (max(0, attoseconds) + 999_999_999_999_999) / 1_000_000_000_000_000
  if milliseconds <= 99_999_999 { return "\(milliseconds)m" }
  return "\(min(seconds, 99_999_999))S"
}

/// Decodes gRPC's percent-encoded `grpc-message`.
func percentDecoded(_ text: String) -> String {
  guard text.utf8.contains(UInt8(ascii: "%")) else { return text }
  var bytes: [UInt8] = []
  bytes.reserveCapacity(text.utf8.count)
  var iterator = Array(text.utf8)[...]
  while let byte = iterator.popFirst() {
    if byte == UInt8(ascii: "%"), iterator.count >= 2,
      let value = UInt8(String(decoding: iterator.prefix(2), as: UTF8.self), radix: 16)
    {
      bytes.append(value)
      iterator = iterator.dropFirst(2)
    } else {
      bytes.append(byte)
    }
  }
  return String(decoding: bytes, as: UTF8.self)
}
