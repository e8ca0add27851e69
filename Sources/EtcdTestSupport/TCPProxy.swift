import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A TCP proxy on 127.0.0.1 that forwards to a target and injects faults on command.
///
/// Modelled on etcd's test proxy (`pkg/proxy`): pass, delay, black-hole and reset, plus refuse.
/// Each accepted connection gets its own connection to the target on the same event loop, and
/// the current mode is read for every chunk, so a mode change applies to open connections at once.
public final class TCPProxy: Sendable {
  enum Mode: Sendable {
    case pass, blackhole
    case delay(Duration, jitter: Duration)
  }

  private struct State {
    var mode = Mode.pass
    var listener: EventLoopFuture<any Channel>?
    var refused = false
    var stopped = false
    var accepted = 0
    var dropped = 0
    var conns: [ObjectIdentifier: (channel: any Channel, client: Bool)] = [:]
  }

  private let state = Mutex(State())
  let targetHost: String
  let targetPort: Int
  /// The port the proxy listens on (kept across `refuse()` and `pass()`).
  public let port: Int
  /// The proxy's address as an etcd endpoint, `http://127.0.0.1:PORT`.
  public var endpoint: String { "http://127.0.0.1:\(port)" }
  /// How many client connections the proxy has accepted so far.
  public var accepted: Int { state.withLock { $0.accepted } }
  /// How many client connections are open now.
  public var open: Int { state.withLock { $0.conns.values.count(where: \.client) } }
  /// How many bytes a black-hole has dropped so far (both directions).
  public var droppedBytes: Int { state.withLock { $0.dropped } }
  var mode: Mode { state.withLock { $0.mode } }

  /// Counts bytes a black-hole dropped.
  func countDropped(_ bytes: Int) { state.withLock { $0.dropped += bytes } }

  private init(targetHost: String, targetPort: Int, port: Int) {
    self.targetHost = targetHost
    self.targetPort = targetPort
    self.port = port
  }

  /// Listens on 127.0.0.1:listenPort (0 = a free port) and forwards each connection to target host:port.
  public static func start(
    targetHost: String = "127.0.0.1", targetPort: Int, listenPort: Int = 0
  ) async throws -> TCPProxy {
    let (fd, port) = try listenSocket(port: listenPort)
    let proxy = TCPProxy(targetHost: targetHost, targetPort: targetPort, port: port)
    let listener = proxy.serve(fd)
    proxy.state.withLock { $0.listener = listener }
    _ = try await listener.get()
    return proxy
  }

  /// Forward normally (also ends a black-hole: buffered bytes are NOT replayed, they were dropped).
  /// After `refuse()` it listens again on the same port before returning.
  public func pass() {
    state.withLock { s in
      s.mode = .pass
      // The socket listens before this returns, so a connect right after `pass()` succeeds.
      guard s.refused, !s.stopped, let fd = try? Self.listenSocket(port: port).fd else { return }
      s.refused = false
      s.listener = serve(fd)
    }
  }

  /// Delay every chunk in both directions by `latency` (± jitter); chunks keep their order.
  public func delay(_ latency: Duration, jitter: Duration = .zero) {
    state.withLock { $0.mode = .delay(latency, jitter: jitter) }
  }

  /// Black-hole: keep every connection open but silently drop all bytes both ways (no RST, no FIN),
  /// the network partition that only keepalives can detect. New connections are accepted and
  /// black-holed too, and a side that closes meanwhile is not reported to the other.
  public func blackhole() {
    state.withLock { $0.mode = .blackhole }
  }

  /// Reset every open connection (SO_LINGER 0, then close: RST to both sides); new connections
  /// keep being accepted and forwarded per the current mode.
  public func resetAll() {
    let channels = state.withLock { $0.conns.values.map(\.channel) }
    // Both channels of a pair share an event loop, whose tasks run in order: every linger is set
    // before the first close, so the close one side passes to the other also resets.
    for channel in channels {
      channel.eventLoop.execute {
        _ = (channel as? any SocketOptionProvider)?.setSoLinger(linger(l_onoff: 1, l_linger: 0))
      }
    }
    for channel in channels { channel.eventLoop.execute { channel.close(promise: nil) } }
  }

  /// Refuse: close the listener so new connections get ECONNREFUSED, and reset open ones;
  /// `pass()` listens on the same port again.
  public func refuse() async throws {
    let listener = state.withLock { s in
      s.refused = true
      defer { s.listener = nil }
      return s.listener
    }
    defer { resetAll() }
    try await listener?.get().close()
  }

  /// Stops listening and closes every connection.
  public func stop() async {
    let (listener, channels) = state.withLock { s in
      s.stopped = true
      defer { s.listener = nil }
      return (s.listener, s.conns.values.map(\.channel))
    }
    try? await listener?.get().close()
    for channel in channels {
      channel.close(promise: nil)
      try? await channel.closeFuture.get()
    }
  }

