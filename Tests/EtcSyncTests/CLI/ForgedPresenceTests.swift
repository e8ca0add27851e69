@testable import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Testing

/// Presence records are written by anyone allowed to write the presence prefix (any agent's
/// credentials): their numbers are never trusted for arithmetic, and nonsense in them makes
/// a record that is shown but never counts as current.
@Suite("Forged presence records")
struct ForgedPresenceTests {
  static func record(applied: Int64, current: Int64?, pid: Int32 = 1, startedAt: String = "2026-12-05T10:00:00Z",
                     updatedAt: String = "2026-12-05T10:00:01Z", lastErrorAt: String? = nil) -> PresenceRecord {
    PresenceRecord(name: "forged", host: "h", pid: pid, version: "0", startedAt: startedAt, mappings: [],
                   appliedRevision: applied, currentRevision: current, lastErrorAt: lastErrorAt, updatedAt: updatedAt)
  }

  @Test("lag never traps and is at least 0, over every extreme revision")
  func lagExtremes() {
    let extremes: [Int64] = [.min, .min + 1, -1, 0, 1, 41, 42, 43, .max - 1, .max]
    for revision in extremes {
      for through in extremes {
        let lag = AgentStatus.lag(revision: revision, currentThrough: through)
        #expect(lag >= 0)
        // The exact difference, clamped to 0...Int64.max.
        let exact = Int128(revision) - Int128(through)
        #expect(lag == Int64(min(max(exact, 0), Int128(Int64.max))), "\(revision) - \(through)")
      }
      #expect(AgentStatus.lag(revision: revision, currentThrough: nil) == max(0, revision))
    }
    #expect(AgentStatus.lag(revision: 42, currentThrough: .min) == .max)
    #expect(AgentStatus.lag(revision: 42, currentThrough: 40) == 2)
    #expect(AgentStatus.lag(revision: 42, currentThrough: .max) == 0)
    #expect(AgentStatus.lag(revision: .max, currentThrough: -1) == .max)
  }

