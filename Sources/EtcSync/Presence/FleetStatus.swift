import EtcdClient
import Foundation
import Logging
import Synchronization

/// One agent as `etcsync status` shows it: its presence record, its lease and its lag.
public struct AgentStatus: Sendable, Hashable, Codable {
  /// The presence key (invalid UTF-8 replaced; ``keyBytes`` is the key itself).
  public var key: String
  /// The presence key's bytes: agents are told apart by these, never by ``key``, whose
  /// comparison is Unicode's canonical equivalence.
  public var keyBytes: [UInt8] = []
  public var record: PresenceRecord
  /// Seconds left on the presence lease (-1 when unknown).
  public var leaseSecondsLeft: Int64
  /// The cluster's revision (the one `status` asked at, see ``FleetStatus/read(_:prefix:asOf:)``)
  /// minus the revision the agent is current through (``PresenceRecord/currentThrough``): 0
  /// for an idle, healthy agent that answered. For a record with nonsense in it (``invalid``)
  /// the cluster's revision: it is current through nothing that can be trusted.
  public var lag: Int64
  /// Why the record cannot be true (a negative revision, one beyond the revision the record
  /// was written at, a pid that is none, a timestamp that is not RFC 3339), nil when nothing
  /// says so. Such a record, forged or corrupt, is shown but never counts as current.
  public var invalid: String? = nil

  enum CodingKeys: String, CodingKey {
    case key, record, leaseSecondsLeft, lag, invalid
  }

  /// Whether the agent counts as current through `revision`: its record is plausible and says so.
  public func isCurrent(through revision: Int64) -> Bool {
    self.invalid == nil && self.record.currentThrough >= revision
  }

  /// `revision` minus `currentThrough`, at least 0 and never trapping, whatever the record
  /// says: a current-through revision below any `revision` (`Int64.min` from a forged record)
  /// gives `Int64.max` when the difference does not fit. Nil `currentThrough` (a record not
  /// to be trusted) lags by all of `revision`.
  public static func lag(revision: Int64, currentThrough: Int64?) -> Int64 {
    guard let currentThrough else { return max(0, revision) }
    let (difference, overflow) = revision.subtractingReportingOverflow(currentThrough)
    if overflow { return currentThrough < 0 ? .max : 0 }
    return max(0, difference)
  }
}

/// Reads the fleet under a presence prefix.
public enum FleetStatus {
  /// Every agent registered under `prefix`, by name, and the cluster's revision. A key whose
  /// value is not a presence record, or that is bound to no lease (no running agent keeps it),
  /// is skipped and reported in `problems`; one whose lease expired since the read is left out.
  /// A record that cannot be true (see ``PresenceRecord/implausibility(writtenAt:)``: anyone
  /// allowed to write the prefix can put one) is listed with ``AgentStatus/invalid`` set.
  /// Each key is one agent: registering refuses a name that another running agent holds.
  ///
  /// The lag is measured from `asOf` when given (the revision of a ``ProgressRequest`` that
  /// `status` sent: the agents' answers, puts made after it, do not count against each
  /// other), else from the cluster's revision; so is the revision returned.
  ///
  /// With `leases` false the leases' time left is not asked (-1 for every agent): one request
  /// per agent, which the reads a wait repeats do without (a key whose lease expired is gone
  /// from the next read anyway).
  public static func read(_ client: EtcdClient, prefix: String, asOf: Int64? = nil, leases: Bool = true) async throws(EtcdError)
    -> (agents: [AgentStatus], revision: Int64, problems: [String])
  {
    let base = prefix.hasSuffix("/") ? prefix : prefix + "/"
    // Paged (a fleet of 10,000 agents is one 10,000-key range), every page at one revision.
    let snapshot = try await client.getAll(.prefix(base), pageSize: 1_000)
    let revision = asOf ?? snapshot.revision
    let requestKey = Array(ProgressRequest.key(prefix: prefix).utf8)
    var found: [(kv: KeyValue, record: PresenceRecord)] = []
    var problems: [String] = []
    for kv in snapshot.kvs where kv.key != requestKey {
      guard let record = try? JSONDecoder().decode(PresenceRecord.self, from: Data(kv.value)) else {
        problems.append("\(escapeBytes(kv.key)): not a presence record")
        continue
      }
      guard kv.lease != 0 else {
        problems.append("\(escapeBytes(kv.key)): bound to no lease, so no running agent keeps it; not counted")
        continue
      }
      found.append((kv, record))
    }
    let left = leases ? await Self.timeLeft(of: Set(found.map(\.kv.lease)), client) : [:]
    var agents: [AgentStatus] = []
    for (kv, record) in found {
      // Expired since the read: the agent is gone. Unknown (the request failed): -1, kept.
      let seconds = left[kv.lease] ?? -1
      if left[kv.lease] != nil, seconds < 0 { continue }
      let invalid = record.implausibility(writtenAt: kv.modRevision)
      agents.append(AgentStatus(key: String(decoding: kv.key, as: UTF8.self), keyBytes: kv.key, record: record,
                                leaseSecondsLeft: seconds,
                                lag: AgentStatus.lag(revision: revision, currentThrough: invalid == nil ? record.currentThrough : nil),
                                invalid: invalid))
    }
    // By name, then by key bytes: two names that are canonically equivalent stay two agents.
    agents.sort { a, b in
      a.record.name != b.record.name ? a.record.name < b.record.name : a.keyBytes.lexicographicallyPrecedes(b.keyBytes)
    }
    return (agents, revision, problems)
  }
}

