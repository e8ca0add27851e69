import ArgumentParser
import EtcSync
import EtcdClient
import Foundation

/// `etcsync status`: every agent registered under the presence prefix, and optionally a wait
/// until the fleet has applied a revision.
struct StatusCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "status",
    abstract: "List the agents registered in etcd, or wait until they have applied a revision.",
    discussion: """
      Reads the presence keys under the prefix (presence.prefix of the configuration, or
      /etcsync/agents) and prints one line per agent: name, host, version, applied revision,
      lag behind the cluster's revision, last error, and seconds left on its lease.

      With --wait-revision N it waits until every listed agent (or --min-agents of them) has
      applied revision N or later, then exits 0; after --timeout it exits 1 and names the
      agents that lag. An agent that vanished meanwhile (its lease expired) counts as lagging.
      Example: a deploy pipeline puts its configuration, takes the revision from the put, and
      waits for the fleet:

        rev=$(etcdctl put /apps/web/config x -w json | jq .header.revision)
        etcsync status --wait-revision "$rev" --min-agents 3 --timeout 60s

      Exit codes: 0 ok, 1 timed out waiting, 2 configuration error, 3 etcd unreachable.
      """
  )

  @OptionGroup var options: GlobalOptions
  @Option(help: "The presence prefix (default: presence.prefix of the configuration, or /etcsync/agents).")
  var prefix: String?
  @Flag(help: "Print JSON instead of a table.") var json = false
  @Option(name: .customLong("wait-revision"), help: "Wait until the agents have applied this revision.")
  var waitRevision: Int64?
  @Option(name: .customLong("min-agents"), help: "With --wait-revision: how many agents must have applied it (default: every listed agent, at least one).")
  var minAgents: Int?
  @Option(help: "With --wait-revision: how long to wait, as 30s or 2m (default 60s).")
  var timeout: String = "60s"

  func validate() throws {
    if let minAgents, minAgents < 1 { throw ValidationError("--min-agents: expected at least 1, got \(minAgents)") }
    if self.minAgents != nil && self.waitRevision == nil { throw ValidationError("--min-agents needs --wait-revision") }
    do { _ = try GoDuration.parse(self.timeout) } catch {
      throw ValidationError("--timeout: expected a duration such as 60s, got \"\(self.timeout)\"")
    }
  }

  func run() async throws {
    let (configuration, logger) = try self.options.load(fileOptional: true)
    let prefix = self.prefix ?? configuration.presence?.prefix ?? PresenceSettings(name: "-").prefix
    let limit = (try? GoDuration.parse(self.timeout)) ?? .seconds(60)
    try await withAgentClient(configuration, logger: logger, timeout: 10) { client in
      guard let wanted = self.waitRevision else {
        let fleet = try await FleetStatus.read(client, prefix: prefix)
        self.print(fleet.agents, revision: fleet.revision, problems: fleet.problems)
        return
      }
      let deadline = ContinuousClock.now + limit
      // Every agent seen while waiting, with the latest record: one that vanishes (its lease
      // ran out while it was stopped) is still named among the laggards.
      // Keyed by the key's bytes: two keys that differ only in their Unicode normalization
      // are two agents.
      var seen: [[UInt8]: AgentStatus] = [:]
      while true {
        let fleet = try await FleetStatus.read(client, prefix: prefix)
        let listed = Set(fleet.agents.map(\.keyBytes))
        for agent in fleet.agents { seen[agent.keyBytes] = agent }
        let done = fleet.agents.filter { $0.record.appliedRevision >= wanted }
        // Every agent seen counts: one whose lease ran out while we waited has not applied N.
        let required = self.minAgents ?? max(1, seen.count)
        if done.count >= required {
          self.print(fleet.agents, revision: fleet.revision, problems: fleet.problems)
          return
        }
        if ContinuousClock.now >= deadline {
          let laggards = seen.values.filter { $0.record.appliedRevision < wanted || !listed.contains($0.keyBytes) }
            .sorted { $0.record.name < $1.record.name }
            .map { agent in
              "\(escapeControlCharacters(agent.record.name)) (applied \(agent.record.appliedRevision)\(listed.contains(agent.keyBytes) ? "" : ", gone: its lease expired"))"
            }
          var message = "etcsync: timed out after \(self.timeout): \(done.count) of \(required) agent(s) have applied revision \(wanted)"
          message += laggards.isEmpty ? "; no agent is registered under \(escapeControlCharacters(prefix))" : "; lagging: " + laggards.joined(separator: ", ")
          FileHandle.standardError.write(Data((message + "\n").utf8))
          throw ExitCode(1)
        }
        try await Task.sleep(for: .milliseconds(200))
      }
    }
  }

  /// Prints the fleet. Every field of a record comes from etcd, where anyone allowed to write
  /// the prefix can put anything: no control character reaches the terminal (the table
  /// escapes them, and the JSON writes the ones JSON leaves raw as `\uNNNN`).
  private func print(_ agents: [AgentStatus], revision: Int64, problems: [String]) {
    for problem in problems { FileHandle.standardError.write(Data("etcsync: \(escapeControlCharacters(problem))\n".utf8)) }
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
    var rows = [["NAME", "HOST", "VERSION", "APPLIED", "LAG", "LEASE", "READY", "ERROR"]]
    for agent in agents {
      rows.append([
        agent.record.name, agent.record.host, agent.record.version, "\(agent.record.appliedRevision)", "\(agent.lag)",
        agent.leaseSecondsLeft >= 0 ? "\(agent.leaseSecondsLeft)s" : "-", agent.record.ready.map { $0 ? "yes" : "no" } ?? "-",
        agent.record.lastError ?? "-",
      ].map(escapeControlCharacters))
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
