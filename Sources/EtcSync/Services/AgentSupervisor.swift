import EtcdClient
import Logging
import ServiceLifecycle
import Synchronization

/// `etcsync run`'s agent loop as a ``Service``: runs an ``Agent`` for the configuration, and on
/// each ``reload()`` (SIGHUP) loads the configuration again and replaces the agent.
///
/// Generations: the new configuration is loaded and its agent built (templates compiled, owners
/// resolved) before the running agent is stopped, so one that cannot be is logged and the old
/// agent never stops. One client, and one presence lease, serve for as long as the etcd and
/// presence settings stay the same; a reload that changes them stops the agent, reconnects and
/// builds the agent on the new client. A graceful shutdown (or cancellation) stops the running
/// agent after the write in progress, and ``run()`` returns.
///
/// Errors at start end ``run()`` with a ``StartError``; the CLI turns them into exit status 2.
public final class AgentSupervisor: Service, Sendable {
  /// Runs `body` with a connected client for a configuration's etcd settings (the CLI's is
  /// `withAgentClient`: exit 3 when etcd stays unreachable), and returns what `body` returns.
  public typealias Connect = @Sendable (AgentConfiguration, _ body: (EtcdClient) async throws -> AgentConfiguration)
    async throws -> AgentConfiguration
  /// Loads the configuration again (flags > environment > file), for a reload.
  public typealias Load = @Sendable () throws -> AgentConfiguration

  /// Why the supervisor could not start: the CLI's exit status 2.
  public enum StartError: Error, Sendable, CustomStringConvertible {
    /// The configuration's agent could not be built (a template that does not compile, an unknown owner).
    case configuration(AgentError)
    /// Another running agent holds the presence name (and there was no take-over).
    case presenceHeld(PresenceConflict)

    public var description: String {
      switch self {
      case .configuration(let error): "\(error)"
      case .presenceHeld(let conflict): "\(conflict)"
      }
    }
  }

  private let configuration: AgentConfiguration
  private let logger: Logger
  private let readiness: Readiness
  private let notifier: SystemdNotifier?
  private let exec: ExecSupervisor?
  private let takeOver: Bool
  private let releaseMemory: Bool
  private let load: Load
  private let connect: Connect
  private let control = RunControl()
  private let current = Mutex<Agent?>(nil)

  /// A supervisor for `configuration`. Agents answer `readiness` and tell `notifier` (systemd)
  /// and `exec` (exec mode's child) about their progress; `takeOver` moves a presence name
  /// another agent holds at start. `releaseMemory` (the `etcsync` executable's daemon, not a
  /// library user's or a test process's) gives start-up's pages back after the first apply
  /// and before the first sync (``StartupPages``), and the heap's free memory whenever the
  /// agent's work pauses (``HeapTrim``).
  public init(configuration: AgentConfiguration, logger: Logger, readiness: Readiness = Readiness(),
              notifier: SystemdNotifier? = nil, exec: ExecSupervisor? = nil, takeOver: Bool = false,
              releaseMemory: Bool = false, load: @escaping Load, connect: @escaping Connect) {
    self.configuration = configuration
    self.logger = logger
    self.readiness = readiness
    self.notifier = notifier
    self.exec = exec
    self.takeOver = takeOver
    self.releaseMemory = releaseMemory
    self.load = load
    self.connect = connect
  }

  /// SIGHUP: load the configuration again and replace the agent (ignored once stopping).
  public func reload() { self.control.reload() }

  /// Stops the running agent after the write in progress; ``run()`` then returns.
  public func stop() { self.control.stop() }

  /// The agent now running (a reload replaces it); nil before the first one is built.
  public var agent: Agent? { self.current.withLock { $0 } }

  /// How many agents have been started (the first is 1); a reload that applies adds one.
  public var generations: Int { self.control.counts.started }

  /// How many agents have stopped (their `run()` returned): a reload that applies stops the
  /// old agent before it starts the new one.
  public var stoppedGenerations: Int { self.control.counts.ended }

