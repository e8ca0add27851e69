import EtcdTestSupport
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// What a test connection has seen so far: the bytes it read, and how it ended.
private final class ProxyTestRecord: Sendable {
  let state = Mutex<(text: String, closed: Bool, error: (any Error)?)>(("", false, nil))
  var text: String { state.withLock { $0.text } }
  var closed: Bool { state.withLock { $0.closed } }
  var error: (any Error)? { state.withLock { $0.error } }
}

/// Records what a channel reads, and its end; with `echo`, also writes back what it reads.
private final class ProxyTestHandler: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer
  let record: ProxyTestRecord
  let echo: Bool
  init(_ record: ProxyTestRecord, echo: Bool) { (self.record, self.echo) = (record, echo) }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let text = String(buffer: unwrapInboundIn(data))
    record.state.withLock { $0.text += text }
    if echo { context.writeAndFlush(data, promise: nil) }
  }
  func channelInactive(context: ChannelHandlerContext) { record.state.withLock { $0.closed = true } }
  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    record.state.withLock { $0.error = $0.error ?? error }
    context.close(promise: nil)
  }
}

/// A test connection to 127.0.0.1:port.
private struct ProxyTestClient {
  let channel: any Channel
  let record = ProxyTestRecord()

  init(port: Int) async throws {
    let record = self.record
    channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(ProxyTestHandler(record, echo: false))
        }
      }
      .connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: port)).get()
  }

  func send(_ text: String) async throws {
    try await channel.writeAndFlush(ByteBuffer(string: text))
  }
}

/// The proxy's target: an echo server that keeps a record of each connection it accepted.
private struct ProxyTestEchoServer {
  let channel: any Channel
  let records: ProxyTestRecords
  var port: Int { channel.localAddress!.port! }
  /// The server's open connections.
  var open: Int { records.all.count { !$0.closed } }
  /// The server's connections that ended in a reset.
  var resets: Int { records.all.count { ($0.error as? IOError)?.errnoCode == ECONNRESET } }

  static func start() async throws -> ProxyTestEchoServer {
    let records = ProxyTestRecords()
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .childChannelInitializer { child in
        let record = ProxyTestRecord()
        records.list.withLock { $0.append(record) }
        return child.eventLoop.makeCompletedFuture {
          try child.pipeline.syncOperations.addHandler(ProxyTestHandler(record, echo: true))
        }
      }
      .bind(host: "127.0.0.1", port: 0).get()
    return ProxyTestEchoServer(channel: channel, records: records)
  }
}

private final class ProxyTestRecords: Sendable {
  let list = Mutex<[ProxyTestRecord]>([])
  var all: [ProxyTestRecord] { list.withLock { $0 } }
}

private struct ProxyTestTimeout: Error { let what: String }

/// Waits until `condition` holds; the 60 s limit only keeps a failing test from hanging (a
/// loaded CI machine has taken 20-35 s for one of these tests).
private func eventually(_ what: String, _ condition: () -> Bool) async throws {
  let deadline = ContinuousClock.now + .seconds(60)
  while !condition() {
    guard ContinuousClock.now < deadline else { throw ProxyTestTimeout(what: what) }
    try await Task.sleep(for: .milliseconds(5))
  }
}

/// Runs `body` with an echo server and a proxy to it, and stops both afterwards.
private func withProxy(_ body: (TCPProxy, ProxyTestEchoServer) async throws -> Void) async throws {
  let echo = try await ProxyTestEchoServer.start()
  let proxy = try await TCPProxy.start(targetPort: echo.port)
  do {
    try await body(proxy, echo)
  } catch {
    await proxy.stop()
    try? await echo.channel.close()
    throw error
  }
  await proxy.stop()
  try await echo.channel.close()
}

/// Whether connecting failed with ECONNREFUSED.
private func refused(_ error: any Error) -> Bool {
  (error as? IOError)?.errnoCode == ECONNREFUSED
    || (error as? NIOConnectionError)?.connectionErrors.contains { ($0.error as? IOError)?.errnoCode == ECONNREFUSED } == true
}

@Suite("TCPProxy", .timeLimit(.minutes(3)))  // bounds a hang only: on a loaded CI machine each test here took 20-35 s
struct TCPProxyTests {
  @Test("pass forwards both ways")
  func passes() async throws {
    try await withProxy { proxy, _ in
      #expect(proxy.endpoint == "http://127.0.0.1:\(proxy.port)")
      let client = try await ProxyTestClient(port: proxy.port)
      try await client.send("hello")
      try await eventually("echo") { client.record.text == "hello" }
      #expect(proxy.accepted == 1)
      #expect(proxy.open == 1)
    }
  }

