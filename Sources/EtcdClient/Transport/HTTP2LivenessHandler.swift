import NIOCore

/// A channel handler placed just before `NIOHTTP2Handler` (after TLS, when TLS is used) that
/// keeps an HTTP/2 connection to etcd alive and honest.
///
/// 1. **Answers the server's PINGs itself.** etcd's gRPC server (grpc-go) sends a PING for
///    nearly every request message it receives, for BDP estimation. swift-nio-http2 closes a
///    connection that receives more than 200 PING/SETTINGS frames in 30 s, and the gRPC
///    transport exposes no setting for that limit, so a busy client would lose its
///    connection (and every watch on it) about every 200 requests. This handler removes
///    non-ACK PINGs on stream 0 from the inbound byte stream and writes the ACK itself.
/// 2. **Runs the client keepalive.** grpc-swift-nio-transport 2.9.2 stops its keepalive timer
///    when the last stream closes and restarts it only on a keepalive ACK, so a watch opened
///    after the first RPC finished would never be protected. This handler sends its own PING
///    every `interval` while at least one stream is open (etcd refuses pings more often than
///    every 5 s and pings with no stream open), and closes the connection when no ACK arrives
///    within `timeout`. Open streams are counted from the frame headers seen in both
///    directions.
///
/// 3. **Sends its PING answers with the next request.** With `ackDelay`, an answer waits up to
///    that long for the next flush (the next request's) instead of a write of its own, so etcd
///    gets one segment per request, not two (docs/benchmarks.md).
///
/// Frames span reads: payload bytes are forwarded as they arrive, and only an incomplete
/// frame header or an incomplete PING frame is held back. PING ACKs not sent by this
/// handler, PINGs whose length is not 8 and PINGs on a non-zero stream pass through untouched.
final class HTTP2LivenessHandler: ChannelDuplexHandler, RemovableChannelHandler {
  typealias InboundIn = ByteBuffer
  typealias InboundOut = ByteBuffer
  typealias OutboundIn = IOData
  typealias OutboundOut = IOData

  /// Keepalive settings; `nil` disables the client keepalive (PINGs are still answered).
  struct Keepalive {
    var interval: TimeAmount
    var timeout: TimeAmount
  }

  private var inbound = FrameCursor()
  private var outbound = FrameCursor()
  /// Bytes of an incomplete frame header or PING frame, waiting for the next read.
  private var held: ByteBuffer?
  private var flushPending = false
  private var openStreams = Set<UInt32>()

  private let keepalive: Keepalive?
  private let pingData: UInt64
  private var keepaliveTask: RepeatedTask?
  private var timeoutTask: Scheduled<Void>?
  /// Whether a keepalive PING is waiting for its ACK.
  private var awaitingAck = false

  /// Keepalive PINGs sent, ACKs received and server PINGs answered, for tests and metrics.
  private(set) var counters = Counters()
  struct Counters { var pingsAnswered = 0, keepalivesSent = 0, keepaliveAcks = 0 }

  /// How long an answer to etcd's PING may wait for the next write (nil: flushed at the end of
  /// the read that brought the PING).
  private let ackDelay: TimeAmount?
  private var delayedFlush: Scheduled<Void>?

  init(keepalive: Keepalive?, pingData: UInt64 = .random(in: 1 ... .max), ackDelay: TimeAmount? = nil) {
    self.keepalive = keepalive
    self.pingData = pingData
    self.ackDelay = ackDelay
  }

  /// The client connection preface (RFC 9113 §3.4) that precedes the first outbound frame.
  static let clientPreface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

  func handlerAdded(context: ChannelHandlerContext) {
    if context.channel.isActive {
      self.startKeepalive(context: context)
    } else {
      // Added before the connection starts: the HTTP/2 handler's first write is the preface.
      self.outbound.startPayload(Self.clientPreface.count)
    }
  }

  func channelActive(context: ChannelHandlerContext) {
    self.startKeepalive(context: context)
    context.fireChannelActive()
  }

  func handlerRemoved(context: ChannelHandlerContext) { self.stopTimers() }

  func channelInactive(context: ChannelHandlerContext) {
    self.stopTimers()
    context.fireChannelInactive()
  }

  /// The keepalive, and a held PING answer's flush (nothing to send once the channel closed).
  private func stopTimers() {
    self.stopKeepalive()
    self.delayedFlush?.cancel()
    self.delayedFlush = nil
  }

  // MARK: Inbound

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    var input = self.unwrapInboundIn(data)
    if var held = self.held {
      held.writeBuffer(&input)
      input = held
      self.held = nil
    }
    var runStart = input.readerIndex
    var index = input.readerIndex
    let end = input.writerIndex

