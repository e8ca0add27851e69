import Foundation
import GRPCCore
import NIOCore
import SwiftProtobuf
import Synchronization

/// A granted lease.
public struct Lease: Sendable, Hashable {
  public var id: Int64
  /// The TTL etcd granted, in seconds.
  public var ttl: Int64
  public var header: ResponseHeader
  /// When the grant's answer arrived: unless renewed, the lease has expired `ttl` seconds
  /// later at the latest. ``EtcdClient/keepAlive(_:)-(Lease)`` starts from it.
  public var received: ContinuousClock.Instant

  /// A lease as etcd granted it; `received` is when its answer arrived.
  public init(id: Int64, ttl: Int64, header: ResponseHeader, received: ContinuousClock.Instant = .now) {
    self.id = id
    self.ttl = ttl
    self.header = header
    self.received = received
  }
}

/// One answer to a keep-alive: the lease's TTL, renewed.
public struct LeaseKeepAliveResponse: Sendable, Hashable {
  public var id: Int64
  public var ttl: Int64
  public var header: ResponseHeader

  /// A response made without etcd (an in-memory etcd in tests).
  public init(id: Int64, ttl: Int64, header: ResponseHeader) {
    self.id = id
    self.ttl = ttl
    self.header = header
  }
}

/// What etcd knows about a lease.
public struct LeaseTimeToLive: Sendable, Hashable {
  public var id: Int64
  /// Seconds left; -1 when the lease has expired or never existed.
  public var ttl: Int64
  public var grantedTTL: Int64
  /// The keys attached, when asked for.
  public var keys: [[UInt8]]
  public var header: ResponseHeader

  /// An answer made without etcd (an in-memory etcd in tests).
  public init(id: Int64, ttl: Int64, grantedTTL: Int64, keys: [[UInt8]] = [], header: ResponseHeader) {
    self.id = id
    self.ttl = ttl
    self.grantedTTL = grantedTTL
    self.keys = keys
    self.header = header
  }
}

extension EtcdClient {
  /// Grants a lease of `ttl` seconds (clientv3's `Grant`). `id` 0 lets etcd choose.
  public func grant(ttl: Int64, id: Int64 = 0) async throws(EtcdError) -> Lease {
    var request = Etcdserverpb_LeaseGrantRequest()
    request.ttl = ttl
    request.id = id
    return try await self.unary(idempotent: false) { [request] metadata, options in
      let r = try await self.invoke(Etcdserverpb_Lease.Method.LeaseGrant.descriptor, request, metadata, options, as: Etcdserverpb_LeaseGrantResponse.self)
      if !r.error.isEmpty { throw EtcdError(.invalidArgument, r.error) }
      return Lease(id: r.id, ttl: r.ttl, header: ResponseHeader(r.header), received: .now)
    }
  }

  /// Revokes a lease; every key attached to it is deleted.
  @discardableResult
  public func revoke(_ id: Int64) async throws(EtcdError) -> ResponseHeader {
    var request = Etcdserverpb_LeaseRevokeRequest()
    request.id = id
    return try await self.unary(idempotent: false) { [request] metadata, options in
      ResponseHeader(try await self.invoke(Etcdserverpb_Lease.Method.LeaseRevoke.descriptor, request, metadata, options, as: Etcdserverpb_LeaseRevokeResponse.self).header)
    }
  }

  /// The lease's remaining TTL and, with `keys`, the keys attached to it.
  public func timeToLive(_ id: Int64, keys: Bool = false) async throws(EtcdError) -> LeaseTimeToLive {
    var request = Etcdserverpb_LeaseTimeToLiveRequest()
    request.id = id
    request.keys = keys
    return try await self.unary(idempotent: true) { [request] metadata, options in
      let r = try await self.invoke(Etcdserverpb_Lease.Method.LeaseTimeToLive.descriptor, request, metadata, options, as: Etcdserverpb_LeaseTimeToLiveResponse.self)
      return LeaseTimeToLive(id: r.id, ttl: r.ttl, grantedTTL: r.grantedTtl, keys: r.keys.map { [UInt8]($0) },
                             header: ResponseHeader(r.header))
    }
  }

