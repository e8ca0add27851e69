import EtcdClient
import Foundation
import Logging
import Synchronization

/// The JSON value of a presence key: who the agent is and how far it has got.
public struct PresenceRecord: Codable, Sendable, Hashable {
  /// The agent's name (the last segment of its key).
  public var name: String
  public var host: String
  public var pid: Int32
  /// etcsync's version.
  public var version: String
  /// When the process started, RFC 3339 in UTC.
  public var startedAt: String
  /// The names of the agent's mappings.
  public var mappings: [String]
  /// The revision whose content every one of its files holds.
  public var appliedRevision: Int64
  /// The current failure, with its mapping; nil while every mapping is fine.
  public var lastError: String?
  /// When ``lastError`` started, RFC 3339 in UTC.
  public var lastErrorAt: String?
  /// When the key was last written, RFC 3339 in UTC.
  public var updatedAt: String
  /// Whether the agent is ready (`/readyz`): false while its etcd probe fails. A stalled
  /// member is seen here only when another member still takes the presence put.
  public var ready: Bool?

  /// Creates a record.
  public init(name: String, host: String, pid: Int32, version: String, startedAt: String, mappings: [String],
              appliedRevision: Int64, lastError: String? = nil, lastErrorAt: String? = nil, updatedAt: String) {
    self.name = name
    self.host = host
    self.pid = pid
    self.version = version
    self.startedAt = startedAt
    self.mappings = mappings
    self.appliedRevision = appliedRevision
    self.lastError = lastError
    self.lastErrorAt = lastErrorAt
    self.updatedAt = updatedAt
  }

  /// The key's value: compact JSON with sorted keys.
  public var json: [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return Array((try? encoder.encode(self)) ?? Data())
  }

  /// Now, as the records write times.
  static func timestamp(_ date: Date = Date()) -> String {
    date.formatted(.iso8601)
  }
}

