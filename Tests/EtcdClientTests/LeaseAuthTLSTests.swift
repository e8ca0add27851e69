import EtcdClient
import EtcdTestSupport
import Foundation
import Synchronization
import Testing

/// The error a keep-alive stream ends with, iterated to its end (nil if it just finishes).
func endingError(of stream: LeaseKeepAliveStream) async -> EtcdError? {
  do {
    for try await _ in stream {}
    return nil
  } catch {
    return error as? EtcdError
  }
}

/// Set once, read from any task.
final class RenewalFlag: Sendable {
  private let value = Mutex(false)
  func set() { value.withLock { $0 = true } }
  var isSet: Bool { value.withLock { $0 } }
}

@Suite("Lease against a real etcd") struct LeaseTests {
  @Test func grantTimeToLiveLeasesAndRevoke() async throws {
    try await withEtcd { etcd, _ in
      let lease = try await etcd.grant(ttl: 30)
      #expect(lease.ttl == 30)
      try await etcd.put("/l/a", "1", options: PutOptions(lease: lease.id))
      try await etcd.put("/l/b", "2", options: PutOptions(lease: lease.id))
      let ttl = try await etcd.timeToLive(lease.id, keys: true)
      #expect(ttl.grantedTTL == 30 && ttl.ttl > 0 && ttl.ttl <= 30)
      #expect(Set(ttl.keys.map { String(decoding: $0, as: UTF8.self) }) == ["/l/a", "/l/b"])
      #expect(try await etcd.leases().contains(lease.id))
      try await etcd.revoke(lease.id)
      #expect(try await etcd.get(.prefix("/l/")).kvs.isEmpty, "revoking deletes the attached keys")
      #expect(try await etcd.timeToLive(lease.id).ttl == -1)
      let gone = await #expect(throws: EtcdError.self) { try await etcd.revoke(lease.id) }
      #expect(gone?.code == .leaseNotFound)
      let chosen = try await etcd.grant(ttl: 10, id: 0x1234)
      #expect(chosen.id == 0x1234)
    }
  }

  @Test func keepAliveOnceRenews() async throws {
    try await withEtcd { etcd, _ in
      let lease = try await etcd.grant(ttl: 5)
      let renewed = try await etcd.keepAliveOnce(lease.id)
      #expect(renewed.id == lease.id && renewed.ttl == 5)
      try await etcd.revoke(lease.id)
      let error = await #expect(throws: EtcdError.self) { try await etcd.keepAliveOnce(lease.id) }
      #expect(error?.code == .leaseNotFound)
    }
  }

  @Test func keepAliveHoldsTheKeyAndExpiryRemovesItOnceItStops() async throws {
    try await withEtcd { etcd, _ in
      // A TTL of 5 s (renewed every 1.7 s): with 2 s, a test machine loaded by the parallel
      // suite could stall the client past the TTL, and the lease expired under a live keeper.
      let lease = try await etcd.grant(ttl: 5)
      try await etcd.put("/alive", "yes", options: PutOptions(lease: lease.id))
      let keeper = Task {
        var count = 0
        for try await response in etcd.keepAlive(lease.id) {
          #expect(response.ttl == 5)
          count += 1
        }
        return count
      }
      try await Task.sleep(for: .seconds(11))  // more than twice the TTL
      #expect(try await etcd.get("/alive").kvs.count == 1, "kept alive past its TTL")
      keeper.cancel()
      let renewals = try await keeper.value
      #expect(renewals >= 5)  // one every TTL/3
      // Once keep-alive stops, the lease expires and takes the key with it.
      var remaining = 1
      for _ in 0..<200 where remaining > 0 {
        try await Task.sleep(for: .milliseconds(100))
        remaining = try await etcd.get("/alive").kvs.count
      }
      #expect(remaining == 0)
    }
  }

