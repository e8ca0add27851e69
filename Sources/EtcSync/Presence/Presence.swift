import EtcdClient
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Keeps the agent's presence key: `<prefix>/<name>`, bound to a lease kept alive every
/// TTL/3, holding a ``PresenceRecord``.
///
/// The key is created only if absent (a Txn on its create revision): a name that another
/// running agent holds is refused with ``PresenceConflict`` (see ``register(takeOver:)``), so
/// two agents never share one key. A holder whose lease is not kept alive (an agent killed a
/// moment ago and restarted) is waited out, within its TTL.
///
/// The key is re-put when the applied revision changes (at most once a second) and at once
/// when an error starts or ends, each time only while this agent's lease still holds it: an
/// agent whose name was taken over (`--take-over` elsewhere) logs an error and stops updating
/// the key, and keeps syncing its files. If the lease is lost (etcd restarted from a snapshot
/// that lacks it, or the agent was paused past the TTL) a new lease is granted and the key
/// created again, if still absent. When ``run()`` is cancelled the key is deleted if still
/// ours and the lease revoked.
public actor Presence {
  public let settings: PresenceSettings
  /// Etcd, or a store without it (see ``PresenceStore``).
  let store: any PresenceStore
  let logger: Logger
  var record: PresenceRecord
  var leaseID: Int64 = 0
  /// The grant of ``leaseID``: its keep-alive counts the TTL from it, so that a lease etcd
  /// never renewed is reported lost too.
  var grantedLease: Lease?
  /// Every lease this presence was granted: a key bound to one of them is ours (a new lease
  /// after a lost keep-alive finds the key on the old one).
  var ownLeases: Set<Int64> = []
  /// Whether the key is ours under ``leaseID``: puts wait until it is.
  var registered = false
  /// Whether a change of the record came while unregistered.
  var pendingPut = false
  /// Whether another agent holds the name now: nothing more is put.
  var superseded = false
  /// Whether the next registration may take the name from another agent: the setting, or
  /// ``register(takeOver:)``; only until the first registration succeeds.
  var takeOverPending: Bool
  /// When puts may go: revision changes and answers to status requests are limited apart.
  var pacer = PresencePacer(interval: Presence.minimumInterval)
  /// Whether the next put carries an answer to a status request (for ``pacer``).
  var answerPending = false
  var delayedPut: Task<Void, Never>?
  /// When ``delayedPut`` puts, and which one it is (a replaced task that wakes does nothing).
  var delayedAt: ContinuousClock.Instant?
  var delayedToken = 0
  /// A put is in flight; another was asked for meanwhile (see ``put()``).
  var putting = false
  var putAgain = false
  /// The latest status request answered (its revision), and the "current through" revision
  /// the key holds since the last successful put.
  var answeredRequest: Int64 = 0
  var keyCurrentRevision: Int64 = 0
  /// How often the key is re-put for a revision change, at most; and, counted apart, how
  /// often it is put to answer status requests.
  static let minimumInterval: Duration = .seconds(1)

  /// A presence for an agent with `mappings`.
  public init(settings: PresenceSettings, store: any PresenceStore, logger: Logger, mappings: [String]) {
    self.settings = settings
    self.store = store
    self.logger = logger
    self.takeOverPending = settings.takeOver
    let now = PresenceRecord.timestamp()
    self.record = PresenceRecord(
      name: settings.name, host: ConfigFiles.hostName(), pid: getpid(), version: EtcSync.version,
      startedAt: now, mappings: mappings, appliedRevision: 0, updatedAt: now)
  }

  /// The lease the key is bound to now (0 before the first grant).
  public var lease: Int64 { self.leaseID }

  /// Whether another agent took the name over: this one no longer updates the key.
  public var isSuperseded: Bool { self.superseded }

  /// The agent's reports, each with the generation (see ``setMappings(_:)``) it was made in.
  let progress: (stream: AsyncStream<(Int, AgentProgress)>, continuation: AsyncStream<(Int, AgentProgress)>.Continuation) =
    AsyncStream.makeStream(of: (Int, AgentProgress).self, bufferingPolicy: .bufferingNewest(16))
  /// The agent generation: a report of an earlier one still queued when a SIGHUP's new agent
  /// started is dropped, never applied over the reset record.
  let generation = Atomic<Int>(0)
  /// Finished when the name is taken over, which ends ``run()``.
  let ended: (stream: AsyncStream<Void>, continuation: AsyncStream<Void>.Continuation) = AsyncStream.makeStream(of: Void.self)

  /// Hands the agent's progress to ``run()`` (callable from any context, in order).
  public nonisolated func report(_ progress: AgentProgress) {
    self.progress.continuation.yield((self.generation.load(ordering: .acquiring), progress))
  }

  /// The agent's mappings changed (SIGHUP): the next put carries the new names.
  ///
  /// Called for every agent generation (the first, and each SIGHUP): the new configuration's
  /// files are not applied yet, so the record forgets how far the previous generation had got
  /// (a deploy waiting on `status --wait-revision` must not pass on the old mappings'
  /// progress) and the next report puts it at once.
  public func setMappings(_ names: [String]) {
    self.record.mappings = names
    self.record.appliedRevision = 0
    self.record.currentRevision = nil
    self.answeredRequest = 0
    self.keyCurrentRevision = 0
    self.generationStarted = true
    self.generation.add(1, ordering: .releasing)
  }

  /// Set by ``setMappings(_:)``: the next report is put whatever it says.
  var generationStarted = false

  /// Registers the key before ``run()``: grants a lease and creates the key, if absent.
  ///
  /// Throws ``PresenceConflict`` when another running agent holds the name, unless
  /// `takeOver` (default: the `takeOver` setting) says to move the key to this agent's
  /// lease; throws etcd's error when etcd fails (``run()`` then keeps trying). A key bound to
  /// no lease, or to a lease nobody keeps alive, is taken without asking.
  public func register(takeOver: Bool? = nil) async throws {
    if let takeOver { self.takeOverPending = takeOver }
    try await self.registerOnce()
  }

  /// Registers and keeps the key until cancelled (or, in a `ServiceGroup`, until its graceful
  /// shutdown), then deletes it (if still ours) and revokes its lease. Progress given to
  /// ``report(_:)`` meanwhile updates the key.
  public func run() async {
    if !self.superseded {
      await cancelWhenGracefulShutdown {
        await withTaskGroup(of: Void.self) { group in
          group.addTask { await self.keep() }
          group.addTask {
            for await (generation, progress) in self.progress.stream where generation == self.generation.load(ordering: .acquiring) {
              await self.update(progress)
            }
          }
          group.addTask {
            for await _ in self.ended.stream {}
          }
          await group.next()
          group.cancelAll()
        }
      }
    }
    await self.release()
  }

  private func keep() async {
    // Jittered, so that a fleet that lost etcd at once does not register again at once.
    var backoff = Backoff(initial: .milliseconds(250), maximum: .seconds(5))
    while !Task.isCancelled && !self.superseded {
      do {
        if !self.registered { try await self.registerOnce() }
        backoff.reset()
        let kept = self.grantedLease.flatMap { $0.id == self.leaseID ? $0 : nil }
        for try await _ in kept.map({ self.store.keepAlive($0) }) ?? self.store.keepAlive(self.leaseID) {}
        if Task.isCancelled { break }
        throw EtcdError(.leaseNotFound, "the keep-alive stream ended")
      } catch let conflict as PresenceConflict {
        self.supersede("presence key held by another running agent; this agent no longer updates it and keeps syncing its files",
                       holder: conflict.holder)
        return
      } catch {
        if Task.isCancelled { break }
        self.registered = false
        self.logger.warning("presence lease lost; registering again", metadata: [
          "presence.key": "\(self.settings.key)", "error": "\(error)",
        ])
        try? await Task.sleep(for: backoff.next())
      }
    }
  }

  /// Grants a lease and claims the key with it; on success the lease replaces the previous
  /// one, which is revoked.
  private func registerOnce() async throws {
    let lease = try await self.store.grant(ttl: self.settings.ttlSeconds)
    self.ownLeases.insert(lease.id)
    do {
      try await self.claim(lease: lease.id, takeOver: self.takeOverPending)
    } catch {
      // The new lease holds nothing.
      let store = self.store
      _ = await Task { try? await store.revoke(lease.id) }.value
      throw error
    }
    let previous = self.leaseID
    self.leaseID = lease.id
    self.grantedLease = lease
    self.registered = true
    self.takeOverPending = false
    self.logger.info("presence registered", metadata: [
      "presence.key": "\(self.settings.key)", "lease.id": "\(String(lease.id, radix: 16))", "lease.ttl": "\(lease.ttl)",
    ])
    if previous != 0 && previous != lease.id { _ = try? await self.store.revoke(previous) }
    if self.pendingPut {
      self.pendingPut = false
      await self.putOrRetry()
    }
  }

  /// Puts the record under `lease` if the key is absent, bound to one of this presence's
  /// leases, bound to no lease or to one that nobody keeps alive, or, with `takeOver`, held by
  /// anyone; throws ``PresenceConflict`` otherwise. Each move is a Txn on what was read, so
  /// two agents never both succeed.
  private func claim(lease: Int64, takeOver: Bool) async throws {
    let key = Array(self.settings.key.utf8)
    for _ in 0..<8 {
      self.record.updatedAt = PresenceRecord.timestamp()
      self.pacer.put(at: .now, answering: false)
      let put = Op.put(key: key, value: self.record.json, PutOptions(lease: lease))
      let created = try await self.store.txn(
        if: [Compare(.key(key), .createRevision(0), .equal)], then: [put], else: [.get(.key(key))])
      if created.succeeded { return }
      guard case .get(let get)? = created.responses.first, let holder = get.kvs.first else { continue }
      let ours = self.ownLeases.contains(holder.lease)
      if !ours && !takeOver && holder.lease != 0 {
        // A lease nobody renews is an agent that just died (kill -9, then a restart): wait
        // for it to expire rather than refuse.
        guard try await self.holderIsGone(holder) else {
          throw PresenceConflict(key: self.settings.key, holder: PresenceHolder(holder))
        }
        continue
      }
      let moved = try await self.store.txn(
        if: [Compare(.key(key), .modRevision(holder.modRevision), .equal)], then: [put], else: [])
      guard moved.succeeded else { continue }
      if !ours {
        self.logger.warning(
          holder.lease == 0 ? "presence key had no lease; taken over" : "presence key taken over from another agent",
          metadata: PresenceHolder(holder).metadata.merging(["presence.key": "\(self.settings.key)"]) { $1 })
      }
      return
    }
    throw EtcdError(.unavailable, "the presence key \(self.settings.key) kept changing while registering")
  }

  /// Watches `holder`'s key and lease for up to the lease's TTL: true when the key went or
  /// changed hands (registering is tried again), false when the holder is alive: it renewed
  /// its lease (the time left did not fall as time passed) or updated the key.
  private func holderIsGone(_ holder: KeyValue) async throws -> Bool {
    let first = try await self.store.timeToLive(holder.lease)
    guard first.ttl > 0 else { return true }
    let observed = ContinuousClock.now
    let deadline = observed + .seconds(max(first.grantedTTL, first.ttl)) + .seconds(2)
    while ContinuousClock.now < deadline {
      try await Task.sleep(for: .milliseconds(200))
      let elapsed = ContinuousClock.now - observed
      guard let current = try await self.store.get(.key(holder.key)).kvs.first, current.lease == holder.lease else {
        return true
      }
      if current.modRevision != holder.modRevision { return false }
      let left = try await self.store.timeToLive(holder.lease).ttl
      if left <= 0 { return true }
      // etcd rounds the time left up to whole seconds: an unrenewed lease shows less than
      // its first reading minus the time passed, plus one.
      let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
      if Double(left) >= Double(first.ttl) - seconds + 2 { return false }
    }
    return false
  }

  /// Another agent holds the name: log once, stop updating the key and end ``run()``.
  func supersede(_ message: Logger.Message, holder: PresenceHolder) {
    guard !self.superseded else { return }
    self.superseded = true
    self.registered = false
    self.cancelDelayedPut()
    self.logger.error(message, metadata: holder.metadata.merging(["presence.key": "\(self.settings.key)"]) { $1 })
    self.ended.continuation.finish()
  }

  /// Takes the agent's progress: the key follows the applied revision (rate-limited), every
  /// change of the error at once, and answers a status request (``ProgressRequest``) once the
  /// agent is current through it: at once, unless it answered another within the last second
  /// (answers are limited apart from revision changes, see ``PresencePacer``).
  ///
  /// The "current through" revision alone never puts the key: it moves with every revision
  /// the watch reports, other agents' presence puts included, and putting it each time would
  /// make every agent's put move every other agent's revision, once a second for ever. Each
  /// put carries its latest value.
  public func update(_ progress: AgentProgress) async {
    let error = progress.lastError
    let errorChanged = error != self.record.lastError || self.record.ready != progress.ready
    self.record.ready = progress.ready
    // An agent restarted by SIGHUP reports 0 until its first sync, as the record does since
    // ``setMappings(_:)``.
    let revisionChanged = progress.appliedRevision != 0 && progress.appliedRevision != self.record.appliedRevision
    if progress.currentRevision > (self.record.currentRevision ?? 0) { self.record.currentRevision = progress.currentRevision }
    // A request this agent can answer now, which the key does not answer yet.
    var answering = false
    if progress.requestedRevision > self.answeredRequest, (self.record.currentRevision ?? 0) >= progress.requestedRevision {
      self.answeredRequest = progress.requestedRevision
      answering = self.keyCurrentRevision < progress.requestedRevision
    }
    let forced = self.generationStarted
    self.generationStarted = false
    guard errorChanged || revisionChanged || answering || forced else { return }
    if revisionChanged { self.record.appliedRevision = progress.appliedRevision }
    if errorChanged {
      self.record.lastError = error
      self.record.lastErrorAt = error == nil ? nil : PresenceRecord.timestamp()
    }
    if answering { self.answerPending = true }
    switch self.pacer.decide(urgent: errorChanged || forced, answering: answering, at: .now) {
    case .now:
      // This put carries every change a delayed one was waiting for.
      self.cancelDelayedPut()
      await self.putOrRetry()
    case .at(let instant):
      // One delayed put carries every change until then.
      self.schedulePut(at: instant)
    }
  }

  /// Deletes the key if our lease still holds it and revokes the lease, outside the
  /// cancelled task. A key that another agent holds stays.
  private func release() async {
    self.cancelDelayedPut()
    let id = self.leaseID
    guard id != 0 else { return }
    self.leaseID = 0
    self.registered = false
    let store = self.store
    let key = Array(self.settings.key.utf8)
    let (deleted, revoked) = await Task { () -> (Bool, Bool) in
      let deleted = (try? await store.txn(if: [Compare(.key(key), .lease(id), .equal)], then: [.delete(.key(key))]))?.succeeded ?? false
      return (deleted, (try? await store.revoke(id)) != nil)
    }.value
    if revoked || deleted {
      self.logger.info(deleted ? "presence key deleted, lease revoked" : "presence lease revoked; the key was not ours",
                       metadata: ["presence.key": "\(self.settings.key)"])
    } else {
      self.logger.warning("presence lease not revoked; the key expires with its TTL", metadata: ["presence.key": "\(self.settings.key)"])
    }
  }
}

/// Presence is a swift-service-lifecycle `Service`: ``Presence/run()`` ends at the group's
/// graceful shutdown as at cancellation, deleting the key and revoking its lease. It also
/// ends, returning normally, when another agent takes the name over: in a group with the
/// default `successTerminationBehavior` (`.cancelGroup`) that ends the whole group, so give
/// it `.ignore` where the rest should run on. `AgentSupervisor` runs one per etcd client,
/// beside that client's agents and after them, rather than in the top-level group: the lease
/// belongs to the client, which a reload that changes the etcd or presence settings replaces.
extension Presence: Service {}