  /// Tracks an open channel until it closes; false (and the channel is closed) once stopped.
  func track(_ channel: any Channel, client: Bool) -> Bool {
    let id = ObjectIdentifier(channel)
    let ok = state.withLock { s in
      guard !s.stopped else { return false }
      if client { s.accepted += 1 }
      s.conns[id] = (channel, client)
      return true
    }
    guard ok else { channel.close(promise: nil); return false }
    channel.closeFuture.whenComplete { [self] _ in _ = state.withLock { $0.conns.removeValue(forKey: id) } }
    return true
  }

  private func serve(_ fd: CInt) -> EventLoopFuture<any Channel> {
    ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .childChannelOption(ChannelOptions.autoRead, value: false)  // until the target is connected
      .childChannelInitializer { [self] channel in
        guard track(channel, client: true) else { return channel.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
        return channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(Glue(proxy: self, peer: nil))
        }
      }
      .withBoundSocket(fd)
  }

  /// A listening socket on 127.0.0.1:port (SO_REUSEADDR, so a refused port can be taken back).
  private static func listenSocket(port: Int) throws -> (fd: CInt, port: Int) {
    let fd = socket(AF_INET, CInt(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(port).bigEndian
    addr.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
    var one: CInt = 1
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size)) == 0
      && withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
      }
      && listen(fd, 128) == 0
    guard ok else {
      let code = errno
      close(fd)
      throw IOError(errnoCode: code, reason: "listen on 127.0.0.1:\(port)")
    }
    return (fd, Int(UInt16(bigEndian: addr.sin_port)))
  }
}

/// Forwards what one channel reads to its peer, per the proxy's mode. The client side's handler
/// starts with no peer and connects to the target when the client connection becomes active.
private final class Glue: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer

  let proxy: TCPProxy
  var peer: (any Channel)?
  /// Chunks waiting for their time, in arrival order: a chunk never overtakes the ones before it.
  var queue = CircularBuffer<(due: NIODeadline, data: ByteBuffer)>()
  var scheduled = false
  var closePeerWhenDrained = false

  init(proxy: TCPProxy, peer: (any Channel)?) {
    self.proxy = proxy
    self.peer = peer
  }

  func channelActive(context: ChannelHandlerContext) {
    context.fireChannelActive()
    guard peer == nil else { return }
    let client = context.channel, proxy = self.proxy
    ClientBootstrap(group: context.eventLoop)
      .channelInitializer { target in
        target.eventLoop.makeCompletedFuture {
          try target.pipeline.syncOperations.addHandler(Glue(proxy: proxy, peer: client))
        }
      }
      .connect(host: proxy.targetHost, port: proxy.targetPort)
      .assumeIsolated()
      .whenComplete { result in
        switch result {
        case .success(let target):
          guard proxy.track(target, client: false) else { return client.close(promise: nil) }
          guard client.isActive else { return target.close(promise: nil) }
          self.peer = target
          client.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in client.close(promise: nil) }
        case .failure:
          client.close(promise: nil)
        }
      }
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard let peer else { return }
    var wait = TimeAmount.zero
    switch proxy.mode {
    case .blackhole: return proxy.countDropped(unwrapInboundIn(data).readableBytes)
    case .pass: break
    case .delay(let latency, let jitter):
      let j = nanoseconds(jitter)
      wait = .nanoseconds(max(0, nanoseconds(latency) + (j > 0 ? Int64.random(in: -j...j) : 0)))
    }
    // The peer closed during a black-hole, when closes are not passed on: pass this one on now.
    guard peer.isActive else { return context.close(promise: nil) }
    queue.append((.now() + wait, unwrapInboundIn(data)))
    drain(context.eventLoop)
  }

  /// Writes the chunks at the head that are due (drops them if black-holed now), then waits for the next.
  func drain(_ loop: any EventLoop) {
    guard let peer, !scheduled else { return }
    let now = NIODeadline.now()
    let drop = if case .blackhole = proxy.mode { true } else { false }
    var wrote = false
    while let first = queue.first, first.due <= now {
      queue.removeFirst()
      if drop {
        proxy.countDropped(first.data.readableBytes)
      } else {
        peer.write(first.data, promise: nil)
        wrote = true
      }
    }
    if wrote { peer.flush() }
    if let next = queue.first {
      scheduled = true
      loop.assumeIsolated().scheduleTask(deadline: next.due) {
        self.scheduled = false
        self.drain(loop)
      }
    } else if closePeerWhenDrained {
      peer.close(promise: nil)
    }
  }

  func channelInactive(context: ChannelHandlerContext) {
    context.fireChannelInactive()
    guard let peer else { return }
    if case .blackhole = proxy.mode { return }  // a partition hides the close too
    if queue.isEmpty { peer.close(promise: nil) } else { closePeerWhenDrained = true }
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    context.close(promise: nil)
  }

  private func nanoseconds(_ d: Duration) -> Int64 {
    d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000
  }
}
