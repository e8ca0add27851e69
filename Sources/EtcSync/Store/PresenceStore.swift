import EtcdClient

/// What a ``Presence`` needs from etcd: the agent's store (reads and Txns on its key) and a
/// lease to bind the key to (grant, keep-alive, time to live, revoke). ``EtcdClient`` is the
/// real one; tests use `InMemoryEtcd` (EtcdTestSupport), whose leases run on a clock the test
/// moves.
///
/// The contract is `EtcdClient`'s: `keepAlive` renews until its sequence is no longer
/// iterated and throws `leaseNotFound` once the lease is gone (expired, revoked, or not
/// renewed within its TTL); `timeToLive` answers -1 for a lease that is gone.
public protocol PresenceStore: EtcdStore {
  /// Grants a lease of `ttl` seconds (`id` 0: the store chooses the ID).
  func grant(ttl: Int64, id: Int64) async throws(EtcdError) -> Lease
  /// Keeps a granted lease alive while the sequence is iterated.
  func keepAlive(_ lease: Lease) -> LeaseKeepAliveStream
  /// Keeps the lease `id` alive while the sequence is iterated (its TTL not known yet).
  func keepAlive(_ id: Int64) -> LeaseKeepAliveStream
  /// Seconds left of a lease (-1 when it is gone), and with `keys`, the keys bound to it.
  func timeToLive(_ id: Int64, keys: Bool) async throws(EtcdError) -> LeaseTimeToLive
  /// Revokes a lease; the keys bound to it are deleted.
  @discardableResult
  func revoke(_ id: Int64) async throws(EtcdError) -> ResponseHeader
}

extension EtcdClient: PresenceStore {}

// Presence's calls, with `EtcdClient`'s defaults.
extension PresenceStore {
  func grant(ttl: Int64) async throws(EtcdError) -> Lease {
    try await self.grant(ttl: ttl, id: 0)
  }

  func timeToLive(_ id: Int64) async throws(EtcdError) -> LeaseTimeToLive {
    try await self.timeToLive(id, keys: false)
  }
}