    while index < end {
      if self.inbound.payloadRemaining > 0 {
        index += self.inbound.skipPayload(available: end - index)
        continue
      }
      guard end - index >= FrameHeader.size else { break }
      let header = FrameHeader(input, at: index)
      if header.isPingCandidate {
        guard end - index >= FrameHeader.size + 8 else { break }
        let payload = input.getInteger(at: index + FrameHeader.size, as: UInt64.self)!
        let ours = header.isAck && payload == self.pingData && self.awaitingAck
        if !header.isAck || ours {
          self.forward(input, from: runStart, to: index, context: context)
          index += FrameHeader.size + 8
          runStart = index
          if ours { self.receivedKeepaliveAck() } else { self.answerPing(payload, context: context) }
          continue
        }
      }
      self.observeInbound(header)
      self.inbound.startPayload(header.length)
      index += FrameHeader.size
    }
    self.forward(input, from: runStart, to: index, context: context)
    if index < end {
      self.held = input.getSlice(at: index, length: end - index)
    }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    if self.flushPending {
      self.flushPending = false
      if let delay = self.ackDelay {
        // The ACK is written; whichever flush comes first (the next request's, or this timer)
        // sends it.
        if self.delayedFlush == nil {
          let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
          self.delayedFlush = context.eventLoop.scheduleTask(in: delay) {
            let (handler, context) = loopBound.value
            handler.delayedFlush = nil
            context.flush()
          }
        }
      } else {
        context.flush()
      }
    }
    context.fireChannelReadComplete()
  }

  func flush(context: ChannelHandlerContext) {
    if let delayed = self.delayedFlush {
      delayed.cancel()
      self.delayedFlush = nil
    }
    context.flush()
  }

  private func forward(_ buffer: ByteBuffer, from start: Int, to end: Int, context: ChannelHandlerContext) {
    guard end > start else { return }
    let slice = buffer.getSlice(at: start, length: end - start)!
    context.fireChannelRead(self.wrapInboundOut(slice))
  }

  private func answerPing(_ payload: UInt64, context: ChannelHandlerContext) {
    context.write(self.wrapOutboundOut(.byteBuffer(Self.pingFrame(payload, ack: true, allocator: context.channel.allocator))), promise: nil)
    self.flushPending = true
    self.counters.pingsAnswered += 1
  }

  private func observeInbound(_ header: FrameHeader) {
    switch header.type {
    case FrameHeader.data, FrameHeader.headers:
      if header.flags & FrameHeader.endStream != 0 { self.openStreams.remove(header.streamID) }
    case FrameHeader.rstStream:
      self.openStreams.remove(header.streamID)
    default:
      break
    }
  }

  // MARK: Outbound

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    if case .byteBuffer(let buffer) = self.unwrapOutboundIn(data) {
      self.observeOutbound(buffer)
    }
    context.write(data, promise: promise)
  }

  private func observeOutbound(_ buffer: ByteBuffer) {
    var index = buffer.readerIndex
    let end = buffer.writerIndex
    while index < end {
      if self.outbound.payloadRemaining > 0 {
        index += self.outbound.skipPayload(available: end - index)
        continue
      }
      // Header bytes may arrive split across writes; collect them in the cursor.
      let taken = self.outbound.collectHeader(buffer, at: index, end: end)
      index += taken
      guard let header = self.outbound.takeHeader() else { continue }
      switch header.type {
      case FrameHeader.headers where header.streamID % 2 == 1:
        self.openStreams.insert(header.streamID)
      case FrameHeader.rstStream:
        self.openStreams.remove(header.streamID)
      default:
        break
      }
      self.outbound.startPayload(header.length)
    }
  }

  // MARK: Keepalive

  private func startKeepalive(context: ChannelHandlerContext) {
    guard let keepalive = self.keepalive, self.keepaliveTask == nil else { return }
    let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
    self.keepaliveTask = context.eventLoop.scheduleRepeatedTask(
      initialDelay: keepalive.interval, delay: keepalive.interval
    ) { _ in
      let (handler, context) = loopBound.value
      handler.keepaliveTick(context: context)
    }
  }

  private func stopKeepalive() {
    self.keepaliveTask?.cancel()
    self.keepaliveTask = nil
    self.timeoutTask?.cancel()
    self.timeoutTask = nil
  }

  private func keepaliveTick(context: ChannelHandlerContext) {
    guard let keepalive = self.keepalive, !self.awaitingAck, !self.openStreams.isEmpty,
          context.channel.isActive else { return }
    self.awaitingAck = true
    self.counters.keepalivesSent += 1
    let frame = Self.pingFrame(self.pingData, ack: false, allocator: context.channel.allocator)
    context.writeAndFlush(self.wrapOutboundOut(.byteBuffer(frame)), promise: nil)
    let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
    self.timeoutTask = context.eventLoop.scheduleTask(in: keepalive.timeout) {
      let (handler, context) = loopBound.value
      handler.keepaliveExpired(context: context)
    }
  }

  private func receivedKeepaliveAck() {
    self.awaitingAck = false
    self.counters.keepaliveAcks += 1
    self.timeoutTask?.cancel()
    self.timeoutTask = nil
  }

  private func keepaliveExpired(context: ChannelHandlerContext) {
    guard self.awaitingAck else { return }
    // No ACK in time: the peer is stopped or the network is black-holed. Closing the channel
    // fails every stream on it with UNAVAILABLE, and gRPC reconnects (to another endpoint).
    self.stopKeepalive()
    context.close(promise: nil)
  }

  static func pingFrame(_ payload: UInt64, ack: Bool, allocator: ByteBufferAllocator) -> ByteBuffer {
    var buffer = allocator.buffer(capacity: FrameHeader.size + 8)
    buffer.writeInteger(UInt8(0)); buffer.writeInteger(UInt16(8))  // 24-bit length = 8
    buffer.writeInteger(FrameHeader.ping)
    buffer.writeInteger(ack ? FrameHeader.ackFlag : UInt8(0))
    buffer.writeInteger(UInt32(0))
    buffer.writeInteger(payload)
    return buffer
  }
}

