import ArgumentParser
import EtcSync
import EtcdClient
import Foundation
import Logging
import ServiceLifecycle

/// `etcsync sync`: one consistent pass over every mapping, then exit.
struct SyncCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sync",
    abstract: "Bring every mapping's files to one revision of etcd, then exit.",
    discussion: """
      Reads every mapping's keys at one revision and writes the files that differ, atomically.
      Exit codes: 0 ok, 1 a mapping failed (its files are unchanged), 2 configuration error,
      3 etcd unreachable within --timeout.
      With --dry-run it writes nothing and exits like `etcsync diff` (and diff(1)): 0 nothing
      would change, 1 something would, 2 trouble (configuration, a template that fails to
      render, etcd refusing a read), 3 etcd unreachable.
      --timeout takes a duration as the configuration writes them (10s, 1m30s, 500ms); a bare
      number or 0 is refused.
      Example: etcsync sync -c /etc/etcsync/etcsync.yaml
      """
  )

  @OptionGroup var options: GlobalOptions
  @Option(help: "How long to wait for etcd before giving up (exit 3): \(DurationFlag.helpForm).", transform: DurationFlag.parse)
  var timeout = DurationFlag(seconds: 10)
  @Flag(help: "Write nothing; print what would change and exit 1 if anything would, 0 if nothing would (same as `etcsync diff`).")
  var dryRun = false
  @Option(name: .customLong("accept-destination"), help: ArgumentHelp(acceptDestinationHelp, valueName: "mapping"))
  var acceptDestination: [String] = []

  func run() async throws {
    if self.dryRun {
      var diff = DiffCommand()
      diff.options = self.options
      diff.timeout = self.timeout
      return try await diff.run()
    }
    var (configuration, logger) = try self.options.load()
    configuration.acceptDestinations = try acceptedDestinations(self.acceptDestination, configuration)
    for warning in configuration.warnings { logger.warning("configuration: \(warning)") }
    let results = try await withAgentClient(configuration, logger: logger, timeout: self.timeout.duration) { client in
      let agent: Agent
      do {
        agent = try Agent(configuration: configuration, client: client, logger: logger)
      } catch let error as AgentError where error.code == .configuration {
        throw configurationExit(error)
      }
      // Progress on a terminal only: a pipe or a log file gets none.
      let terminal = isatty(STDERR_FILENO) == 1
      if terminal {
        // Whole lines: log lines share the terminal and would run into a line redrawn in place.
        await agent.reportProgress { line in
          FileHandle.standardError.write(Data("etcsync: \(escapeControlCharacters(line))\n".utf8))
        }
      }
      return try await agent.sync()
    }
    let failed = results.filter(\.failed)
    for result in results {
      let status = result.failed ? "FAILED (\(result.failureCode ?? .failed)): \(result.error!)" : result.changed ? "\(result.written.count) written, \(result.deleted.count) deleted" : "unchanged"
      // Paths and key names in the error come from etcd: no control character reaches the terminal.
      print(escapeControlCharacters("\(result.mapping): revision \(result.revision): \(status)"))
    }
    if !failed.isEmpty { throw ExitCode(1) }
  }
}

/// The help of `--accept-destination` (run and sync).
let acceptDestinationHelp =
  "Accept the write-back mapping's watched directory as it is now, replacing the one the state file recorded "
  + "(the answer to destination_replaced); repeatable."

/// The mapping names of `--accept-destination`: each must name a write-back mapping (exit 2).
func acceptedDestinations(_ names: [String], _ configuration: AgentConfiguration) throws -> Set<String> {
  for name in names where configuration.mapping(named: name)?.writeBack != true {
    FileHandle.standardError.write(Data("etcsync: --accept-destination \(escapeControlCharacters(name)): no write-back mapping has this name\n".utf8))
    throw ExitCode(2)
  }
  return Set(names)
}

