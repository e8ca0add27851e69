import EtcdClient
import Synchronization

// Leases of `InMemoryEtcd`, on a clock the test moves.
extension InMemoryEtcd {
  struct LeaseRecord {
    var ttl: Int64
    var expiresAt: Duration
    /// The keys attached (bytes).
    var keys: Set<[UInt8]> = []
  }

  /// Grants a lease of `ttl` seconds on the test's clock; `id` 0 lets the store choose.
  public func grant(ttl: Int64, id: Int64 = 0) async throws(EtcdError) -> Lease {
    try self.state.withLock { state throws(EtcdError) in
      try state.admit(.lease)
      let chosen = id == 0 ? state.nextLeaseID : id
      if id == 0 { state.nextLeaseID += 1 }
      guard state.leases[chosen] == nil else { throw EtcdError(.invalidArgument, "etcdserver: lease already exists") }
      state.leases[chosen] = LeaseRecord(ttl: ttl, expiresAt: state.now + .seconds(ttl))
      return Lease(id: chosen, ttl: ttl, header: state.header)
    }
  }

  /// Renews a lease for its whole TTL.
  public func keepAliveOnce(_ id: Int64) async throws(EtcdError) -> LeaseKeepAliveResponse {
    try self.state.withLock { state throws(EtcdError) in
      try state.admit(.lease)
      guard let lease = state.leases[id] else { throw EtcdError(.leaseNotFound, "etcdserver: requested lease not found") }
      state.leases[id]?.expiresAt = state.now + .seconds(lease.ttl)
      return LeaseKeepAliveResponse(id: id, ttl: lease.ttl, header: state.header)
    }
  }

  /// Seconds left (-1 for a lease that expired or never existed), and with `keys` the keys
  /// attached.
  public func timeToLive(_ id: Int64, keys: Bool = false) async throws(EtcdError) -> LeaseTimeToLive {
    try self.state.withLock { state throws(EtcdError) in
      try state.admit(.lease)
      guard let lease = state.leases[id] else { return LeaseTimeToLive(id: id, ttl: -1, grantedTTL: 0, header: state.header) }
      let left = lease.expiresAt - state.now
      return LeaseTimeToLive(id: id, ttl: left.components.seconds, grantedTTL: lease.ttl,
                             keys: keys ? lease.keys.sorted { $0.lexicographicallyPrecedes($1) } : [], header: state.header)
    }
  }

  /// Keeps a lease alive while the sequence is iterated, as `EtcdClient.keepAlive` does: a
  /// renewal (``keepAliveOnce(_:)``) at once and then every ``keepAliveInterval`` of real
  /// time, each delivered (the newest kept); throws `leaseNotFound` once the lease is gone
  /// (expired on the test's clock, revoked, or ``expire(_:)``d). A renewal that fails
  /// otherwise (an injected `unavailable`) is tried again, as the client re-opens its stream.
  public func keepAlive(_ lease: Lease) -> LeaseKeepAliveStream {
    self.keepAlive(lease.id)
  }

  /// ``keepAlive(_:)-(Lease)`` by the lease's ID.
  public func keepAlive(_ id: Int64) -> LeaseKeepAliveStream {
    let (stream, continuation) = AsyncThrowingStream.makeStream(of: LeaseKeepAliveResponse.self, bufferingPolicy: .bufferingNewest(1))
    let task = Task {
      while !Task.isCancelled {
        do throws(EtcdError) {
          continuation.yield(try await self.keepAliveOnce(id))
        } catch where error.code == .leaseNotFound {
          continuation.finish(throwing: error)
          return
        } catch {
          // Tried again after the interval.
        }
        do { try await Task.sleep(for: Self.keepAliveInterval) } catch { break }
      }
      continuation.finish()
    }
    continuation.onTermination = { _ in task.cancel() }
    return LeaseKeepAliveStream(stream, leaseID: id)
  }

  /// How often (real time) ``keepAlive(_:)-(Int64)`` renews a lease.
  public static let keepAliveInterval: Duration = .milliseconds(20)

  /// Revokes a lease: its keys are deleted in one revision.
  @discardableResult
  public func revoke(_ id: Int64) async throws(EtcdError) -> ResponseHeader {
    let (header, deliveries) = try self.state.withLock { state throws(EtcdError) in
      try state.admit(.lease)
      guard state.leases[id] != nil else { throw EtcdError(.leaseNotFound, "etcdserver: requested lease not found") }
      let deliveries = state.end(lease: id)
      return (state.header, deliveries)
    }
    deliveries.deliver()
    return header
  }

  /// Lets a lease expire now, as etcd's lessor would: its keys are deleted in one revision.
  public func expire(_ id: Int64) {
    self.state.withLock { $0.end(lease: id) }.deliver()
  }

  /// Moves the lease clock on; every lease not kept alive meanwhile expires.
  public func advance(by duration: Duration) {
    let deliveries = self.state.withLock { state in
      state.now += duration
      var deliveries = Deliveries()
      for (id, lease) in state.leases.sorted(by: { $0.key < $1.key }) where lease.expiresAt <= state.now {
        deliveries.append(state.end(lease: id))
      }
      return deliveries
    }
    deliveries.deliver()
  }
}

extension InMemoryEtcd.State {
  mutating func end(lease id: Int64) -> InMemoryEtcd.Deliveries {
    guard let lease = self.leases.removeValue(forKey: id) else { return InMemoryEtcd.Deliveries() }
    var write = InMemoryEtcd.Write(revision: self.revision + 1)
    for key in lease.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
      _ = self.delete(.key(key), prevKV: false, &write)
    }
    return self.commit(write)
  }
}