  /// The IDs of every live lease.
  public func leases() async throws(EtcdError) -> [Int64] {
    try await self.unary(idempotent: true) { metadata, options in
      try await self.invoke(Etcdserverpb_Lease.Method.LeaseLeases.descriptor, Etcdserverpb_LeaseLeasesRequest(), metadata, options, as: Etcdserverpb_LeaseLeasesResponse.self)
        .leases.map(\.id)
    }
  }

  /// Renews a lease once. Throws `leaseNotFound` if it has expired or was revoked, and
  /// `deadlineExceeded` if no member answers within ``EtcdConfiguration/requestTimeout``.
  public func keepAliveOnce(_ id: Int64) async throws(EtcdError) -> LeaseKeepAliveResponse {
    let timeout = self.configuration.requestTimeout
    do {
      return try await withThrowingTaskGroup(of: LeaseKeepAliveResponse?.self) { group in
        group.addTask {
          for try await response in self.keepAlive(id) { return response }
          throw EtcdError(.leaseNotFound, "lease \(String(id, radix: 16)) not found")
        }
        group.addTask {
          try await Task.sleep(for: timeout)
          return nil
        }
        defer { group.cancelAll() }
        guard let response = try await group.next()! else {
          throw EtcdError(.deadlineExceeded, "no etcd member renewed lease \(String(id, radix: 16)) within \(timeout)")
        }
        return response
      }
    } catch {
      throw EtcdError.wrap(error)
    }
  }

  /// Keeps a granted lease alive for as long as the sequence is iterated (clientv3's
  /// `KeepAlive`): a renewal every TTL/3 on a stream of its own, re-opened on another member
  /// after a failure. Each renewal is delivered (only the newest is kept when the consumer is
  /// slow). The sequence throws `leaseNotFound` when the lease is gone: expired, revoked, or
  /// not renewed within its TTL because etcd was unreachable, counted from the grant
  /// (``Lease/received``) until the first renewal answers, so that a lease that etcd never
  /// renewed is reported expired too. Cancel the iterating task to stop.
  public func keepAlive(_ lease: Lease) -> LeaseKeepAliveStream {
    self.keepAlive(lease.id, knownTTL: lease.ttl, aliveUntil: lease.received + .seconds(lease.ttl))
  }

  /// Keeps the lease `id` alive, as ``keepAlive(_:)-(Lease)`` does, when only its ID is known:
  /// until the first renewal answers, the keeper does not know the lease's TTL and cannot
  /// report its expiry while etcd is unreachable. Prefer ``keepAlive(_:)-(Lease)``.
  public func keepAlive(_ id: Int64) -> LeaseKeepAliveStream {
    self.keepAlive(id, knownTTL: nil, aliveUntil: nil)
  }

  private func keepAlive(_ id: Int64, knownTTL: Int64?, aliveUntil: ContinuousClock.Instant?) -> LeaseKeepAliveStream {
    let (stream, continuation) = AsyncThrowingStream.makeStream(
      of: LeaseKeepAliveResponse.self, bufferingPolicy: .bufferingNewest(1))
    let keeper = LeaseKeeper(client: self, id: id, knownTTL: knownTTL, aliveUntil: aliveUntil, continuation: continuation)
    let task = Task { await keeper.run() }
    let key = self.keepers.add(task, continuation: continuation)
    continuation.onTermination = { [keepers] _ in
      task.cancel()
      keepers.remove(key)
    }
    return LeaseKeepAliveStream(stream, leaseID: id)
  }
}

/// The renewals of a lease kept alive by ``EtcdClient/keepAlive(_:)``.
public struct LeaseKeepAliveStream: AsyncSequence, Sendable {
  public typealias Element = LeaseKeepAliveResponse
  let base: AsyncThrowingStream<LeaseKeepAliveResponse, any Error>
  public let leaseID: Int64

  /// A stream of renewals made without etcd (an in-memory etcd in tests).
  public init(_ base: AsyncThrowingStream<LeaseKeepAliveResponse, any Error>, leaseID: Int64) {
    self.base = base
    self.leaseID = leaseID
  }

