import ArgumentParser
import EtcSync
import Foundation
import Logging

/// `etcsync sync`: one consistent pass over every mapping, then exit.
struct SyncCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sync",
    abstract: "Bring every mapping's files to one revision of etcd, then exit.",
    discussion: """
      Reads every mapping's keys at one revision and writes the files that differ, atomically.
      Exit codes: 0 ok, 1 a mapping failed (its files are unchanged), 2 configuration error,
      3 etcd unreachable within --timeout.
      Example: etcsync sync -c /etc/etcsync/etcsync.yaml
      """
  )

  @OptionGroup var options: GlobalOptions
  @Option(help: "Seconds to wait for etcd before giving up (exit 3).") var timeout: Int = 10
  @Flag(help: "Write nothing; print what would change (same as `etcsync diff`).") var dryRun = false

  func run() async throws {
    if self.dryRun {
      var diff = DiffCommand()
      diff.options = self.options
      diff.timeout = self.timeout
      return try await diff.run()
    }
    let (configuration, logger) = try self.options.load()
    let results = try await withAgentClient(configuration, logger: logger, timeout: self.timeout) { client in
      let agent = try Agent(configuration: configuration, client: client, logger: logger)
      return try await agent.sync()
    }
    let failed = results.filter(\.failed)
    for result in results {
      let status = result.failed ? "FAILED: \(result.error!)" : result.changed ? "\(result.written.count) written, \(result.deleted.count) deleted" : "unchanged"
      print("\(result.mapping): revision \(result.revision): \(status)")
    }
    if !failed.isEmpty { throw ExitCode(1) }
  }
}

/// `etcsync run`: the daemon.
struct RunCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "run",
    abstract: "Sync, then watch etcd and keep the files in step until stopped.",
    discussion: "SIGTERM or SIGINT stop it after the write in progress. Example: etcsync run -c /etc/etcsync/etcsync.yaml"
  )

  @OptionGroup var options: GlobalOptions
  @Option(help: "Seconds to wait for etcd at start before giving up (exit 3).") var timeout: Int = 30

  func run() async throws {
    let (configuration, logger) = try self.options.load()
    try await withAgentClient(configuration, logger: logger, timeout: self.timeout) { client in
      let agent = try Agent(configuration: configuration, client: client, logger: logger)
      let task = Task { try await agent.run() }
      let signals = SignalWatcher(signals: [SIGTERM, SIGINT]) { task.cancel() }
      defer { signals.cancel() }
      do { try await task.value } catch is CancellationError {}
      logger.info("stopped")
    }
  }
}

/// Calls `handler` when one of `signals` arrives (through Dispatch, not a raw handler).
/// Dispatch sources are thread-safe; the array is never mutated after init.
final class SignalWatcher: @unchecked Sendable {
  private let sources: [any DispatchSourceSignal]

  init(signals: [Int32], handler: @escaping @Sendable () -> Void) {
    self.sources = signals.map { number in
      signal(number, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
      source.setEventHandler(handler: handler)
      source.resume()
      return source
    }
  }

  func cancel() { self.sources.forEach { $0.cancel() } }
}