extension FleetStatus {
  /// How many LeaseTimeToLive requests are in flight at once.
  static let leaseLookups = 64

  /// Each lease's seconds left (etcd's -1: expired), by lease; a lease whose request failed is
  /// missing. One request per lease, `leaseLookups` at a time on the client's connection (for
  /// 10,000 agents, one after the other took most of 10 s).
  static func timeLeft(of leases: Set<Int64>, _ client: EtcdClient) async -> [Int64: Int64] {
    await withTaskGroup(of: (Int64, Int64?).self) { group in
      var pending = leases.makeIterator()
      func next() -> Bool {
        guard let lease = pending.next() else { return false }
        group.addTask { (lease, try? await client.timeToLive(lease).ttl) }
        return true
      }
      for _ in 0..<Self.leaseLookups where !next() { break }
      var left: [Int64: Int64] = [:]
      for await (lease, seconds) in group {
        if let seconds { left[lease] = seconds }
        _ = next()
      }
      return left
    }
  }
}

/// How `etcsync status` asks the fleet to say how far each agent is current.
///
/// An idle agent's watch delivers nothing, so by itself its record would never claim the
/// revisions that did not concern it. `status` puts the request key, `<prefix>/.progress/request`
/// (no agent name has a `/`, so no agent's key), with the revision it waits for as its
/// value (`0`: the request's own revision). Every agent watches that key on the stream it
/// already has. On a request at revision P it checks that nothing in its ranges changed
/// between the revision its watch has reached and P (one linearizable read per range at P,
/// keys only, of the keys modified since, plus the count), takes P as reached if so (else the
/// changes are on their way through its watch, and it checks again once they are in), and
/// puts its record, at most once a second, once it is current through the request: its files
/// written and reloaded, no mapping failing. Nothing is written while nobody asks.
public enum ProgressRequest {
  /// The request key under `prefix`.
  public static func key(prefix: String) -> String {
    (prefix.hasSuffix("/") ? prefix : prefix + "/") + ".progress/request"
  }

  /// Puts a request for the agents to be current through `wanted` (0: the request's own
  /// revision); returns the request's revision.
  public static func send(_ client: EtcdClient, prefix: String, wanted: Int64) async throws(EtcdError) -> Int64 {
    try await client.put(Self.key(prefix: prefix), "\(max(0, wanted))").header.revision
  }

  /// The revision a request at `revision` with `value` asks the agents to be current through:
  /// the revision it waits for, or the request's own revision when that comes first (a
  /// revision still to come is asked for again once it exists) or when the value is not one.
  public static func target(value: [UInt8], revision: Int64) -> Int64 {
    guard let wanted = Int64(String(decoding: value, as: UTF8.self)), wanted > 0 else { return revision }
    return min(wanted, revision)
  }
}