  public func run() async throws {
    try await withTaskCancellationOrGracefulShutdownHandler {
      try await self.runAgents()
    } onCancelOrGracefulShutdown: {
      self.control.stop()
    }
  }

  /// The agents of one run: the first, then one per reload, until stopped.
  private func runAgents() async throws {
    var configuration = self.configuration
    // One client (and one presence lease) for as long as the etcd and presence settings
    // stay the same; a reload that changes them reconnects.
    var reconnect = true
    var atStart = true
    while reconnect {
      reconnect = false
      let current = configuration
      let next = try await self.connect(current) { client in
        let presence = try await self.registerPresence(current, client: client, takeOver: atStart && self.takeOver, atStart: atStart)
        atStart = false
        // Detached: a child task would inherit the ServiceGroup's graceful-shutdown handler
        // (a task-local), and presence would release its key at SIGTERM, while the agent
        // still finishes its write; it must go only once the agent has stopped.
        let presenceTask = presence.map { presence in Task.detached { await presence.run() } }
        do {
          let next = try await self.runGenerations(current, client: client, presence: presence)
          presenceTask?.cancel()
          await presenceTask?.value
          return next
        } catch {
          // Revoke the presence before the client goes, whatever ended the agent.
          presenceTask?.cancel()
          await presenceTask?.value
          throw error
        }
      }
      if next != current && (next.etcd != current.etcd || next.presence != current.presence) && !self.control.isStopped {
        configuration = next
        reconnect = true
      }
    }
    self.notifier?.stopping()
    self.logger.info("stopped")
  }

  /// Runs agents on `client` until stopped or until a reload changes the etcd or presence
  /// settings; returns the configuration to go on with.
  private func runGenerations(_ configuration: AgentConfiguration, client: EtcdClient, presence: Presence?) async throws -> AgentConfiguration {
    var running = configuration
    var agent: Agent
    do {
      agent = try await self.makeAgent(running, client: client, presence: presence)
    } catch let error as AgentError where error.code == .configuration {
      throw StartError.configuration(error)
    }
    if self.releaseMemory { StartupPages.releaseBeforeFirstSync(logger: self.logger) }
    var (task, generation) = self.control.start(agent)
    self.current.withLock { $0 = agent }
    for await event in self.control.events {
      switch event {
      case .ended(let ended):
        guard ended == generation else { continue }  // an agent replaced by a reload
        do {
          try await task.value
        } catch where self.control.isStopped {
          // Stopped (SIGTERM): a call cut short by the cancellation ends with whatever
          // error the transport gives, not always CancellationError.
        }
        return running
      case .reload:
        self.notifier?.reloading()
        // The new configuration is loaded and its agent built (templates compiled,
        // owners resolved) before the running agent is stopped: one that cannot be
        // is refused, and the old agent never stopped running.
        let reloaded: AgentConfiguration
        let fresh: Agent
        do {
          reloaded = try self.load()
          if reloaded.etcd != running.etcd || reloaded.presence != running.presence {
            task.cancel()
            _ = await task.result
            // A stop that came meanwhile must not connect to the new etcd first.
            if self.control.isStopped { return running }
            return reloaded
          }
          fresh = try await self.makeAgent(reloaded, client: client, presence: presence)
        } catch {
          self.logger.error("configuration not reloaded; keeping the old one", metadata: ["error": "\(error)"])
          self.notifier?.ready(status: "configuration not reloaded; the old one runs")
          continue
        }
        task.cancel()
        _ = await task.result
        if self.control.isStopped { return running }
        self.logger.info("configuration reloaded", metadata: ["mappings": "\(reloaded.mappings.count)"])
        running = reloaded
        agent = fresh
        (task, generation) = self.control.start(agent)
        self.current.withLock { $0 = agent }
      }
    }
    return running
  }

