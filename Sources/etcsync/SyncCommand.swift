import ArgumentParser
import EtcSync
import EtcdClient
import Foundation
import Logging
import Metrics
import Prometheus
import Synchronization

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
      number is refused.
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
      the old one keeps running. SIGTERM or SIGINT stop after the write in progress.

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
    var (configuration, logger) = try self.options.load()
    // At start only: a configuration a SIGHUP reads again accepts nothing.
    configuration.acceptDestinations = try acceptedDestinations(self.acceptDestination, configuration)
    let execSettings = try self.execSettings(configuration)
    for warning in configuration.warnings { logger.warning("configuration: \(warning)") }
    let control = RunControl()
    let readiness = Readiness()
    let notifier = SystemdNotifier.fromEnvironment()
    let health = Self.startHealthServer(configuration, readiness: readiness, logger: logger)
    defer { health?.cancel() }
    // After the metrics backend is bootstrapped: their metrics go to it.
    Self.reapOrphansIfInit(logger: logger)
    let exec = execSettings.map { ExecSupervisor(settings: $0, logger: logger) }
    let execTask = exec.map { exec in
      Task {
        let status = await exec.run()
        control.stop()  // the child ended for good: so does etcsync
        return status
      }
    }
    let signals = Self.stopSignals(control: control, exec: exec)
    let hangups = SignalWatcher(signals: [SIGHUP]) { control.reload() }
    defer { signals.forEach { $0.cancel() }; hangups.cancel() }
    do {
      try await self.runAgents(configuration, logger: logger, control: control, readiness: readiness, notifier: notifier, exec: exec)
    } catch {
      // The agent failed: its child is stopped first (SIGTERM, SIGKILL at the kill timeout).
      exec?.shutdown()
      _ = await execTask?.value
      throw error
    }
    if let execTask {
      exec?.shutdown()  // a child not asked to stop yet (the agent ended another way) is now
      let status = await execTask.value
      logger.info("exec: etcsync exits with the child's status", metadata: ["exec.exit_status": "\(status)"])
      if status != 0 { throw ExitCode(status) }
    }
  }

  /// The agents of one run: the first, then one per SIGHUP, until stopped.
  private func runAgents(_ configuration: AgentConfiguration, logger: Logger, control: RunControl, readiness: Readiness,
                         notifier: SystemdNotifier?, exec: ExecSupervisor?) async throws {
    var configuration = configuration
    let currentAgent = CurrentAgent()
    let watchdog = Self.startWatchdog(notifier, current: currentAgent)
    defer { watchdog?.cancel() }
    // One client (and one presence lease) for as long as the etcd and presence settings
    // stay the same; a SIGHUP that changes them reconnects.
    var reconnect = true
    var atStart = true
    while reconnect {
      reconnect = false
      let current = configuration
      let next = try await withAgentClient(current, logger: logger, timeout: self.timeout.duration) { client in
        let presence = try await Self.registerPresence(current, client: client, logger: logger,
                                                       takeOver: atStart && self.takeOver, atStart: atStart)
        atStart = false
        let presenceTask = presence.map { presence in Task { await presence.run() } }
        var running = current
        var reconnectWith: AgentConfiguration?
        /// A new agent for `configuration`, wired to presence and systemd; throws for a
        /// template that does not compile or an unknown owner.
        func makeAgent(_ configuration: AgentConfiguration) async throws -> Agent {
          let agent = try Agent(configuration: configuration, client: client, logger: logger, readiness: readiness)
          if let presence {
            await presence.setMappings(configuration.mappings.map(\.name))
            await agent.observe { presence.report($0) }
          }
          await Self.connect(agent, to: exec)
          if let notifier {
            let announced = Announced()
            await agent.observe { progress in
              // Ready once the first sync is done, also when a mapping fails: the applied
              // revision then stays behind (it never claims files that are not on disk), and
              // a service waiting for READY=1 must not hang in "activating" because of it.
              guard progress.appliedRevision > 0 || progress.ready else { return }
              let status = "applied revision \(progress.appliedRevision)" + (progress.lastError.map { "; failing: \($0)" } ?? "")
              // Progress also moves with the revision the agent is current through: a status
              // that says nothing new is not sent again.
              switch announced.next(status) {
              case .first: notifier.ready(status: status)
              case .changed: notifier.status(status)
              case .same: break
              }
            }
          }
          return agent
        }
        do {
          var agent: Agent
          do {
            agent = try await makeAgent(running)
          } catch let error as AgentError where error.code == .configuration {
            throw configurationExit(error)
          }
          var generation = 0
          var task = control.start(agent, generation: generation)
          currentAgent.set(agent)
          events: for await event in control.events {
            switch event {
            case .ended(let ended):
              guard ended == generation else { continue }  // an agent replaced by a reload
              do {
                try await task.value
              } catch where control.isStopped {
                // Stopped (SIGTERM): a call cut short by the cancellation ends with whatever
                // error the transport gives, not always CancellationError.
              }
              break events
            case .reload:
              notifier?.reloading()
              // The new configuration is loaded and its agent built (templates compiled,
              // owners resolved) before the running agent is stopped: one that cannot be
              // is refused, and the old agent never stopped running.
              let reloaded: AgentConfiguration
              let fresh: Agent
              do {
                reloaded = try self.options.configuration()
                if reloaded.etcd != running.etcd || reloaded.presence != running.presence {
                  reconnectWith = reloaded
                  task.cancel()
                  _ = await task.result
                  break events
                }
                fresh = try await makeAgent(reloaded)
              } catch {
                logger.error("configuration not reloaded; keeping the old one", metadata: ["error": "\(error)"])
                notifier?.ready(status: "configuration not reloaded; the old one runs")
                continue
              }
              task.cancel()
              _ = await task.result
              if control.isStopped { break events }
              logger.info("configuration reloaded", metadata: ["mappings": "\(reloaded.mappings.count)"])
              running = reloaded
              agent = fresh
              generation += 1
              task = control.start(agent, generation: generation)
              currentAgent.set(agent)
            }
          }
        } catch {
          // Revoke the presence before the client goes, whatever ended the agent.
          presenceTask?.cancel()
          await presenceTask?.value
          throw error
        }
        presenceTask?.cancel()
        await presenceTask?.value
        return reconnectWith ?? running
      }
      if next != current && (next.etcd != current.etcd || next.presence != current.presence) {
        configuration = next
        reconnect = true
      }
    }
    notifier?.stopping()
    logger.info("stopped")
  }

  /// The presence of `configuration`, registered (nil when it has none). A name held by
  /// another running agent ends the process with status 2 at start, naming the holder; after a
  /// SIGHUP that changed the presence settings it is logged and the agent runs without one.
  /// An etcd failure is logged, and the presence keeps trying when it runs.
  static func registerPresence(_ configuration: AgentConfiguration, client: EtcdClient, logger: Logger,
                               takeOver: Bool, atStart: Bool) async throws -> Presence? {
    guard let settings = configuration.presence else { return nil }
    let presence = Presence(settings: settings, client: client, logger: logger, mappings: configuration.mappings.map(\.name))
    do {
      try await presence.register(takeOver: takeOver ? true : nil)
    } catch let conflict as PresenceConflict {
      guard atStart else {
        logger.error("presence not registered; the agent runs without it", metadata: ["error": "\(conflict)"])
        return nil
      }
      FileHandle.standardError.write(Data("etcsync: \(conflict)\n".utf8))
      throw ExitCode(2)
    } catch {
      logger.warning("presence not registered yet; retrying", metadata: ["presence.key": "\(settings.key)", "error": "\(error)"])
    }
    return presence
  }

  /// Serves `/metrics`, `/healthz` and `/readyz` when `metrics.listen` is set, with
  /// swift-metrics bootstrapped to a Prometheus registry. Read once at start: a SIGHUP does
  /// not move the listener.
  static func startHealthServer(_ configuration: AgentConfiguration, readiness: Readiness, logger: Logger) -> Task<Void, Never>? {
    guard let settings = configuration.metrics else { return nil }
    let registry = PrometheusCollectorRegistry()
    var factory = PrometheusMetricsFactory(registry: registry)
    factory.durationHistogramBuckets["etcsync_propagation_seconds"] = [
      .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
      .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]
    MetricsSystem.bootstrap(factory)
    let server = HealthServer(settings: settings, registry: registry, readiness: readiness, logger: logger)
    return Task {
      do {
        try await server.run()
      } catch {
        logger.error("metrics endpoint stopped", metadata: ["listen": "\(settings.listen)", "error": "\(error)"])
      }
    }
  }

  /// With systemd's watchdog (`WatchdogSec`), sends WATCHDOG=1 at half the interval, each time
  /// after the agent's actor has answered: a wedged agent stops the pings and systemd
  /// restarts it.
  static func startWatchdog(_ notifier: SystemdNotifier?, current: CurrentAgent) -> Task<Void, Never>? {
    guard let notifier, let interval = SystemdNotifier.watchdogInterval() else { return nil }
    return Task {
      while !Task.isCancelled {
        try? await Task.sleep(for: interval / 2)
        if let agent = current.get() { _ = await agent.progress }
        notifier.watchdog()
      }
    }
  }
}