  @Test func keepAliveReportsExpiryWhileEtcdIsDown() async throws {
    try await EtcdServer.with { server in
      try await withEtcdClient(server.configuration()) { etcd in
        // 6 s, not 2: on a loaded CI machine the keeper's first request has been seen to reach
        // etcd more than 2 s after the grant, when the lease is already gone.
        let lease = try await etcd.grant(ttl: 6)
        // etcd is killed only once a renewal came back: that renewal is what tells the client
        // how long the lease lives. (Killed after a fixed 500 ms, a loaded machine could kill
        // it before the first answer, and a keeper that never heard a TTL waits for ever.)
        let renewed = RenewalFlag()
        let keeper = Task {
          do {
            for try await _ in etcd.keepAlive(lease.id) { renewed.set() }
            return nil as EtcdError?
          } catch {
            return error as? EtcdError
          }
        }
        for _ in 0..<300 where !renewed.isSet { try await Task.sleep(for: .milliseconds(100)) }
        #expect(renewed.isSet)
        server.kill9()  // no member answers from now on
        let error = await keeper.value
        #expect(error?.code == .leaseNotFound)
      }
    }
  }

  @Test("a lease etcd never renewed is reported expired once its granted TTL has passed")
  func keepAliveReportsExpiryWithoutAnyRenewal() async throws {
    try await EtcdServer.with { server in
      let proxy = try await TCPProxy.start(targetPort: server.clientPort)
      var configuration = server.configuration()
      configuration.endpoints = [EtcdEndpoint(host: "127.0.0.1", port: proxy.port)]
      try await withEtcdClient(configuration) { etcd in
        let lease = try await etcd.grant(ttl: 2)
        // Cut off before the keeper's first request: no renewal ever answers, and the keeper
        // knows the TTL only from the grant.
        proxy.blackhole()
        let keeper = Task { await endingError(of: etcd.keepAlive(lease)) }
        // Bounds only a failing test: a keeper that never learned the TTL waits for ever.
        let watchdog = Task {
          try await Task.sleep(for: .seconds(60))
          keeper.cancel()
        }
        let error = await keeper.value
        watchdog.cancel()
        #expect(error?.code == .leaseNotFound, "\(String(describing: error))")
        // The black-holed connection is reset, so that the client shuts down at once.
        proxy.pass()
        proxy.resetAll()
        // etcd agrees: the lease is gone (asked directly, not through the proxy).
        try await withEtcdClient(server.configuration()) { direct in
          var remaining: Int64 = 0
          for _ in 0..<50 {
            remaining = try await direct.timeToLive(lease.id).ttl
            if remaining == -1 { break }
            try await Task.sleep(for: .milliseconds(100))
          }
          #expect(remaining == -1)
        }
      }
      await proxy.stop()
    }
  }

  @Test func shutdownEndsKeepAliveStreams() async throws {
    try await EtcdServer.with { server in
      let keeper = try await withEtcdClient(server.configuration()) { etcd in
        let lease = try await etcd.grant(ttl: 30)
        let stream = etcd.keepAlive(lease.id)
        return Task { await endingError(of: stream) }
      }  // returns only once the client (and so the keep-alive) has shut down
      #expect(await keeper.value?.code == .clientClosed)
    }
  }

  @Test func keepAliveEndsWhenTheLeaseIsRevoked() async throws {
    try await withEtcd { etcd, _ in
      let lease = try await etcd.grant(ttl: 3)
      let keeper = Task { await endingError(of: etcd.keepAlive(lease.id)) }
      try await Task.sleep(for: .milliseconds(300))
      try await etcd.revoke(lease.id)
      let error = await keeper.value
      #expect(error?.code == .leaseNotFound)
    }
  }
}

@Suite("Auth against a real etcd") struct AuthTests {
  /// Sets up root and a user `app` whose role may read and write only `/app/`.
  static func enableAuth(_ etcd: EtcdClient) async throws {
    try await etcd.userAdd("root", password: "rootpw")
    try await etcd.roleAdd("root")
    try await etcd.userGrantRole("root", role: "root")
    try await etcd.userAdd("app", password: "s3cret-pw")
    try await etcd.roleAdd("app-rw")
    try await etcd.roleGrantPermission("app-rw", .readWrite, on: .prefix("/app/"))
    try await etcd.userGrantRole("app", role: "app-rw")
    try await etcd.authEnable()
  }