  @Test("delay holds each chunk back, in both directions, in order")
  func delays() async throws {
    try await withProxy { proxy, _ in
      let client = try await ProxyTestClient(port: proxy.port)
      proxy.delay(.milliseconds(200))
      let start = ContinuousClock.now
      try await client.send("ping")
      try await eventually("delayed echo") { client.record.text == "ping" }
      // 200 ms on the way to the target and 200 ms on the way back.
      #expect(ContinuousClock.now - start >= .milliseconds(400))

      // With jitter, later chunks still never overtake earlier ones.
      proxy.delay(.milliseconds(20), jitter: .milliseconds(20))
      let numbers = (0..<40).map { "\($0)," }
      for number in numbers {
        try await client.send(number)
        try await Task.sleep(for: .milliseconds(1))
      }
      proxy.pass()  // what is still queued keeps its place ahead of new chunks
      try await client.send("end")
      let expected = "ping" + numbers.joined() + "end"
      try await eventually("jittered echo") { client.record.text.count >= expected.count }
      #expect(client.record.text == expected)
    }
  }

  @Test("blackhole drops bytes but keeps connections open; pass resumes without replay")
  func blackholes() async throws {
    try await withProxy { proxy, echo in
      let first = try await ProxyTestClient(port: proxy.port)
      let third = try await ProxyTestClient(port: proxy.port)
      try await first.send("a")
      try await third.send("a")
      try await eventually("echo") { first.record.text == "a" && third.record.text == "a" }

      proxy.blackhole()
      try await first.send("lost")
      let second = try await ProxyTestClient(port: proxy.port)  // accepted, and black-holed too
      try await second.send("lost too")
      try await third.channel.close()  // the partition hides a close too
      try await Task.sleep(for: .milliseconds(500))
      for client in [first, second] {
        #expect(!client.record.closed)
        #expect(client.record.error == nil)
        #expect(client.channel.isActive)
      }
      #expect(first.record.text == "a")
      #expect(second.record.text == "")
      // The proxy sees the third client's close once its event loop gets to it (a loaded
      // machine can take longer than the 500 ms above); the echo side never does.
      try await eventually("the proxy saw the close") { proxy.open == 2 }
      // A connection accepted under load is read only once its target connection is up: wait
      // until the proxy has read (and dropped) both sends, or `pass()` below would forward them.
      try await eventually("both sends dropped") { proxy.droppedBytes == "lost".utf8.count + "lost too".utf8.count }
      // The echo server accepts the second connection on its own event loop: the proxy's
      // connect can complete before the echo side has recorded it.
      try await eventually("the echo server holds all three") { echo.open == 3 }
      #expect(echo.records.all.allSatisfy { $0.error == nil })

      proxy.pass()
      try await first.send("b")
      try await second.send("c")
      try await eventually("echo after pass") { first.record.text == "ab" && second.record.text == "c" }
    }
  }

  @Test("resetAll resets both sides; new connections still work")
  func resets() async throws {
    try await withProxy { proxy, echo in
      let client = try await ProxyTestClient(port: proxy.port)
      try await client.send("x")
      try await eventually("echo") { client.record.text == "x" && echo.open == 1 }

      proxy.resetAll()
      try await eventually("client side closed") { client.record.closed }
      try await eventually("target side closed") { echo.open == 0 }
      #expect((client.record.error as? IOError)?.errnoCode == ECONNRESET)
      #expect(echo.resets == 1)
      try await eventually("proxy forgot it") { proxy.open == 0 }

      let again = try await ProxyTestClient(port: proxy.port)
      try await again.send("y")
      try await eventually("echo on a new connection") { again.record.text == "y" }
      #expect(proxy.accepted == 2)
    }
  }

  @Test("refuse closes the port until pass listens on it again")
  func refuses() async throws {
    try await withProxy { proxy, echo in
      let client = try await ProxyTestClient(port: proxy.port)
      try await client.send("x")
      try await eventually("echo") { client.record.text == "x" }

      try await proxy.refuse()
      try await eventually("open connection reset") { client.record.closed && echo.open == 0 }
      await #expect { try await ProxyTestClient(port: proxy.port) } throws: { refused($0) }

      proxy.pass()
      let again = try await ProxyTestClient(port: proxy.port)
      try await again.send("y")
      try await eventually("echo after pass") { again.record.text == "y" }
    }
  }

  @Test("stop closes the listener and every connection")
  func stops() async throws {
    try await withProxy { proxy, echo in
      let client = try await ProxyTestClient(port: proxy.port)
      try await client.send("x")
      try await eventually("echo") { client.record.text == "x" }

      await proxy.stop()
      try await eventually("client side closed") { client.record.closed }
      try await eventually("target side closed") { echo.open == 0 }
      #expect(proxy.open == 0)
      await #expect { try await ProxyTestClient(port: proxy.port) } throws: { refused($0) }
      proxy.pass()  // no effect once stopped
      await #expect { try await ProxyTestClient(port: proxy.port) } throws: { refused($0) }
    }
  }
}
