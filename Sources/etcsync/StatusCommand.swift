import ArgumentParser
import EtcSync
import EtcdClient
import Foundation

/// `etcsync status`: every agent registered under the presence prefix, and how far each is
/// current; optionally a wait until the fleet is current through a revision.
struct StatusCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "status",
    abstract: "List the agents registered in etcd, or wait until they are current through a revision.",
    discussion: """
      Reads the presence keys under the prefix (presence.prefix of the configuration, or
      /etcsync/agents) and prints one line per agent: name, host, version, applied revision,
      the revision it is current through, its lag, seconds left on its lease, readiness and
      last error.

      An agent is current through R once its watch has delivered every change of its keys up
      to R, whether or not one touched them, and its files and reloads are done (a failing
      mapping holds it back). To learn it from idle agents, status first puts a request key,
      <prefix>/.progress/request, which the agents watch; each answers, at most once a second,
      by putting its record. LAG is the request's revision minus CURRENT: 0 for an idle,
      healthy agent. A record that cannot be true (a negative revision, one beyond the
      revision it was written at, a bad pid or time: forged or corrupt) is shown with LAG
      "invalid", named on standard error, and never counts as current. Without write
      permission on that key status says so and shows what the agents last reported.

      With --wait-revision N it waits until every listed agent (or --min-agents of them) is
      current through N, asking again every second, then exits 0; after --timeout it exits 1
      and names the agents that lag. An agent that vanished meanwhile (its lease expired)
      counts as lagging. Example: a deploy pipeline puts its configuration, takes the revision
      from the put, and waits for the fleet:

        rev=$(etcdctl put /apps/web/config x -w json | jq .header.revision)
        etcsync status --wait-revision "$rev" --min-agents 3 --timeout 60s

      --timeout, only with --wait-revision, takes a duration as the configuration writes them
      (60s, 1m30s, 500ms); a bare number or 0 is refused.

      Exit codes: 0 ok, 1 timed out waiting, 2 configuration error, 3 etcd unreachable.
      """
  )

  @OptionGroup var options: GlobalOptions
  @Option(help: "The presence prefix (default: presence.prefix of the configuration, or /etcsync/agents).")
  var prefix: String?
  @Flag(help: "Print JSON instead of a table.") var json = false
  @Option(name: .customLong("wait-revision"), help: "Wait until the agents are current through this revision.")
  var waitRevision: Int64?
  @Option(name: .customLong("min-agents"), help: "With --wait-revision: how many agents must be current through it (default: every listed agent, at least one).")
  var minAgents: Int?
  @Option(help: "With --wait-revision: how long to wait (default 60s): \(DurationFlag.helpForm).", transform: DurationFlag.parse)
  var timeout: DurationFlag?

  /// How long a plain `status` waits for the agents' answers to its request, at most. Each
  /// answers within a second (its presence puts are at most a second apart).
  static let answerWait: Duration = .milliseconds(1500)

  func validate() throws {
    if let minAgents, minAgents < 1 { throw ValidationError("--min-agents: expected at least 1, got \(minAgents)") }
    if self.minAgents != nil && self.waitRevision == nil { throw ValidationError("--min-agents needs --wait-revision") }
    // A plain status waits for no revision: a timeout there would be silently ignored.
    if self.timeout != nil && self.waitRevision == nil { throw ValidationError("--timeout needs --wait-revision") }
  }

  func run() async throws {
    let (configuration, logger) = try self.options.load(fileOptional: true)
    let prefix = self.prefix ?? configuration.presence?.prefix ?? PresenceSettings(name: "-").prefix
    try await withAgentClient(configuration, logger: logger, timeout: .seconds(10)) { client in
      let asker = Asker(client: client, prefix: prefix)
      guard let wanted = self.waitRevision else {
        // Ask, then wait briefly for the agents that can answer: an agent with a failing
        // mapping or without etcd does not, and shows its lag.
        // The reads while waiting leave out the leases' time left (a request per agent); the
        // table's read asks it.
        let asked = await asker.ask(wanted: 0)
        var fleet = try await FleetStatus.read(client, prefix: prefix, asOf: asked, leases: false)
        let deadline = ContinuousClock.now + Self.answerWait
        while let asked, ContinuousClock.now < deadline,
          fleet.agents.contains(where: { !$0.isCurrent(through: asked) && $0.invalid == nil && $0.record.lastError == nil && $0.record.ready != false })
        {
          try await Task.sleep(for: .milliseconds(100))
          fleet = try await FleetStatus.read(client, prefix: prefix, asOf: asked, leases: false)
        }
        fleet = try await FleetStatus.read(client, prefix: prefix, asOf: asked)
        self.print(fleet.agents, revision: fleet.revision, problems: fleet.problems)
        return
      }
      let timeout = self.timeout ?? DurationFlag(seconds: 60)
      let deadline = ContinuousClock.now + timeout.duration
      // Every agent seen while waiting, with the latest record: one that vanishes (its lease
      // ran out while it was stopped) is still named among the laggards.
      // Keyed by the key's bytes: two keys that differ only in their Unicode normalization
      // are two agents.
      var seen: [[UInt8]: AgentStatus] = [:]
      var asked = await asker.ask(wanted: wanted)
      var lastAsk = ContinuousClock.now
      while true {
        let fleet = try await FleetStatus.read(client, prefix: prefix, asOf: asked, leases: false)
        let listed = Set(fleet.agents.map(\.keyBytes))
        for agent in fleet.agents { seen[agent.keyBytes] = agent }
        // A record with nonsense in it (forged or corrupt) never counts as current.
        let done = fleet.agents.filter { $0.isCurrent(through: wanted) }
        // Every agent seen counts: one whose lease ran out while we waited is not current.
        let required = self.minAgents ?? max(1, seen.count)
        if done.count >= required {
          // The table, with the leases' time left, from one more read.
          let shown = try await FleetStatus.read(client, prefix: prefix, asOf: asked)
          self.print(shown.agents, revision: shown.revision, problems: shown.problems)
          return
        }
        if ContinuousClock.now >= deadline {
          let laggards = seen.values.filter { !$0.isCurrent(through: wanted) || !listed.contains($0.keyBytes) }
            .sorted { $0.record.name < $1.record.name }
            .map { agent in
              let why = agent.invalid.map { ", invalid record: " + $0 } ?? ""
              let gone = listed.contains(agent.keyBytes) ? "" : ", gone: its lease expired"
              return "\(escapeControlCharacters(agent.record.name, backslashes: true)) (current through \(agent.record.currentThrough)\(escapeControlCharacters(why))\(gone))"
            }
          var message = "etcsync: timed out after \(timeout): \(done.count) of \(required) agent(s) are current through revision \(wanted)"
          message += laggards.isEmpty ? "; no agent is registered under \(escapeControlCharacters(prefix, backslashes: true))" : "; lagging: " + laggards.joined(separator: ", ")
          FileHandle.standardError.write(Data((message + "\n").utf8))
          throw ExitCode(1)
        }
        // Asked again every second: a request an agent missed (its watch was reconnecting),
        // or a revision that did not exist yet when asked.
        if ContinuousClock.now - lastAsk >= .seconds(1) {
          asked = await asker.ask(wanted: wanted) ?? asked
          lastAsk = ContinuousClock.now
        }
        try await Task.sleep(for: .milliseconds(100))
      }
    }
  }

  /// Prints the fleet. Every field of a record comes from etcd, where anyone allowed to write
  /// the prefix can put anything: no control character reaches the terminal (the table
  /// escapes them and backslashes, and the JSON writes the ones JSON leaves raw as `\uNNNN`).
  /// The problems and the invalid records' reasons are escaped text already (their keys by
  /// ``escapeBytes(_:)``): only a control character left in them would be escaped.
  private func print(_ agents: [AgentStatus], revision: Int64, problems: [String]) {
    for problem in problems { FileHandle.standardError.write(Data("etcsync: \(escapeControlCharacters(problem))\n".utf8)) }
    for agent in agents {
      guard let invalid = agent.invalid else { continue }
      let message = "\(escapeBytes(agent.keyBytes)): invalid record (\(invalid)); shown, never counted as current"
      FileHandle.standardError.write(Data("etcsync: \(escapeControlCharacters(message))\n".utf8))
    }
    if self.json {
      struct Output: Encodable {
        var revision: Int64
        var agents: [AgentStatus]
      }
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
      let data = (try? encoder.encode(Output(revision: revision, agents: agents))) ?? Data()
      Swift.print(escapeJSONControlCharacters(String(decoding: data, as: UTF8.self)))
      return
    }
    var rows = [["NAME", "HOST", "VERSION", "APPLIED", "CURRENT", "LAG", "LEASE", "READY", "ERROR"]]
    for agent in agents {
      rows.append([
        agent.record.name, agent.record.host, agent.record.version, "\(agent.record.appliedRevision)",
        "\(agent.record.currentThrough)", agent.invalid == nil ? "\(agent.lag)" : "invalid",
        agent.leaseSecondsLeft >= 0 ? "\(agent.leaseSecondsLeft)s" : "-", agent.record.ready.map { $0 ? "yes" : "no" } ?? "-",
        agent.record.lastError ?? "-",
      ].map { escapeControlCharacters($0, backslashes: true) })
    }
    let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
    for row in rows {
      let cells = row.enumerated().map { index, cell in
        index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
      }
      Swift.print(cells.joined(separator: "  "))
    }
    Swift.print("cluster revision \(revision), \(agents.count) agent(s)")
  }
}

/// Puts `status`'s request key (``ProgressRequest``); after a refusal (no write permission on
/// it) says so once and asks no more.
final class Asker: @unchecked Sendable {
  let client: EtcdClient
  let prefix: String
  private var refused = false
  private var warned = false

  init(client: EtcdClient, prefix: String) {
    self.client = client
    self.prefix = prefix
  }

  /// The request's revision; nil when it could not be put.
  func ask(wanted: Int64) async -> Int64? {
    guard !self.refused else { return nil }
    do {
      return try await ProgressRequest.send(self.client, prefix: self.prefix, wanted: wanted)
    } catch {
      if error.code == .permissionDenied { self.refused = true }
      if !self.warned {
        self.warned = true
        let key = escapeControlCharacters(ProgressRequest.key(prefix: self.prefix), backslashes: true)
        FileHandle.standardError.write(Data(
          "etcsync: cannot ask the agents how far they are current (put \(key): \(escapeControlCharacters("\(error)", backslashes: true))); showing what they last reported\n".utf8))
      }
      return nil
    }
  }
}