  @Test func userWithRoleTokenRefreshAndPermissionDenied() async throws {
    // A 2-second token TTL forces the client to re-authenticate mid-test.
    try await EtcdServer.with(arguments: ["--auth-token", "simple", "--auth-token-ttl", "2"]) { server in
      try await withEtcdClient(server.configuration()) { try await Self.enableAuth($0) }

      var configuration = server.configuration()
      configuration.credentials = .init(username: "app", password: "s3cret-pw")
      try await withEtcdClient(configuration) { etcd in
        try await etcd.put("/app/a", "1")
        #expect(try await etcd.get("/app/a").kvs.first?.valueString == "1")
        let watch = EventCollector(etcd.watch(.prefix("/app/"), options: WatchOptions(startRevision: 1)))
        try await Task.sleep(for: .seconds(4))  // the token has expired by now
        try await etcd.put("/app/b", "2")
        #expect(try await etcd.get(.prefix("/app/")).kvs.count == 2)
        #expect(await watch.wait { $0.events.count == 2 })

        let denied = await #expect(throws: EtcdError.self) { try await etcd.put("/other", "x") }
        #expect(denied?.code == .permissionDenied)
        let deniedWatch = EventCollector(etcd.watch("/other"))
        #expect(await deniedWatch.wait { $0.error != nil })
        #expect(deniedWatch.error?.code == .permissionDenied)
        watch.stop()
      }

      // A user or role change makes every existing token stale ("revision of auth store is
      // old"): the client must re-authenticate by itself.
      try await withEtcdClient(configuration) { etcd in
        try await etcd.put("/app/stale-1", "1")
        var admin = server.configuration()
        admin.credentials = .init(username: "root", password: "rootpw")
        try await withEtcdClient(admin) { try await $0.userAdd("another", password: "pw") }
        try await etcd.put("/app/stale-2", "2")
        #expect(try await etcd.get("/app/stale-2").kvs.count == 1)
      }

      var wrong = server.configuration()
      wrong.credentials = .init(username: "app", password: "not-the-password")
      try await withEtcdClient(wrong) { etcd in
        let error = await #expect(throws: EtcdError.self) { try await etcd.get("/app/a") }
        #expect(error?.code == .authFailed)
        #expect(error?.description.contains("not-the-password") == false, "no password in errors")
      }

      let anonymous = await #expect(throws: EtcdError.self) {
        try await withEtcdClient(server.configuration()) { try await $0.get("/app/a") }
      }
      #expect(anonymous?.code == .permissionDenied || anonymous?.code == .invalidToken || anonymous?.code == .authFailed)
    }
  }

  @Test func credentialsNeverPrint() throws {
    let credentials = EtcdConfiguration.Credentials(username: "u", password: "hunter2")
    #expect(!"\(credentials)".contains("hunter2"))
    #expect(!String(reflecting: credentials).contains("hunter2"))
    var dumped = ""
    dump(credentials, to: &dumped)
    #expect(!dumped.contains("hunter2") && dumped.contains("u"))
  }
}

@Suite("TLS against a real etcd") struct TLSTests {
  @Test func mutualTLSWorksAndAWrongCAFailsClosed() async throws {
    try await EtcdServer.with(tls: true) { server in
      try await withEtcdClient(server.configuration()) { etcd in
        try await etcd.put("/tls", "ok")
        #expect(try await etcd.get("/tls").kvs.first?.valueString == "ok")
      }

      // Another CA: the server's certificate must be refused.
      let otherDir = try makeTempDirectory(prefix: "other-ca")
      defer { try? FileManager.default.removeItem(atPath: otherDir) }
      let other = try TestCertificates.make(in: otherDir)
      var wrongCA = server.configuration()
      wrongCA.tls?.caFile = other.caFile
      wrongCA.requestTimeout = .seconds(3)
      let error = await #expect(throws: EtcdError.self) {
        try await withEtcdClient(wrongCA) { try await $0.get("/tls") }
      }
      #expect(error?.code == .unavailable || error?.code == .deadlineExceeded)

      // No client certificate: etcd (--client-cert-auth) refuses the handshake.
      var noClientCert = server.configuration()
      noClientCert.tls?.certFile = nil
      noClientCert.tls?.keyFile = nil
      noClientCert.requestTimeout = .seconds(3)
      await #expect(throws: EtcdError.self) {
        try await withEtcdClient(noClientCert) { try await $0.get("/tls") }
      }
    }
  }
}