/// The fixed 9-byte HTTP/2 frame header (RFC 9113 §4.1).
struct FrameHeader: Equatable {
  static let size = 9
  static let data: UInt8 = 0x0, headers: UInt8 = 0x1, rstStream: UInt8 = 0x3, ping: UInt8 = 0x6
  static let ackFlag: UInt8 = 0x1, endStream: UInt8 = 0x1

  var length: Int
  var type: UInt8
  var flags: UInt8
  var streamID: UInt32

  init(length: Int, type: UInt8, flags: UInt8, streamID: UInt32) {
    self.length = length
    self.type = type
    self.flags = flags
    self.streamID = streamID
  }

  /// Reads a header at an absolute index inside the buffer's readable bytes.
  init(_ buffer: ByteBuffer, at index: Int) {
    let high = Int(buffer.getInteger(at: index, as: UInt8.self)!)
    let low = Int(buffer.getInteger(at: index + 1, as: UInt16.self)!)
    self.length = high << 16 | low
    self.type = buffer.getInteger(at: index + 3, as: UInt8.self)!
    self.flags = buffer.getInteger(at: index + 4, as: UInt8.self)!
    self.streamID = buffer.getInteger(at: index + 5, as: UInt32.self)! & 0x7FFF_FFFF
  }

  init(bytes: [UInt8]) {
    self.length = Int(bytes[0]) << 16 | Int(bytes[1]) << 8 | Int(bytes[2])
    self.type = bytes[3]
    self.flags = bytes[4]
    self.streamID = (UInt32(bytes[5]) << 24 | UInt32(bytes[6]) << 16 | UInt32(bytes[7]) << 8 | UInt32(bytes[8])) & 0x7FFF_FFFF
  }

  var isAck: Bool { self.flags & Self.ackFlag != 0 }
  /// A PING this handler may act on: 8-byte payload on stream 0.
  var isPingCandidate: Bool { self.type == Self.ping && self.length == 8 && self.streamID == 0 }
}

/// Position within a stream of HTTP/2 frames: how much payload of the current frame is left,
/// and (for streams we only observe) the bytes of a header split across writes.
struct FrameCursor {
  private(set) var payloadRemaining = 0
  private var headerBytes: [UInt8] = []

  mutating func startPayload(_ length: Int) { self.payloadRemaining = length }

  /// Consumes up to `available` payload bytes; returns how many were consumed.
  mutating func skipPayload(available: Int) -> Int {
    let n = min(self.payloadRemaining, available)
    self.payloadRemaining -= n
    return n
  }

  /// Copies header bytes from `buffer[index..<end]` until 9 are collected; returns the count taken.
  mutating func collectHeader(_ buffer: ByteBuffer, at index: Int, end: Int) -> Int {
    let n = min(FrameHeader.size - self.headerBytes.count, end - index)
    self.headerBytes += buffer.getBytes(at: index, length: n)!
    return n
  }

  /// The collected header, once complete.
  mutating func takeHeader() -> FrameHeader? {
    guard self.headerBytes.count == FrameHeader.size else { return nil }
    defer { self.headerBytes.removeAll(keepingCapacity: true) }
    return FrameHeader(bytes: self.headerBytes)
  }
}