/// `etcsync run`: the daemon.
struct RunCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "run",
    abstract: "Sync, then watch etcd and keep the files in step until stopped.",
    discussion: """
      SIGHUP re-reads the configuration: a valid new one replaces the old (a re-sync that
      rewrites nothing unchanged and fires no needless reload); an invalid one is logged and
      the old one keeps running, unless it also changes the etcd or presence settings: that
      reconnects first, and a new configuration that then fails ends the run. SIGTERM or SIGINT stop after the write in progress.

      With presence configured, the agent creates its presence key only if it is absent: when
      another running agent holds the name, it names that agent's host and lease and exits 2,
      unless --take-over (or presence.takeOver: true) moves the key to this agent. The agent
      whose name was taken stops updating its key and keeps syncing its files.

      Exit codes: 0 stopped by a signal, 1 the agent failed (a watch that fails for good), 2 configuration error or
      presence name held by another agent, 3 etcd unreachable within --timeout.
      Example: etcsync run -c /etc/etcsync/etcsync.yaml

      Exec mode (--exec -- CMD ARGS…, or exec: in the configuration): once every mapping is
      rendered, CMD runs as etcsync's child; a batch that changed files (after the mappings'
      reloads) sends it --exec-signal (SIGHUP by default) or, with --exec-restart, restarts it.
      SIGTERM, SIGINT and SIGQUIT are forwarded to it (SIGKILL after exec.killTimeout, 10s), and
      etcsync exits with its status (128 + the signal for a child killed by one). A child that
      exits on its own ends etcsync with its status, unless exec.onChildExit is restart.
      As PID 1, etcsync reaps orphaned processes.
      Example: etcsync run -c etcsync.yaml --exec -- nginx -g 'daemon off;'
      """
  )

  @OptionGroup var options: GlobalOptions
  @Option(help: "How long to wait for etcd at start before giving up (exit 3): \(DurationFlag.helpForm).", transform: DurationFlag.parse)
  var timeout = DurationFlag(seconds: 30)
  @Flag(name: .customLong("take-over"), help: "Take the presence name over at start if another running agent holds it (default: exit 2).")
  var takeOver = false
  @Option(name: .customLong("accept-destination"), help: ArgumentHelp(acceptDestinationHelp, valueName: "mapping"))
  var acceptDestination: [String] = []
  @Flag(name: .customLong("exec"), help: "Exec mode: run the command after -- as etcsync's child once every mapping is rendered, and tell it about changes.")
  var exec = false
  @Option(name: .customLong("exec-signal"), help: ArgumentHelp("The signal a change sends the child (default SIGHUP, or exec.signal).", valueName: "signal"))
  var execSignal: String?
  @Flag(name: .customLong("exec-restart"), help: "Restart the child on a change instead of signalling it (exec.onChange: restart).")
  var execRestart = false
  @Argument(parsing: .postTerminator, help: ArgumentHelp("The child's command and arguments, after -- (with --exec).", valueName: "command"))
  var command: [String] = []

  func run() async throws {
    HeapTrim.limitArenas()
    let (loaded, logger) = try self.options.load()
    var configuration = loaded
    // At start only: a configuration a SIGHUP reads again accepts nothing.
    configuration.acceptDestinations = try acceptedDestinations(self.acceptDestination, configuration)
    let execSettings = try self.execSettings(configuration)
    for warning in configuration.warnings { logger.warning("configuration: \(warning)") }
    let readiness = Readiness()
    let health = HealthService.bootstrap(configuration, readiness: readiness, logger: logger)
    // After the metrics backend is bootstrapped: their metrics go to it.
    Self.reapOrphansIfInit(logger: logger)
    let exec = execSettings.map { ExecSupervisor(settings: $0, logger: logger) }
    let notifier = SystemdNotifier.fromEnvironment()
    let (options, timeout) = (self.options, self.timeout.duration)
    let supervisor = AgentSupervisor(
      configuration: configuration, logger: logger, readiness: readiness, notifier: notifier, exec: exec, takeOver: self.takeOver,
      releaseMemory: true, load: { try options.configuration() },
      connect: { configuration, body in try await withAgentClient(configuration, logger: logger, timeout: timeout, body) })
    let execService = exec.map { ExecService($0, supervisor: supervisor) }
    let group = RunServices(supervisor: supervisor, health: health, watchdog: WatchdogService(notifier, supervisor: supervisor),
                            exec: execService, logger: logger).group
    let signals = Self.stopSignals(exec: exec) { Task { await group.triggerGracefulShutdown() } }
    let hangups = SignalWatcher(signals: [SIGHUP]) { supervisor.reload() }
    defer { signals.forEach { $0.cancel() }; hangups.cancel() }
    do {
      try await group.run()
    } catch let error as AgentSupervisor.StartError {
      // A template that does not compile, an unknown owner, a presence name held: as
      // `etcsync check` reports them, and exit status 2.
      FileHandle.standardError.write(Data("etcsync: \(error)\n".utf8))
      throw ExitCode(2)
    }
    if let status = execService?.status {
      logger.info("exec: etcsync exits with the child's status", metadata: ["exec.exit_status": "\(status)"])
      if status != 0 { throw ExitCode(status) }
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

/// An agent configuration error found at start (a template that does not compile, an unknown
/// owner): printed as `etcsync check` reports it, and exit status 2.
func configurationExit(_ error: AgentError) -> ExitCode {
  FileHandle.standardError.write(Data("etcsync: \(error)\n".utf8))
  return ExitCode(2)
}
