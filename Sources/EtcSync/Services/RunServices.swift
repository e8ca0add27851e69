import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import Synchronization

/// `etcsync run`'s services in one ``ServiceGroup``: the health/metrics server, the systemd
/// watchdog, exec mode's child and the ``AgentSupervisor``, started in that order and shut down
/// gracefully in the reverse one (the agent stops after its write in progress, then the child is
/// stopped, then the watchdog and the endpoint).
///
/// The group is given no signals: the caller's handlers forward SIGTERM, SIGINT and SIGQUIT to
/// exec mode's child as they came, then call ``ServiceGroup/triggerGracefulShutdown()``.
/// The supervisor ending (stopped, or failed) shuts the group down gracefully; its error is
/// what the group's `run()` throws. The other services run until the group shuts down.
public struct RunServices: Sendable {
  /// The group to run.
  public let group: ServiceGroup

  /// The group for `supervisor` and those of the other services that are configured.
  public init(supervisor: AgentSupervisor, health: HealthService?, watchdog: WatchdogService?, exec: ExecService?,
              logger: Logger) {
    var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
    let others: [(any Service)?] = [health, watchdog, exec]
    for case let service? in others {
      services.append(.init(service: service, successTerminationBehavior: .ignore, failureTerminationBehavior: .ignore))
    }
    services.append(.init(service: supervisor, successTerminationBehavior: .gracefullyShutdownGroup,
                          failureTerminationBehavior: .gracefullyShutdownGroup))
    // The group's own lines (each service started, shut down) are at debug level and about its
    // mechanics, not etcsync's: `--log-level debug` shows what it showed before.
    var groupLogger = logger
    groupLogger.logLevel = max(logger.logLevel, .info)
    self.group = ServiceGroup(configuration: ServiceGroupConfiguration(services: services, logger: groupLogger))
  }
}

/// The endpoint of `metrics.listen` (``HealthServer``) as a service. A server that fails is
/// logged and the agent runs on without it; a graceful shutdown cancels it.
public struct HealthService: Service {
  let server: HealthServer
  let logger: Logger

  /// The service of `configuration`'s `metrics:` (nil without one), with swift-metrics
  /// bootstrapped to its Prometheus registry. Read once at start: a reload does not move the
  /// listener.
  public static func bootstrap(_ configuration: AgentConfiguration, readiness: Readiness, logger: Logger) -> HealthService? {
    guard let settings = configuration.metrics else { return nil }
    let registry = PrometheusCollectorRegistry()
    var factory = PrometheusMetricsFactory(registry: registry)
    factory.durationHistogramBuckets["etcsync_propagation_seconds"] = [
      .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
      .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]
    // Stages are parts of a millisecond where the page cache absorbs the write, and seconds
    // where a disk or a reload is slow.
    factory.durationHistogramBuckets[AgentMetrics.stageLabel] = [
      .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
      .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
      .milliseconds(500), .seconds(1), .seconds(5), .seconds(10), .seconds(60),
    ]
    MetricsSystem.bootstrap(factory)
    return HealthService(server: HealthServer(settings: settings, registry: registry, readiness: readiness, logger: logger), logger: logger)
  }

  public func run() async throws {
    let server = self.server
    do {
      // Cancelled rather than drained: a scraper's idle keep-alive connection must not hold
      // the process up.
      try await cancelWhenGracefulShutdown { try await server.run() }
    } catch {
      self.logger.error("metrics endpoint stopped", metadata: ["listen": "\(server.settings.listen)", "error": "\(error)"])
    }
    // Ended early (a port in use): the rest runs on until the group shuts down.
    try? await gracefulShutdown()
  }
}

/// systemd's watchdog (`WatchdogSec`) as a service: WATCHDOG=1 at half the interval, each time
/// after the running agent's actor has answered, so a wedged agent stops the pings and systemd
/// restarts it.
public struct WatchdogService: Service {
  let notifier: SystemdNotifier
  let interval: Duration
  let supervisor: AgentSupervisor

  /// The watchdog for `notifier` when systemd asked for one (nil otherwise).
  public init?(_ notifier: SystemdNotifier?, supervisor: AgentSupervisor) {
    guard let notifier, let interval = SystemdNotifier.watchdogInterval() else { return nil }
    self.notifier = notifier
    self.interval = interval
    self.supervisor = supervisor
  }

  public func run() async throws {
    let (notifier, interval, supervisor) = (self.notifier, self.interval, self.supervisor)
    await cancelWhenGracefulShutdown {
      while !Task.isCancelled {
        try? await Task.sleep(for: interval / 2)
        if let agent = supervisor.agent { _ = await agent.progress }
        notifier.watchdog()
      }
    }
  }
}

/// Exec mode's child (``ExecSupervisor``) as a service. A child that ends for good stops the
/// supervisor, and so the group; a graceful shutdown stops a child not asked to stop yet
/// (SIGTERM, SIGKILL at the kill timeout). ``status`` is then what etcsync exits with.
public final class ExecService: Service, Sendable {
  let exec: ExecSupervisor
  let supervisor: AgentSupervisor
  private let result = Mutex<Int32?>(nil)

  /// The service running `exec`, stopping `supervisor` when the child ends for good.
  public init(_ exec: ExecSupervisor, supervisor: AgentSupervisor) {
    self.exec = exec
    self.supervisor = supervisor
  }

  /// The status etcsync exits with, once the child has ended for good.
  public var status: Int32? { self.result.withLock { $0 } }

  public func run() async throws {
    let exec = self.exec
    let status = await withGracefulShutdownHandler {
      await exec.run()
    } onGracefulShutdown: {
      // A child not asked to stop yet (the agent ended another way) is now.
      exec.shutdown()
    }
    self.result.withLock { $0 = status }
    self.supervisor.stop()  // the child ended for good: so does etcsync
    // Until the group shuts down: a service that ends while another shuts down cancels the group.
    try? await gracefulShutdown()
  }
}