  public func makeAsyncIterator() -> AsyncThrowingStream<LeaseKeepAliveResponse, any Error>.AsyncIterator {
    self.base.makeAsyncIterator()
  }
}

/// Runs one keep-alive stream, reopening it after failures until the lease's TTL runs out.
struct LeaseKeeper: Sendable {
  /// Runs `body`, but throws `leaseNotFound` once the lease's known lifetime has passed: a
  /// stream waiting for a member while none answers must not outlive the lease silently.
  static func untilExpired<T: Sendable>(
    _ deadline: LeaseDeadline, _ body: @escaping @Sendable () async throws -> T
  ) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
      group.addTask { try await body() }
      group.addTask {
        while true {
          try await Task.sleep(for: .milliseconds(250))
          if let end = deadline.value, ContinuousClock.now >= end {
            throw EtcdError(.leaseNotFound, "the lease expired while no etcd member renewed it")
          }
        }
      }
      defer { group.cancelAll() }
      return try await group.next()!!
    }
  }

  let client: EtcdClient
  let id: Int64
  /// The lease's TTL from its grant, nil when unknown (then 3 s until the first renewal).
  let knownTTL: Int64?
  /// When the lease expires unless renewed (from its grant), nil when unknown.
  let aliveUntil: ContinuousClock.Instant?
  let continuation: AsyncThrowingStream<LeaseKeepAliveResponse, any Error>.Continuation

  func run() async {
    let clock = ContinuousClock()
    // The lease lives at most until `deadline` unless renewed: from its grant until the first
    // renewal answers, then extended by each renewal.
    let deadline = LeaseDeadline(self.aliveUntil)
    let ttl = LeaseTTL(self.knownTTL.map { max(1, $0) } ?? 3)
    var backoff = Backoff(maximum: .seconds(1))
    let progressed = Flag()
    while !Task.isCancelled {
      do {
        var options = CallOptions.defaults
        options.waitForReady = true
        // The token too is asked for within the lease's lifetime: with etcd unreachable, the
        // expiry is reported on time whichever call waits for it.
        let gone: Bool = try await Self.untilExpired(deadline) { [options] in
          let metadata = try await self.client.streamMetadata()
          if let direct = self.client.direct {
            return try await self.keepAlive(through: direct, metadata: metadata, ttl: ttl, deadline: deadline, clock: clock, progressed: progressed)
          }
          return try await self.client.leaseRPC.leaseKeepAlive(metadata: metadata, options: options) { writer in
            var request = Etcdserverpb_LeaseKeepAliveRequest()
            request.id = self.id
            while !Task.isCancelled {
              try await writer.write(request)
              try await Task.sleep(for: ttl.requestInterval)
            }
          } onResponse: { response in
            for try await message in response.messages {
              guard self.renewed(message, ttl: ttl, deadline: deadline, clock: clock, progressed: progressed) else { return true }
            }
            return false
          }
        }
        if gone {
          self.continuation.finish(throwing: EtcdError(.leaseNotFound, "lease \(String(self.id, radix: 16)) expired or was revoked"))
          return
        }
      } catch {
        let error = EtcdError.wrap(error)
        if Task.isCancelled { break }
        if error.code == .leaseNotFound {
          self.continuation.finish(throwing: error)
          return
        }
        if error.code == .invalidToken { await self.client.tokens.invalidate() }
        else if !error.isTransient && error.code != .internalError && error.code != .cancelled {
          self.continuation.finish(throwing: error)
          return
        }
      }
      if let end = deadline.value, clock.now >= end {
        self.continuation.finish(throwing: EtcdError(.leaseNotFound, "lease \(String(self.id, radix: 16)) expired while etcd was unreachable"))
        return
      }
      if progressed.take() { backoff.reset() }
      try? await Task.sleep(for: backoff.next())
    }
    self.continuation.finish()
  }
}

