import Foundation
import EtcdTestSupport
import NIOCore
import NIOEmbedded
import NIOHTTP2
import Testing

@testable import EtcdClient

/// What DirectTransport's review found it did differently from the grpc-swift-2 path (each
/// test runs both paths; `direct: false` is the control), fixed in b38242a.
@Suite("DirectTransport: the grpc-swift-2 path's failover kept", .serialized) struct DirectTransportFailoverTests {
  /// A member that accepts TCP but never speaks HTTP/2 (a SIGSTOPped etcd, or one still
  /// replaying its WAL: the kernel accepts into the backlog) must get no calls while another
  /// member answers. grpc-swift-2 counts a connection ready only at the server's first
  /// SETTINGS frame; DirectConnectionEvents calls a plaintext connection ready at TCP connect.
  @Test(arguments: [false, true]) func aMemberThatAcceptsButNeverAnswersGetsNoCalls(direct: Bool) async throws {
    try await EtcdServer.with { server in
      let frozen = try await TCPProxy.start(targetPort: server.clientPort)
      frozen.blackhole()
      var configuration = server.configuration()
      configuration.endpoints.insert(EtcdEndpoint(host: "127.0.0.1", port: frozen.port), at: 0)
      configuration.requestTimeout = .seconds(2)
      configuration.directUnaryCalls = direct
      var failures: [String] = []
      try await withEtcdClient(configuration) { etcd in
        for i in 0..<6 {
          do {
            try await etcd.put("/frozen/\(i)", "\(i)")
          } catch {
            failures.append("put \(i): \(error)")
          }
          do {
            _ = try await etcd.get(.key("/frozen/\(i)"))
          } catch {
            failures.append("get \(i): \(error)")
          }
        }
        frozen.pass()
        frozen.resetAll()
      }
      await frozen.stop()
      #expect(failures.isEmpty, "direct=\(direct): \(failures)")
    }
  }

  /// A watch waiting for a member (etcd unreachable) has written nothing, so its create
  /// deadline must not run: WatchHub's own doc says so, and the grpc-swift-2 path calls
  /// `createWritten` only after `writer.write`, which runs once the stream is open. The direct
  /// path calls `onWrite` as soon as the request is queued, so the wait counts as protocol
  /// violations (etcsync_watch_protocol_violations_total) and restarts the stream.
  @Test(arguments: [false, true]) func aWatchWaitingForAMemberIsNoProtocolViolation(direct: Bool) async throws {
    try await EtcdServer.with { server in
      let proxy = try await TCPProxy.start(targetPort: server.clientPort)
      try await proxy.refuse()
      var configuration = server.configuration()
      configuration.endpoints = [EtcdEndpoint(host: "127.0.0.1", port: proxy.port)]
      configuration.requestTimeout = .seconds(1)
      configuration.directUnaryCalls = direct
      let revision = try await withEtcdClient(server.configuration()) { try await $0.get(.key("/none")).header.revision }
      try await withEtcdClient(configuration) { etcd in
        let stream = etcd.watch(.prefix("/waiting/"), options: WatchOptions(startRevision: revision + 1))
        try await Task.sleep(for: .seconds(4))
        #expect(etcd.watchProtocolViolations == 0, "direct=\(direct)")
        proxy.pass()
        try await withEtcdClient(server.configuration()) { try await $0.put("/waiting/a", "1") }
        var iterator = stream.makeAsyncIterator()
        let first = try await iterator.next()
        #expect(first?.events.first?.kv.keyString == "/waiting/a")
      }
      await proxy.stop()
    }
  }

