import ArgumentParser
import EtcSync
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
    discussion: """
      SIGHUP re-reads the configuration: a valid new one replaces the old (a re-sync that
      rewrites nothing unchanged and fires no needless reload); an invalid one is logged and
      the old one keeps running. SIGTERM or SIGINT stop after the write in progress.
      Example: etcsync run -c /etc/etcsync/etcsync.yaml
      """
  )

  @OptionGroup var options: GlobalOptions
  @Option(help: "Seconds to wait for etcd at start before giving up (exit 3).") var timeout: Int = 30

  func run() async throws {
    var (configuration, logger) = try self.options.load()
    let control = RunControl()
    let signals = SignalWatcher(signals: [SIGTERM, SIGINT]) { control.stop() }
    let hangups = SignalWatcher(signals: [SIGHUP]) { control.reload() }
    defer { signals.cancel(); hangups.cancel() }
    let readiness = Readiness()
    let notifier = SystemdNotifier.fromEnvironment()
    let health = Self.startHealthServer(configuration, readiness: readiness, logger: logger)
    defer { health?.cancel() }
    let currentAgent = CurrentAgent()
    let watchdog = Self.startWatchdog(notifier, current: currentAgent)
    defer { watchdog?.cancel() }
    // One client (and one presence lease) for as long as the etcd and presence settings
    // stay the same; a SIGHUP that changes them reconnects.
    var reconnect = true
    while reconnect {
      reconnect = false
      let current = configuration
      let next = try await withAgentClient(current, logger: logger, timeout: self.timeout) { client in
        let presence = current.presence.map {
          Presence(settings: $0, client: client, logger: logger, mappings: current.mappings.map(\.name))
        }
        let presenceTask = presence.map { presence in Task { await presence.run() } }
        var running = current
        var reconnectWith: AgentConfiguration?
        do {
          while true {
            let agent = try Agent(configuration: running, client: client, logger: logger, readiness: readiness)
            currentAgent.set(agent)
            if let presence {
              await presence.setMappings(running.mappings.map(\.name))
              await agent.observe { presence.report($0) }
            }
            if let notifier {
              let announced = Announced()
              await agent.observe { progress in
                guard progress.appliedRevision > 0 else { return }
                let status = "applied revision \(progress.appliedRevision)" + (progress.lastError.map { "; failing: \($0)" } ?? "")
                if announced.first() { notifier.ready(status: status) } else { notifier.status(status) }
              }
            }
            let task = Task { try await agent.run() }
            control.attach(task)
            do {
              try await task.value
            } catch where task.isCancelled {
              // We cancelled it (SIGHUP, SIGTERM): a call cut short by that ends with
              // whatever error the transport gives, not always CancellationError.
            }
            guard control.takeReload() else { break }
            notifier?.reloading()
            do {
              let reloaded = try self.options.configuration()
              logger.info("configuration reloaded", metadata: ["mappings": "\(reloaded.mappings.count)"])
              if reloaded.etcd != running.etcd || reloaded.presence != running.presence {
                reconnectWith = reloaded
                break
              }
              running = reloaded
            } catch {
              logger.error("configuration not reloaded; keeping the old one", metadata: ["error": "\(error)"])
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

/// Whether READY=1 was sent yet.
final class Announced: Sendable {
  private let done = Mutex(false)
  /// True the first time only.
  func first() -> Bool { self.done.withLock { let first = !$0; $0 = true; return first } }
}

/// What the signal handlers ask the run loop to do.
final class RunControl: Sendable {
  private let state = Mutex<(task: Task<Void, any Error>?, reload: Bool, stopped: Bool)>((nil, false, false))

  func attach(_ task: Task<Void, any Error>) {
    let stopped = self.state.withLock { $0.task = task; return $0.stopped }
    if stopped { task.cancel() }
  }

  func stop() { self.state.withLock { $0.stopped = true; $0.reload = false; $0.task?.cancel() } }

  func reload() { self.state.withLock { if !$0.stopped { $0.reload = true; $0.task?.cancel() } } }

  /// Whether the run ended for a reload (and clears the request).
  func takeReload() -> Bool { self.state.withLock { let r = $0.reload; $0.reload = false; return r } }
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