/// The agent now running (SIGHUP replaces it), for the watchdog.
final class CurrentAgent: Sendable {
  private let agent = Mutex<Agent?>(nil)
  func set(_ agent: Agent) { self.agent.withLock { $0 = agent } }
  func get() -> Agent? { self.agent.withLock { $0 } }
}

/// Whether READY=1 was sent yet, and the last status sent.
final class Announced: Sendable {
  enum Step { case first, changed, same }
  private let last = Mutex<String?>(nil)
  /// `.first` the first time, then whether `status` differs from the last one.
  func next(_ status: String) -> Step {
    self.last.withLock { last in
      defer { last = status }
      guard let previous = last else { return .first }
      return previous == status ? .same : .changed
    }
  }
}

/// What the signal handlers ask the run loop to do, and when the running agent ends.
final class RunControl: Sendable {
  enum Event: Sendable { case reload, ended(Int) }
  let events: AsyncStream<Event>
  private let continuation: AsyncStream<Event>.Continuation
  private let state = Mutex<(task: Task<Void, any Error>?, stopped: Bool)>((nil, false))

  init() {
    (self.events, self.continuation) = AsyncStream.makeStream(of: Event.self)
  }

  /// Runs `agent` in a task of its own; its end is reported as `.ended(generation)`.
  func start(_ agent: Agent, generation: Int) -> Task<Void, any Error> {
    let continuation = self.continuation
    let task = Task {
      defer { continuation.yield(.ended(generation)) }
      try await agent.run()
    }
    let stopped = self.state.withLock { $0.task = task; return $0.stopped }
    if stopped { task.cancel() }
    return task
  }

  /// SIGTERM/SIGINT: the running agent is cancelled, and the loop ends with it.
  func stop() { self.state.withLock { $0.stopped = true; $0.task?.cancel() } }

  /// SIGHUP: the loop loads the configuration again.
  func reload() {
    if !self.isStopped { self.continuation.yield(.reload) }
  }

  var isStopped: Bool { self.state.withLock { $0.stopped } }
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
