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
  /// The revision the agent is current through: its watch has delivered every change of its
  /// ranges up to it, whether or not one touched them, and every file holds them (written,
  /// reloaded, no mapping failing). Nil in records of agents older than this field.
  public var currentRevision: Int64?
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
              appliedRevision: Int64, currentRevision: Int64? = nil, lastError: String? = nil, lastErrorAt: String? = nil,
              updatedAt: String) {
    self.name = name
    self.host = host
    self.pid = pid
    self.version = version
    self.startedAt = startedAt
    self.mappings = mappings
    self.appliedRevision = appliedRevision
    self.currentRevision = currentRevision
    self.lastError = lastError
    self.lastErrorAt = lastErrorAt
    self.updatedAt = updatedAt
  }

  /// How far the agent is current: ``currentRevision``, or the applied revision in the record
  /// of an agent that does not report it.
  public var currentThrough: Int64 { max(self.currentRevision ?? 0, self.appliedRevision) }

  /// Why the record cannot be true for a key written at revision `modRevision`, nil when
  /// nothing says so: a negative revision; a revision beyond `modRevision` (an agent puts its
  /// record after it reached the revisions the record names, so each is below the put's);
  /// a pid that is no process id; a start, update or error time that is not RFC 3339. Only
  /// a forged or corrupt record has one, and ``FleetStatus`` never counts it as current.
  public func implausibility(writtenAt modRevision: Int64) -> String? {
    var reasons: [String] = []
    let revisions: [(String, Int64?)] = [("appliedRevision", self.appliedRevision), ("currentRevision", self.currentRevision)]
    for (field, value) in revisions {
      guard let value else { continue }
      if value < 0 {
        reasons.append("\(field) \(value) is negative")
      } else if value > modRevision {
        reasons.append("\(field) \(value) is beyond the revision the record was written at (\(modRevision))")
      }
    }
    if self.pid <= 0 { reasons.append("pid \(self.pid) is no process id") }
    let times: [(String, String?)] = [("startedAt", self.startedAt), ("updatedAt", self.updatedAt), ("lastErrorAt", self.lastErrorAt)]
    for (field, value) in times {
      guard let value, !Self.isTimestamp(value) else { continue }
      reasons.append("\(field) \"\(escapeControlCharacters(String(value.prefix(64)), backslashes: true))\" is not an RFC 3339 time")
    }
    return reasons.isEmpty ? nil : reasons.joined(separator: "; ")
  }

  /// Whether `text` is a time as the records write them (RFC 3339 in UTC, with or without
  /// fractional seconds), between the years 1970 and 9999.
  static func isTimestamp(_ text: String) -> Bool {
    guard text.utf8.count <= 64 else { return false }
    let plain = Date.ISO8601FormatStyle()
    let fractional = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    guard let date = (try? plain.parse(text)) ?? (try? fractional.parse(text)) else { return false }
    // 1970-01-01 to 9999-12-31 (the parser takes a five-digit year too).
    return date.timeIntervalSince1970 >= 0 && date.timeIntervalSince1970 < 253_402_300_800
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

/// Who holds a presence name: what its key's value and lease say.
public struct PresenceHolder: Sendable, Hashable, CustomStringConvertible {
  /// The holder's host, pid and start, from its record (nil when the value is not a record).
  public var host: String?
  public var pid: Int32?
  public var startedAt: String?
  /// The lease the key is bound to (0: none).
  public var lease: Int64

  /// The holder of `kv`, a presence key.
  public init(_ kv: KeyValue) {
    let record = try? JSONDecoder().decode(PresenceRecord.self, from: Data(kv.value))
    self.host = record?.host
    self.pid = record?.pid
    self.startedAt = record?.startedAt
    self.lease = kv.lease
  }

  /// The lease as etcdctl writes it: hexadecimal.
  public var leaseHex: String { String(UInt64(bitPattern: self.lease), radix: 16) }

  /// `host "web-01", pid 812, started 2026-11-25T13:50:02Z, lease 694d7a8c9c1f3a04`, with the
  /// record's fields escaped (they come from etcd).
  public var description: String {
    var text = "host \"\(escapeControlCharacters(self.host ?? "?", backslashes: true))\""
    if let pid { text += ", pid \(pid)" }
    if let startedAt { text += ", started \(escapeControlCharacters(startedAt, backslashes: true))" }
    return text + ", lease \(self.leaseHex)"
  }

  var metadata: Logger.Metadata {
    ["holder.host": "\(self.host ?? "?")", "holder.pid": "\(self.pid.map(String.init) ?? "?")", "holder.lease": "\(self.leaseHex)"]
  }
}

/// A presence name held by another running agent: registering is refused (`etcsync run` exits
/// with status 2) unless the agent was told to take the name over.
public struct PresenceConflict: Error, Sendable, CustomStringConvertible {
  /// The presence key.
  public var key: String
  /// Who holds it.
  public var holder: PresenceHolder

  public var description: String {
    "presence key \"\(escapeControlCharacters(self.key, backslashes: true))\" is held by another running agent (\(self.holder)); "
      + "stop that agent, give this one another presence.name, or take the name over with "
      + "`etcsync run --take-over` (or presence.takeOver: true)"
  }
}