/// Keeps the agent's presence key: `<prefix>/<name>`, bound to a lease kept alive every
/// TTL/3, holding a ``PresenceRecord``.
///
/// The key is re-put when the applied revision changes (at most once a second) and at once
/// when an error starts or ends. If the lease is lost (etcd restarted from a snapshot that
/// lacks it, or the agent was paused past the TTL) a new lease is granted and the key put
/// again. When ``run()`` is cancelled the lease is revoked, so the key disappears at once.
public actor Presence {
  public let settings: PresenceSettings
  let client: EtcdClient
  let logger: Logger
  private var record: PresenceRecord
  private var leaseID: Int64 = 0
  private var lastPut: ContinuousClock.Instant?
  private var delayedPut: Task<Void, Never>?
  /// How often the key is re-put for a revision change, at most.
  static let minimumInterval: Duration = .seconds(1)

  /// A presence for an agent with `mappings`.
  public init(settings: PresenceSettings, client: EtcdClient, logger: Logger, mappings: [String]) {
    self.settings = settings
    self.client = client
    self.logger = logger
    let now = PresenceRecord.timestamp()
    self.record = PresenceRecord(
      name: settings.name, host: ConfigFiles.hostName(), pid: getpid(), version: EtcSync.version,
      startedAt: now, mappings: mappings, appliedRevision: 0, updatedAt: now)
  }

  /// The lease the key is bound to now (0 before the first grant).
  public var lease: Int64 { self.leaseID }

  private let progress: (stream: AsyncStream<AgentProgress>, continuation: AsyncStream<AgentProgress>.Continuation) =
    AsyncStream.makeStream(of: AgentProgress.self, bufferingPolicy: .bufferingNewest(16))

  /// Hands the agent's progress to ``run()`` (callable from any context, in order).
  public nonisolated func report(_ progress: AgentProgress) {
    self.progress.continuation.yield(progress)
  }

  /// The agent's mappings changed (SIGHUP): the next put carries the new names.
  public func setMappings(_ names: [String]) {
    self.record.mappings = names
  }

  /// Registers and keeps the key until cancelled, then revokes its lease. Progress given
  /// to ``report(_:)`` meanwhile updates the key.
  public func run() async {
    await withTaskGroup(of: Void.self) { group in
      group.addTask { await self.keep() }
      group.addTask {
        for await progress in self.progress.stream { await self.update(progress) }
      }
      await group.next()
      group.cancelAll()
    }
    await self.revoke()
  }

  private func keep() async {
    var backoff: Duration = .milliseconds(250)
    while !Task.isCancelled {
      do {
        let lease = try await self.client.grant(ttl: self.settings.ttlSeconds)
        self.leaseID = lease.id
        try await self.put()
        self.logger.info("presence registered", metadata: [
          "presence.key": "\(self.settings.key)", "lease.id": "\(String(lease.id, radix: 16))", "lease.ttl": "\(lease.ttl)",
        ])
        backoff = .milliseconds(250)
        for try await _ in self.client.keepAlive(lease.id) {}
        if Task.isCancelled { break }
        throw EtcdError(.leaseNotFound, "the keep-alive stream ended")
      } catch {
        if Task.isCancelled { break }
        self.logger.warning("presence lease lost; registering again", metadata: [
          "presence.key": "\(self.settings.key)", "error": "\(error)",
        ])
        try? await Task.sleep(for: backoff)
        backoff = min(backoff * 2, .seconds(5))
      }
    }
  }

  /// Takes the agent's progress: the key follows the applied revision (rate-limited) and
  /// every change of the error at once.
  public func update(_ progress: AgentProgress) async {
    let error = progress.lastError
    let errorChanged = error != self.record.lastError || self.record.ready != progress.ready
    self.record.ready = progress.ready
    // An agent restarted by SIGHUP reports 0 until its first sync: the key keeps the last
    // revision rather than going back.
    let revisionChanged = progress.appliedRevision != 0 && progress.appliedRevision != self.record.appliedRevision
    guard errorChanged || revisionChanged else { return }
    if revisionChanged { self.record.appliedRevision = progress.appliedRevision }
    if errorChanged {
      self.record.lastError = error
      self.record.lastErrorAt = error == nil ? nil : PresenceRecord.timestamp()
    }
    let now = ContinuousClock.now
    if !errorChanged, let lastPut = self.lastPut, now - lastPut < Self.minimumInterval {
      // One delayed put carries every revision change of the interval.
      guard self.delayedPut == nil else { return }
      let at = lastPut + Self.minimumInterval
      self.delayedPut = Task {
        try? await Task.sleep(until: at)
        await self.flushDelayed()
      }
      return
    }
    await self.putOrRetry()
  }

  private func flushDelayed() async {
    self.delayedPut = nil
    await self.putOrRetry()
  }

  /// Puts the record; a failed put (a leader election, say) is tried again a second later,
  /// so the key never stays behind the agent's progress.
  private func putOrRetry() async {
    do {
      try await self.put()
    } catch {
      guard self.delayedPut == nil, !Task.isCancelled else { return }
      self.delayedPut = Task {
        try? await Task.sleep(for: Self.minimumInterval)
        await self.flushDelayed()
      }
    }
  }

  private var putting = false
  private var putAgain = false

  /// Puts the latest record under the current lease. One put at a time: two in flight could
  /// land in either order and leave the key with the older record.
  private func put() async throws {
    if self.putting {
      self.putAgain = true
      return
    }
    self.putting = true
    defer { self.putting = false }
    repeat {
      self.putAgain = false
      try await self.putOnce()
    } while self.putAgain
  }

  private func putOnce() async throws {
    guard self.leaseID != 0 else { return }
    self.record.updatedAt = PresenceRecord.timestamp()
    self.lastPut = ContinuousClock.now
    do {
      _ = try await self.client.put(Array(self.settings.key.utf8), self.record.json, options: PutOptions(lease: self.leaseID))
    } catch {
      self.logger.warning("presence key not updated", metadata: ["presence.key": "\(self.settings.key)", "error": "\(error)"])
      throw error
    }
  }

  /// Revokes the lease (the key goes with it), outside the cancelled task.
  private func revoke() async {
    self.delayedPut?.cancel()
    let id = self.leaseID
    guard id != 0 else { return }
    self.leaseID = 0
    let client = self.client
    let revoked = await Task { () -> Bool in
      (try? await client.revoke(id)) != nil
    }.value
    if revoked {
      self.logger.info("presence revoked", metadata: ["presence.key": "\(self.settings.key)"])
    } else {
      self.logger.warning("presence lease not revoked; the key expires with its TTL", metadata: ["presence.key": "\(self.settings.key)"])
    }
  }
}

/// One agent as `etcsync status` shows it: its presence record, its lease and its lag.
public struct AgentStatus: Sendable, Hashable, Codable {
  /// The presence key.
  public var key: String
  public var record: PresenceRecord
  /// Seconds left on the presence lease (-1 when it has just expired).
  public var leaseSecondsLeft: Int64
  /// The cluster's revision minus the agent's applied revision.
  public var lag: Int64
}

/// Reads the fleet under a presence prefix.
public enum FleetStatus {
  /// Every agent registered under `prefix`, by name, and the cluster's revision. A key whose
  /// value is not a presence record is skipped and reported in `problems`.
  public static func read(_ client: EtcdClient, prefix: String) async throws(EtcdError)
    -> (agents: [AgentStatus], revision: Int64, problems: [String])
  {
    let base = prefix.hasSuffix("/") ? prefix : prefix + "/"
    let response = try await client.get(.prefix(base))
    var agents: [AgentStatus] = []
    var problems: [String] = []
    for kv in response.kvs {
      let key = String(decoding: kv.key, as: UTF8.self)
      guard let record = try? JSONDecoder().decode(PresenceRecord.self, from: Data(kv.value)) else {
        problems.append("\(key): not a presence record")
        continue
      }
      var left: Int64 = -1
      if kv.lease != 0 { left = (try? await client.timeToLive(kv.lease).ttl) ?? -1 }
      agents.append(AgentStatus(key: key, record: record, leaseSecondsLeft: left,
                                lag: max(0, response.header.revision - record.appliedRevision)))
    }
    return (agents.sorted { $0.record.name < $1.record.name }, response.header.revision, problems)
  }
}