  /// A new agent for `configuration`, wired to presence, exec mode and systemd; throws for a
  /// template that does not compile or an unknown owner.
  private func makeAgent(_ configuration: AgentConfiguration, client: EtcdClient, presence: Presence?) async throws -> Agent {
    let agent = try Agent(configuration: configuration, client: client, logger: self.logger, readiness: self.readiness)
    if let presence {
      await presence.setMappings(configuration.mappings.map(\.name))
      await agent.observe { presence.report($0) }
    }
    if let exec = self.exec {
      // The first child starts once every mapping is rendered and none fails (until then,
      // failing mappings are named in the log, once); each batch that changed files (its
      // reloads done) tells the child.
      await agent.observeChanges { exec.filesChanged() }
      await agent.observe { progress in
        if progress.appliedRevision > 0 && progress.errors.isEmpty {
          exec.filesReady()
        } else if !progress.errors.isEmpty {
          exec.filesFailing(progress.errors.keys.sorted())
        }
      }
    }
    if self.releaseMemory {
      // Once the first apply is done, start-up's pages go back to the kernel; after each step
      // of progress, the heap's free pages once the work pauses.
      let logger = self.logger
      await agent.observe { progress in
        // From the first apply on (an observer is also called at once, before any work).
        guard progress.appliedRevision > 0 else { return }
        StartupPages.releaseSoon(after: .seconds(5), logger: logger)
        HeapTrim.daemon.noteWork()
      }
    }
    if let notifier = self.notifier {
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

  /// The presence of `configuration`, registered (nil when it has none). A name held by
  /// another running agent ends the run at start (``StartError/presenceHeld(_:)``); after a
  /// reload that changed the presence settings it is logged and the agent runs without one.
  /// An etcd failure is logged, and the presence keeps trying when it runs.
  private func registerPresence(_ configuration: AgentConfiguration, client: EtcdClient,
                                takeOver: Bool, atStart: Bool) async throws -> Presence? {
    guard let settings = configuration.presence else { return nil }
    let presence = Presence(settings: settings, store: client, logger: self.logger, mappings: configuration.mappings.map(\.name))
    do {
      try await presence.register(takeOver: takeOver ? true : nil)
    } catch let conflict as PresenceConflict {
      guard atStart else {
        self.logger.error("presence not registered; the agent runs without it", metadata: ["error": "\(conflict)"])
        return nil
      }
      throw StartError.presenceHeld(conflict)
    } catch {
      self.logger.warning("presence not registered yet; retrying", metadata: ["presence.key": "\(settings.key)", "error": "\(error)"])
    }
    return presence
  }
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

/// What reloads and stops ask the supervisor's loop to do, and when the running agent ends.
final class RunControl: Sendable {
  enum Event: Sendable { case reload, ended(Int) }
  let events: AsyncStream<Event>
  private let continuation: AsyncStream<Event>.Continuation
  private let state = Mutex<(task: Task<Void, any Error>?, stopped: Bool, started: Int, ended: Int)>((nil, false, 0, 0))

  init() {
    (self.events, self.continuation) = AsyncStream.makeStream(of: Event.self)
  }

  /// Runs `agent` in a task of its own, as the next generation; its end is reported as
  /// `.ended(generation)`. Generations count across reconnects: an agent stopped for one
  /// reports an end the next client's loop must not take for its own agent's.
  func start(_ agent: Agent) -> (task: Task<Void, any Error>, generation: Int) {
    let continuation = self.continuation
    let generation = self.state.withLock { $0.started += 1; return $0.started }
    let task = Task {
      defer {
        self.state.withLock { $0.ended += 1 }
        continuation.yield(.ended(generation))
      }
      try await agent.run()
    }
    let stopped = self.state.withLock { $0.task = task; return $0.stopped }
    if stopped { task.cancel() }
    return (task, generation)
  }

  /// The running agent is cancelled, and the loop ends with it.
  func stop() { self.state.withLock { $0.stopped = true; $0.task?.cancel() } }

  /// The loop loads the configuration again.
  func reload() {
    if !self.isStopped { self.continuation.yield(.reload) }
  }

  var isStopped: Bool { self.state.withLock { $0.stopped } }
  var counts: (started: Int, ended: Int) { self.state.withLock { ($0.started, $0.ended) } }
}