  /// A stream-level error wrapped as NIOHTTP2Errors.StreamError does not close the connection
  /// and every other call on it, as grpc-swift-2's ClientConnectionHandler ignores it. (Most of
  /// swift-nio-http2's inbound stream errors reach the connection's pipeline unwrapped; the
  /// grpc-swift-2 path closes the connection on them, DirectTransport does not since it drives
  /// the HTTP/2 handler itself: DirectConnectionPairTests.aBrokenStreamFailsOnlyItsOwnCall, with
  /// the short body against content-length the second review used.)
  @Test func aStreamErrorDoesNotCloseTheConnection() throws {
    let loop = EmbeddedEventLoop()
    let channel = EmbeddedChannel(loop: loop)
    let configuration = try EtcdConfiguration(endpoints: ["127.0.0.1:2379"])
    let member = DirectMember(
      endpoint: configuration.endpoints[0], eventLoop: loop, security: try DirectSecurity(configuration),
      keepalive: .init(interval: .seconds(10), timeout: .seconds(5)), dialTimeout: .seconds(1), installsLiveness: false)
    try channel.pipeline.syncOperations.addHandler(
      DirectConnectionHandler(member: member, ready: loop.makePromise(), waitsForTLS: false))
    try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 2379)).wait()
    channel.pipeline.fireErrorCaught(
      NIOHTTP2Errors.streamError(streamID: 3, baseError: NIOHTTP2Errors.contentLengthViolated()))
    loop.run()
    #expect(channel.isActive, "one stream's error closed the whole connection")
    _ = try? channel.finish()
  }

  /// Cancelling run() is documented to shut the client down; a keep-alive already streaming
  /// must then stop renewing (the grpc path's behaviour), so the lease expires.
  @Test(arguments: [false, true]) func cancellingRunStopsKeepAlive(direct: Bool) async throws {
    try await EtcdServer.with { server in
      var configuration = server.configuration()
      configuration.directUnaryCalls = direct
      let client = try EtcdClient(configuration: configuration)
      let runner = Task { try await client.run() }
      let lease = try await client.grant(ttl: 2)
      let keeper = Task { () -> (Int, String) in
        var renewals = 0
        do {
          for try await _ in client.keepAlive(lease) { renewals += 1 }
        } catch {
          return (renewals, "\(error)")
        }
        return (renewals, "ended")
      }
      try await Task.sleep(for: .seconds(2))
      runner.cancel()
      _ = try? await runner.value
      try await Task.sleep(for: .seconds(5))
      let ttl = try await withEtcdClient(server.configuration()) { try await $0.timeToLive(lease.id).ttl }
      client.shutdown()
      let outcome = await keeper.value
      #expect(ttl == -1, "direct=\(direct): lease still alive 5 s after run() was cancelled (ttl \(ttl)); keeper: \(outcome)")
    }
  }
}

/// TLS refusals the grpc path makes, the direct path makes too.
@Suite("DirectTransport: TLS refusals") struct DirectTransportTLSRefusalTests {
  /// One endpoint by IP, no serverName, a certificate that names only `localhost`: refused.
  @Test(arguments: [false, true]) func anIPEndpointWhoseCertificateLacksTheIPIsRefused(direct: Bool) async throws {
    try await EtcdServer.with(tls: true, serverNames: "DNS:localhost") { server in
      var configuration = server.configuration()
      configuration.tls?.serverName = nil
      configuration.requestTimeout = .seconds(2)
      configuration.directUnaryCalls = direct
      try await withEtcdClient(configuration) { etcd in
        await #expect(throws: EtcdError.self, "direct=\(direct)") { _ = try await etcd.get(.key("/x")) }
      }
      // The same certificate, asked for the wrong shared name: refused.
      configuration = server.configuration()
      configuration.tls?.serverName = "other.example"
      configuration.requestTimeout = .seconds(2)
      configuration.directUnaryCalls = direct
      try await withEtcdClient(configuration) { etcd in
        await #expect(throws: EtcdError.self, "direct=\(direct)") { _ = try await etcd.get(.key("/x")) }
      }
    }
  }
}

/// A 5-byte length prefix must not make the client reserve the whole announced length before
/// any of it arrived: with the default maxReceiveMessageBytes (2 GiB - 1) one DATA frame from
/// a broken or hostile server would reserve 2 GiB per call, which on a host with less memory
/// than that (or vm.overcommit_memory=2) traps in ByteBuffer's realloc. The buffer grows at
/// most 4 MiB ahead of the bytes received.
@Test func aLengthPrefixAloneReservesNoMemory() throws {
  let h = try DirectStreamHandlerTests.Harness(mode: .unary(DirectStreamHandlerTests.framed([])), receiveLimit: Int(Int32.max))
  try h.headers(DirectStreamHandlerTests.ok)
  try h.data([0, 0x7f, 0xff, 0xff, 0xf0, 1])
  #expect(h.stream.bufferCapacity <= 2 * DirectStream.reserveLimit)  // ByteBuffer rounds up to a power of two
  #expect(h.stream.bufferCapacity > 1024, "a large message's buffer is still grown ahead")
  _ = try? h.channel.finish()
}
