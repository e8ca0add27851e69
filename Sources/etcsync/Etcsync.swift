import ArgumentParser
import EtcSync

/// The `etcsync` command line. It parses arguments, bootstraps logging and calls into the
/// EtcSync library, where everything that can be tested lives.
@main
struct EtcsyncCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "etcsync",
    abstract: "Keeps local files in step with etcd v3.",
    discussion: """
      Exit codes: 0 ok, 1 a mapping failed, 2 configuration error, 3 etcd unreachable.
      """,
    version: EtcSync.version,
    subcommands: [SyncCommand.self, RunCommand.self, CheckCommand.self, DiffCommand.self, StatusCommand.self, Ping.self, ConfigExampleCommand.self, ImportCommand.self]
  )
}
