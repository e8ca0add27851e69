import ArgumentParser
import EtcSync
import Foundation

/// `etcsync diff`: what `sync` would change, as a unified diff; writes nothing.
struct DiffCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "diff",
    abstract: "Print what `sync` would change (a unified diff; mode and owner), without writing.",
    discussion: """
      A file whose mode or owner sync would reset (a chmod by hand, a new mode: in the
      configuration) gets a git-style header: "diff PATH", "old mode 100600", "new mode 100640"
      (and "old owner"/"new owner", "old group"/"new group", numeric ids).
      Exit codes, as diff(1) and `git diff --exit-code` have them: 0 the files are current (no
      output), 1 there are differences (printed), 2 trouble: a configuration error, a template
      that fails to render, etcd refusing a read; 3 etcd unreachable within --timeout.
      --timeout takes a duration as the configuration writes them (10s, 1m30s, 500ms); a bare
      number or 0 is refused.
      Example: etcsync diff -c etcsync.yaml || echo "the files are not current"
      """
  )

  @OptionGroup var options: GlobalOptions
  @Option(help: "How long to wait for etcd before giving up (exit 3): \(DurationFlag.helpForm).", transform: DurationFlag.parse)
  var timeout = DurationFlag(seconds: 10)

  func run() async throws {
    let (configuration, logger) = try self.options.load()
    let changes: [FileChange]
    do {
      changes = try await withAgentClient(configuration, logger: logger, timeout: self.timeout.duration) { client in
        let agent: Agent
        do {
          agent = try Agent(configuration: configuration, client: client, logger: logger)
        } catch let error as AgentError where error.code == .configuration {
          throw configurationExit(error)
        }
        return try await agent.diff()
      }
    } catch let exit as ExitCode {
      throw exit
    } catch {
      // Exit 1 means "there are differences": any trouble is 2, as for diff(1).
      FileHandle.standardError.write(Data("etcsync: \(escapeControlCharacters("\(error)"))\n".utf8))
      throw ExitCode(2)
    }
    for change in changes {
      // The path comes from etcd's keys: no control character reaches the terminal.
      print(UnifiedDiff.render(escaping: change), terminator: "")
    }
    if !changes.isEmpty { throw ExitCode(1) }
  }
}