extension LeaseKeeper {
  /// The keep-alive stream through ``DirectTransport``: a request every third of the TTL (at
  /// least every 500 ms), each answer handled on the event loop as it arrives. Returns true
  /// when etcd says the lease is gone (TTL 0), false when the stream ends otherwise.
  func keepAlive(
    through direct: DirectTransport, metadata: Metadata, ttl: LeaseTTL, deadline: LeaseDeadline,
    clock: ContinuousClock, progressed: Flag
  ) async throws -> Bool {
    let (requests, feed) = AsyncStream.makeStream(of: Etcdserverpb_LeaseKeepAliveRequest.self)
    var request = Etcdserverpb_LeaseKeepAliveRequest()
    request.id = self.id
    let writer = Task { [request] in
      while !Task.isCancelled {
        feed.yield(request)
        try? await Task.sleep(for: ttl.requestInterval)
      }
      feed.finish()
    }
    defer { writer.cancel() }
    do {
      try await direct.bidirectional(path: "/etcdserverpb.Lease/LeaseKeepAlive", metadata: metadata, requests: requests) { _ in
      } onMessage: { bytes in
        let message = try Etcdserverpb_LeaseKeepAliveResponse(serializedBytes: Array(bytes.readableBytesView))
        guard self.renewed(message, ttl: ttl, deadline: deadline, clock: clock, progressed: progressed) else { throw LeaseGone() }
      }
      return false
    } catch is LeaseGone {
      return true
    }
  }
}

extension LeaseKeeper {
  /// Takes one keep-alive answer: the lease's new TTL and deadline, passed on to the consumer.
  /// False when etcd says the lease is gone (TTL 0).
  func renewed(
    _ message: Etcdserverpb_LeaseKeepAliveResponse, ttl: LeaseTTL, deadline: LeaseDeadline,
    clock: ContinuousClock, progressed: Flag
  ) -> Bool {
    guard message.ttl > 0 else { return false }
    ttl.seconds = message.ttl
    deadline.value = clock.now + .seconds(message.ttl)
    self.continuation.yield(LeaseKeepAliveResponse(id: message.id, ttl: message.ttl, header: ResponseHeader(message.header)))
    progressed.set()
    return true
  }
}

/// etcd answered a keep-alive with TTL 0: the lease expired or was revoked.
struct LeaseGone: Error {}

/// A lease's TTL as etcd last renewed it, which paces the keep-alive requests.
final class LeaseTTL: Sendable {
  private let value: Mutex<Int64>
  init(_ seconds: Int64) { self.value = Mutex(seconds) }
  var seconds: Int64 {
    get { self.value.withLock { $0 } }
    set { self.value.withLock { $0 = newValue } }
  }
  /// How often a keep-alive request is sent: a third of the TTL, at least every 500 ms.
  var requestInterval: Duration { max(.milliseconds(500), .seconds(self.seconds) / 3) }
}

/// The instant until which a lease is known to live, extended by each renewal.
final class LeaseDeadline: Sendable {
  private let instant: Mutex<ContinuousClock.Instant?>
  init(_ instant: ContinuousClock.Instant? = nil) { self.instant = Mutex(instant) }
  var value: ContinuousClock.Instant? {
    get { self.instant.withLock { $0 } }
    set { self.instant.withLock { $0 = newValue } }
  }
}

/// The keep-alive tasks of a client, so that ``EtcdClient/shutdown()`` can end them.
final class KeeperRegistry: Sendable {
  private let entries = Mutex<(next: Int, tasks: [Int: (Task<Void, Never>, AsyncThrowingStream<LeaseKeepAliveResponse, any Error>.Continuation)])>((0, [:]))

  func add(_ task: Task<Void, Never>, continuation: AsyncThrowingStream<LeaseKeepAliveResponse, any Error>.Continuation) -> Int {
    self.entries.withLock { entries in
      entries.next += 1
      entries.tasks[entries.next] = (task, continuation)
      return entries.next
    }
  }

  func remove(_ key: Int) {
    _ = self.entries.withLock { $0.tasks.removeValue(forKey: key) }
  }

  /// Ends every keep-alive with `clientClosed`.
  func closeAll() {
    let all = self.entries.withLock { entries in
      defer { entries.tasks.removeAll() }
      return Array(entries.tasks.values)
    }
    for (task, continuation) in all {
      continuation.finish(throwing: EtcdError(.clientClosed, "the etcd client has been shut down"))
      task.cancel()
    }
  }
}