  @Test("a record with negative revisions, revisions beyond its own put, no pid or a bad time is invalid; a true one is not")
  func implausible() {
    let written: Int64 = 100
    #expect(Self.record(applied: 0, current: nil).implausibility(writtenAt: written) == nil, "a starting agent")
    #expect(Self.record(applied: 99, current: 99).implausibility(writtenAt: written) == nil)
    #expect(Self.record(applied: 50, current: nil, lastErrorAt: "2026-12-05T10:00:00.123Z").implausibility(writtenAt: written) == nil)
    let cases: [(PresenceRecord, String)] = [
      (Self.record(applied: .min, current: .min), "appliedRevision -9223372036854775808 is negative"),
      (Self.record(applied: -1, current: 5), "appliedRevision -1 is negative"),
      (Self.record(applied: 5, current: -1), "currentRevision -1 is negative"),
      (Self.record(applied: .max, current: nil), "appliedRevision 9223372036854775807 is beyond"),
      (Self.record(applied: 5, current: .max), "currentRevision 9223372036854775807 is beyond"),
      (Self.record(applied: 5, current: 101), "currentRevision 101 is beyond the revision the record was written at (100)"),
      (Self.record(applied: 5, current: 5, pid: 0), "pid 0 is no process id"),
      (Self.record(applied: 5, current: 5, pid: .min), "pid -2147483648 is no process id"),
      (Self.record(applied: 5, current: 5, startedAt: "yesterday"), #"startedAt "yesterday" is not an RFC 3339 time"#),
      (Self.record(applied: 5, current: 5, updatedAt: "1969-12-31T23:59:59Z"), "updatedAt"),
      (Self.record(applied: 5, current: 5, updatedAt: "99999-01-01T00:00:00Z"), "updatedAt"),
      (Self.record(applied: 5, current: 5, lastErrorAt: "a\\n\u{1b}" + String(repeating: "x", count: 10_000)), #"lastErrorAt "a\\n\x1b"#),
    ]
    for (record, reason) in cases {
      let found = record.implausibility(writtenAt: written)
      #expect(found?.contains(reason) == true, "\(record): \(found ?? "nil")")
      let status = AgentStatus(key: "k", keyBytes: Array("k".utf8), record: record, leaseSecondsLeft: 1, lag: 0, invalid: found)
      #expect(!status.isCurrent(through: 0) && !status.isCurrent(through: .min), "never current: \(record)")
    }
    #expect((Self.record(applied: .min, current: .min).implausibility(writtenAt: written)?.count ?? 0) < 300, "bounded")
  }

  @Test("records with extreme numbers decode or are refused; none traps")
  func decoding() throws {
    let decoded = try JSONDecoder().decode(PresenceRecord.self, from: Data(#"""
      {"name":"f","host":"h","pid":1,"version":"0","startedAt":"s","mappings":[],"appliedRevision":-9223372036854775808,
       "currentRevision":-9223372036854775808,"updatedAt":"u"}
      """#.utf8))
    #expect(decoded.currentThrough == .min)
    for bad in ["9223372036854775808", "-9223372036854775809", "1e400", "1.5", "\"1\"", "null"] {
      let json = #"{"name":"f","host":"h","pid":1,"version":"0","startedAt":"s","mappings":[],"appliedRevision":"# + bad + #","updatedAt":"u"}"#
      #expect((try? JSONDecoder().decode(PresenceRecord.self, from: Data(json.utf8))) == nil, "\(bad)")
    }
  }

  /// A record with both revisions at `value`, on a lease, under /etcsync/agents/forged.
  static func forge(_ h: AgentHarness, name: String, revisions value: Int64) async throws {
    let lease = try await h.client.grant(ttl: 120)
    let json = #"{"name":"\#(name)","host":"evil","pid":1,"version":"0","startedAt":"2026-12-05T10:00:00Z","mappings":[],"#
      + #""appliedRevision":\#(value),"currentRevision":\#(value),"updatedAt":"2026-12-05T10:00:00Z"}"#
    _ = try await h.client.put(Array("/etcsync/agents/\(name)".utf8), Array(json.utf8), options: PutOptions(lease: lease.id))
  }

  @Test("etcsync status, --json and --wait-revision --min-agents with a forged Int64.min record and an Int64.max one: exit normally, show them invalid, never count them")
  func forgedRecordsThroughTheBinary() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await Self.forge(h, name: "low", revisions: .min)
    try await Self.forge(h, name: "high", revisions: .max)
    let revision = try await h.put("/app/x", "1")
    let endpoint = ["--endpoints", h.server.endpoint]

    let table = try await EtcsyncProcess.run(["status"] + endpoint)
    #expect(table.status == 0, "\(table.output)\n\(table.error)")
    let rows = CurrentThroughTests.rows(table.output)
    #expect(rows["low"]?[4] == "-9223372036854775808" && rows["low"]?[5] == "invalid", "\(table.output)")
    #expect(rows["high"]?[4] == "9223372036854775807" && rows["high"]?[5] == "invalid", "\(table.output)")
    #expect(table.output.contains("2 agent(s)"), "\(table.output)")
    #expect(table.error.contains("/etcsync/agents/low: invalid record (appliedRevision -9223372036854775808 is negative"), "\(table.error)")
    #expect(table.error.contains("/etcsync/agents/high: invalid record (appliedRevision 9223372036854775807 is beyond"), "\(table.error)")

    let json = try await EtcsyncProcess.run(["status", "--json"] + endpoint)
    #expect(json.status == 0, "\(json.error)")
    let object = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
    let agents = try #require(object["agents"] as? [[String: Any]])
    #expect(agents.count == 2 && agents.allSatisfy { ($0["invalid"] as? String)?.isEmpty == false }, "\(json.output)")

    // The forged Int64.max record does not satisfy the deploy gate, and Int64.min does not trap it.
    let waited = try await EtcsyncProcess.run(["status", "--wait-revision", "\(revision)", "--min-agents", "1", "--timeout", "1s"] + endpoint)
    #expect(waited.status == 1, "\(waited.output)\n\(waited.error)")
    #expect(waited.error.contains("0 of 1 agent(s) are current through revision \(revision)"), "\(waited.error)")
    #expect(waited.error.contains("high (current through 9223372036854775807, invalid record: appliedRevision"), "\(waited.error)")
    #expect(waited.error.contains("low (current through -9223372036854775808, invalid record: appliedRevision"), "\(waited.error)")
  }
}
