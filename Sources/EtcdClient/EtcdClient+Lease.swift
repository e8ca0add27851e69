import Foundation
import GRPCCore
import Synchronization

/// A granted lease.
public struct Lease: Sendable, Hashable {
  public var id: Int64
  /// The TTL etcd granted, in seconds.
  public var ttl: Int64
  public var header: ResponseHeader
}

/// One answer to a keep-alive: the lease's TTL, renewed.
public struct LeaseKeepAliveResponse: Sendable, Hashable {
  public var id: Int64
  public var ttl: Int64
  public var header: ResponseHeader
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
}

extension EtcdClient {
  /// Grants a lease of `ttl` seconds (clientv3's `Grant`). `id` 0 lets etcd choose.
  public func grant(ttl: Int64, id: Int64 = 0) async throws(EtcdError) -> Lease {
    var request = Etcdserverpb_LeaseGrantRequest()
    request.ttl = ttl
    request.id = id
    return try await self.unary(idempotent: false) { [request] metadata, options in
      let r = try await self.leaseRPC.leaseGrant(request, metadata: metadata, options: options)
      if !r.error.isEmpty { throw EtcdError(.invalidArgument, r.error) }
      return Lease(id: r.id, ttl: r.ttl, header: ResponseHeader(r.header))
    }
  }

  /// Revokes a lease; every key attached to it is deleted.
  @discardableResult
  public func revoke(_ id: Int64) async throws(EtcdError) -> ResponseHeader {
    var request = Etcdserverpb_LeaseRevokeRequest()
    request.id = id
    return try await self.unary(idempotent: false) { [request] metadata, options in
      ResponseHeader(try await self.leaseRPC.leaseRevoke(request, metadata: metadata, options: options).header)
    }
  }

  /// The lease's remaining TTL and, with `keys`, the keys attached to it.
  public func timeToLive(_ id: Int64, keys: Bool = false) async throws(EtcdError) -> LeaseTimeToLive {
    var request = Etcdserverpb_LeaseTimeToLiveRequest()
    request.id = id
    request.keys = keys
    return try await self.unary(idempotent: true) { [request] metadata, options in
      let r = try await self.leaseRPC.leaseTimeToLive(request, metadata: metadata, options: options)
      return LeaseTimeToLive(id: r.id, ttl: r.ttl, grantedTTL: r.grantedTtl, keys: r.keys.map { [UInt8]($0) },
                             header: ResponseHeader(r.header))
    }
  }

  /// The IDs of every live lease.
  public func leases() async throws(EtcdError) -> [Int64] {
    try await self.unary(idempotent: true) { metadata, options in
      try await self.leaseRPC.leaseLeases(Etcdserverpb_LeaseLeasesRequest(), metadata: metadata, options: options)
        .leases.map(\.id)
    }
  }

  /// Renews a lease once. Throws `leaseNotFound` if it has expired or was revoked.
  public func keepAliveOnce(_ id: Int64) async throws(EtcdError) -> LeaseKeepAliveResponse {
    let stream = self.keepAlive(id)
    do {
      for try await response in stream { return response }
    } catch {
      throw EtcdError.wrap(error)
    }
    throw EtcdError(.leaseNotFound, "lease \(String(id, radix: 16)) not found")
  }

  /// Keeps a lease alive for as long as the sequence is iterated (clientv3's `KeepAlive`): a
  /// renewal every TTL/3 on a stream of its own, re-opened on another member after a failure.
  /// Each renewal is delivered (only the newest is kept when the consumer is slow). The
  /// sequence throws `leaseNotFound` when the lease is gone: expired, revoked, or not renewed
  /// within its TTL because etcd was unreachable. Cancel the iterating task to stop.
  public func keepAlive(_ id: Int64) -> LeaseKeepAliveStream {
    let (stream, continuation) = AsyncThrowingStream.makeStream(
      of: LeaseKeepAliveResponse.self, bufferingPolicy: .bufferingNewest(1))
    let task = Task { await LeaseKeeper(client: self, id: id, continuation: continuation).run() }
    continuation.onTermination = { _ in task.cancel() }
    return LeaseKeepAliveStream(base: stream, leaseID: id)
  }
}

/// The renewals of a lease kept alive by ``EtcdClient/keepAlive(_:)``.
public struct LeaseKeepAliveStream: AsyncSequence, Sendable {
  public typealias Element = LeaseKeepAliveResponse
  let base: AsyncThrowingStream<LeaseKeepAliveResponse, any Error>
  public let leaseID: Int64

  public func makeAsyncIterator() -> AsyncThrowingStream<LeaseKeepAliveResponse, any Error>.AsyncIterator {
    self.base.makeAsyncIterator()
  }
}

/// Runs one keep-alive stream, reopening it after failures until the lease's TTL runs out.
struct LeaseKeeper: Sendable {
  let client: EtcdClient
  let id: Int64
  let continuation: AsyncThrowingStream<LeaseKeepAliveResponse, any Error>.Continuation

  func run() async {
    let clock = ContinuousClock()
    // The lease is known to live at least until `deadline`; extended by each renewal.
    let deadline = Mutex<ContinuousClock.Instant?>(nil)
    let ttl = Mutex<Int64>(3)
    var backoff = Backoff(maximum: .seconds(1))
    let progressed = Flag()
    while !Task.isCancelled {
      do {
        let metadata = try await self.client.streamMetadata()
        var options = CallOptions.defaults
        options.waitForReady = true
        let gone: Bool = try await self.client.leaseRPC.leaseKeepAlive(metadata: metadata, options: options) { writer in
          var request = Etcdserverpb_LeaseKeepAliveRequest()
          request.id = self.id
          while !Task.isCancelled {
            try await writer.write(request)
            let interval = max(Duration.milliseconds(500), .seconds(ttl.withLock { $0 }) / 3)
            try await Task.sleep(for: interval)
          }
        } onResponse: { response in
          for try await message in response.messages {
            guard message.ttl > 0 else { return true }
            ttl.withLock { $0 = message.ttl }
            deadline.withLock { $0 = clock.now + .seconds(message.ttl) }
            self.continuation.yield(LeaseKeepAliveResponse(id: message.id, ttl: message.ttl, header: ResponseHeader(message.header)))
            progressed.set()
          }
          return false
        }
        if gone {
          self.continuation.finish(throwing: EtcdError(.leaseNotFound, "lease \(String(self.id, radix: 16)) expired or was revoked"))
          return
        }
      } catch {
        let error = EtcdError.wrap(error)
        if Task.isCancelled { break }
        if error.code == .invalidToken { await self.client.tokens.invalidate() }
        else if !error.isTransient && error.code != .internalError && error.code != .cancelled {
          self.continuation.finish(throwing: error)
          return
        }
      }
      if let deadline = deadline.withLock({ $0 }), clock.now >= deadline {
        self.continuation.finish(throwing: EtcdError(.leaseNotFound, "lease \(String(self.id, radix: 16)) expired while etcd was unreachable"))
        return
      }
      if progressed.take() { backoff.reset() }
      try? await Task.sleep(for: backoff.next())
    }
    self.continuation.finish()
  }
}
