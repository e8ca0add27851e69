#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CoreMetrics
import EtcdClient
import Foundation
import Logging

/// Exec mode: runs ``ExecSettings/command`` as etcsync's child once every mapping has been
/// rendered, tells it about changes, forwards stop signals to it, and decides the status
/// etcsync exits with.
///
/// The agent feeds it four kinds of news: ``filesReady()`` (every mapping rendered, none
/// failing: the first child may start), ``filesFailing(_:)`` (mappings failing: a child not yet
/// started waits, which is logged once), ``filesChanged()`` (an applied batch changed files and
/// the mappings' own reloads have run) and ``forward(_:)`` (SIGTERM, SIGINT or SIGQUIT came).
/// All of them go through one queue, handled in order by ``run()``.
///
/// The child leads a process group of its own and shares etcsync's stdin, stdout and stderr.
/// Signals (the change signal, forwarded ones) go to the child itself; the SIGKILL at
/// ``ExecSettings/killTimeout`` goes to its whole process group.
public final class ExecSupervisor: Sendable {
  enum Event: Sendable {
    case filesReady
    case filesFailing([String])
    case filesChanged
    case stop(Int32)
    case shutdown
    /// The child `pid` ended; the loop reaps it (until then its pid cannot be reused, so a
    /// signal sent to it meanwhile reaches no other process).
    case ended(pid_t)
    case splayOver
    case restartDue
    case killDue(pid_t)
  }

  /// What the supervisor runs and how.
  public let settings: ExecSettings
  private let environment: [String: String]?
  private let logger: Logger
  private let metrics: ExecMetrics
  private let events: AsyncStream<Event>
  private let continuation: AsyncStream<Event>.Continuation

  /// A supervisor for `settings`; the child inherits etcsync's environment unless
  /// `environment` is given. Metrics go to `metricsFactory` (default: the bootstrapped one).
  public init(settings: ExecSettings, environment: [String: String]? = nil, logger: Logger,
              metricsFactory: (any MetricsFactory)? = nil) {
    self.settings = settings
    self.environment = environment
    self.logger = logger
    self.metrics = ExecMetrics(factory: metricsFactory)
    (self.events, self.continuation) = AsyncStream.makeStream(of: Event.self)
  }

  /// Every mapping has been rendered and none is failing: the child may start (once).
  public func filesReady() { self.continuation.yield(.filesReady) }

  /// The mappings named `mappings` are failing: before the first child has started, the
  /// supervisor logs once that the child waits for them (notice level). Ignored afterwards.
  public func filesFailing(_ mappings: [String]) { self.continuation.yield(.filesFailing(mappings)) }

  /// An applied batch changed files and their reloads have run: the child is signalled (or
  /// restarted), after the splay. Ignored before the child has started.
  public func filesChanged() { self.continuation.yield(.filesChanged) }

  /// A stop signal for etcsync: sent on to the child, which gets SIGKILL if it has not ended
  /// within the kill timeout.
  public func forward(_ signal: Int32) { self.continuation.yield(.stop(signal)) }

  /// etcsync stops for another reason (the agent failed, or it was stopped already): a child
  /// not yet asked to stop gets SIGTERM; one already stopping is left to finish.
  public func shutdown() { self.continuation.yield(.shutdown) }

  /// The status etcsync exits with for a raw `waitpid` status: the child's exit status, or
  /// 128 + the signal that ended it (as shells report it).
  public static func exitStatus(rawStatus: Int32) -> Int32 {
    switch CommandResult.Termination(rawStatus: rawStatus) {
    case .exited(let code): return code
    case .signaled(let signal): return 128 + signal
    }
  }

  /// Runs until the child has ended for good (it exited on its own with `onChildExit: stop`,
  /// or after a forwarded signal) and returns the status etcsync should exit with. Stopped
  /// before any child started, it returns 0.
  public func run() async -> Int32 {
    var loop = Loop(supervisor: self)
    for await event in self.events {
      if let status = loop.handle(event) { return status }
    }
    return 0
  }

  // MARK: The loop's state

  /// The state of one ``run()``: which child runs and what is asked of it.
  private struct Loop {
    enum Phase {
      /// No child yet: the mappings are not all rendered.
      case waiting
      case running(Child)
      /// Asked to stop (a forwarded signal, or a restart), killed at the timeout.
      case stopping(Child, restart: Bool)
      /// Waiting to start the next child after one exited on its own.
      case backingOff
    }

    struct Child {
      let pid: pid_t
      let started: ContinuousClock.Instant
    }

    let supervisor: ExecSupervisor
    var phase = Phase.waiting
    var shuttingDown = false
    var splayPending = false
    /// Whether the notice that the first child waits for failing mappings has been logged.
    var toldWaiting = false
    var backoff: Backoff
    var lastStatus: Int32 = 0

    init(supervisor: ExecSupervisor) {
      self.supervisor = supervisor
      let retry = supervisor.settings.restartBackoff
      self.backoff = Backoff(initial: retry.min, maximum: retry.max, jitter: 0.2)
    }

    var settings: ExecSettings { self.supervisor.settings }
    var logger: Logger { self.supervisor.logger }
    var metrics: ExecMetrics { self.supervisor.metrics }

    /// Handles one event; returns the exit status once the supervision is over.
    mutating func handle(_ event: Event) -> Int32? {
      switch event {
      case .filesReady:
        guard case .waiting = self.phase, !self.shuttingDown else { return nil }
        return self.start()
      case .filesFailing(let mappings):
        guard case .waiting = self.phase, !self.shuttingDown, !self.toldWaiting, !mappings.isEmpty else { return nil }
        self.toldWaiting = true
        self.logger.notice("exec: the child waits until every mapping renders", metadata: [
          "exec.failing_mappings": .array(mappings.map { .string($0) }),
        ])
        return nil
      case .filesChanged:
        guard case .running = self.phase else { return nil }
        if self.settings.splay > .zero {
          guard !self.splayPending else { return nil }
          self.splayPending = true
          let delay = self.settings.splay * Double.random(in: 0..<1)
          self.logger.debug("exec: change signalled after the splay", metadata: ["exec.splay": "\(delay)"])
          self.after(delay, .splayOver)
          return nil
        }
        return self.tellChild()
      case .splayOver:
        self.splayPending = false
        guard case .running = self.phase else { return nil }
        return self.tellChild()
      case .stop(let signal):
        return self.stop(signal)
      case .shutdown:
        if case .stopping(let child, _) = self.phase {
          self.shuttingDown = true
          self.phase = .stopping(child, restart: false)
          return nil
        }
        return self.stop(SIGTERM)
      case .ended(let pid):
        guard let raw = ChildProcesses.shared.reap(pid) else {
          self.watch(pid)
          return nil
        }
        return self.exited(pid, raw)
      case .restartDue:
        guard case .backingOff = self.phase, !self.shuttingDown else { return nil }
        return self.start()
      case .killDue(let pid):
        guard case .stopping(let child, _) = self.phase, child.pid == pid else { return nil }
        self.logger.warning("exec: the child did not stop within the kill timeout; killing its process group", metadata: [
          "exec.pid": "\(pid)", "exec.kill_timeout": "\(self.settings.killTimeout)",
        ])
        _ = kill(-pid, SIGKILL)
        _ = kill(pid, SIGKILL)
        self.metrics.signalled(SIGKILL, reason: "kill")
        return nil
      }
    }

    /// Starts a child; a command that cannot start ends etcsync with 127 (not found) or 126,
    /// as a shell would.
    mutating func start() -> Int32? {
      let argv = self.settings.command
      let pid: pid_t
      do {
        pid = try ProcessSpawner.spawnInheritingStdio(argv, environment: self.supervisor.environment)
      } catch {
        self.logger.error("exec: the child cannot start", metadata: ["exec.argv": .array(argv.map { .string($0) }), "error": "\(error)"])
        return error.errno == ENOENT ? 127 : 126
      }
      self.phase = .running(Child(pid: pid, started: .now))
      self.metrics.starts.increment()
      self.metrics.running.record(1)
      self.logger.info("exec: child started", metadata: ["exec.argv": .array(argv.map { .string($0) }), "exec.pid": "\(pid)"])
      self.watch(pid)
      return nil
    }

    /// Waits on a thread of its own until the child `pid` has ended, without reaping it:
    /// ``Event/ended(_:)`` reaps it on the loop, after which nothing signals that pid.
    func watch(_ pid: pid_t) {
      let continuation = self.supervisor.continuation
      let thread = Thread {
        ChildProcesses.shared.waitUntilEnded(pid)
        continuation.yield(.ended(pid))
      }
      thread.name = "etcsync-exec-wait"
      thread.start()
    }

    /// A change: the signal, or a restart.
    mutating func tellChild() -> Int32? {
      guard case .running(let child) = self.phase else { return nil }
      switch self.settings.onChange {
      case .signal:
        let signal = self.settings.signal
        self.logger.info("exec: signalling the child after a change", metadata: [
          "exec.pid": "\(child.pid)", "exec.signal": "\(ExecSettings.signalName(signal))",
        ])
        _ = kill(child.pid, signal)
        self.metrics.signalled(signal, reason: "change")
      case .restart:
        self.logger.info("exec: restarting the child after a change", metadata: ["exec.pid": "\(child.pid)"])
        self.metrics.restartsOnChange.increment()
        self.askToStop(child, signal: SIGTERM, restart: true, reason: "change")
      }
      return nil
    }

    /// A stop signal for etcsync.
    mutating func stop(_ signal: Int32) -> Int32? {
      self.shuttingDown = true
      switch self.phase {
      case .waiting:
        self.logger.info("exec: stopped before the child started")
        return 0
      case .backingOff:
        return self.lastStatus
      case .running(let child):
        self.askToStop(child, signal: signal, restart: false, reason: "forward")
      case .stopping(let child, _):
        // A second signal (a second Ctrl-C) goes on too; the kill timeout stays the first one's.
        self.phase = .stopping(child, restart: false)
        self.logger.info("exec: forwarding a signal to the child", metadata: ["exec.pid": "\(child.pid)", "exec.signal": "\(ExecSettings.signalName(signal))"])
        _ = kill(child.pid, signal)
        self.metrics.signalled(signal, reason: "forward")
      }
      return nil
    }

    mutating func askToStop(_ child: Child, signal: Int32, restart: Bool, reason: String) {
      if !restart {
        self.logger.info("exec: forwarding a signal to the child", metadata: [
          "exec.pid": "\(child.pid)", "exec.signal": "\(ExecSettings.signalName(signal))",
        ])
      }
      self.phase = .stopping(child, restart: restart)
      _ = kill(child.pid, signal)
      self.metrics.signalled(signal, reason: reason)
      self.after(self.settings.killTimeout, .killDue(child.pid))
    }

    /// The child ended.
    mutating func exited(_ pid: pid_t, _ raw: Int32) -> Int32? {
      let child: Child
      let restart: Bool
      let asked: Bool
      switch self.phase {
      case .running(let running): (child, restart, asked) = (running, false, false)
      case .stopping(let stopping, let again): (child, restart, asked) = (stopping, again, true)
      case .waiting, .backingOff: return nil
      }
      guard child.pid == pid else { return nil }
      let status = ExecSupervisor.exitStatus(rawStatus: raw)
      let termination = CommandResult.Termination(rawStatus: raw)
      self.lastStatus = status
      self.metrics.running.record(0)
      self.metrics.exited(termination.metricLabel)
      self.logger.log(level: asked ? .info : .notice, "exec: child exited", metadata: [
        "exec.pid": "\(pid)", "exec.status": "\(termination)", "exec.asked_to_stop": "\(asked)",
      ])
      if restart && !self.shuttingDown { return self.start() }
      if asked || self.shuttingDown || self.settings.onChildExit == .stop { return status }
      // Exited on its own, to be restarted: a child that ran a while starts the backoff afresh.
      if ContinuousClock.now - child.started >= self.settings.restartBackoff.max { self.backoff.reset() }
      let delay = self.backoff.next()
      self.metrics.restartsOnExit.increment()
      self.logger.notice("exec: restarting the child after a backoff", metadata: ["exec.restart_in": "\(delay)"])
      self.phase = .backingOff
      self.after(delay, .restartDue)
      return nil
    }

    /// Sends `event` to the loop after `delay` (a timer that fires after the loop ended is
    /// ignored).
    func after(_ delay: Duration, _ event: Event) {
      let continuation = self.supervisor.continuation
      Task {
        try? await Task.sleep(for: delay)
        continuation.yield(event)
      }
    }
  }
}

extension CommandResult.Termination {
  /// `0`…`255` for an exit status, `SIGTERM` for a signal.
  var metricLabel: String {
    switch self {
    case .exited(let code): return "\(code)"
    case .signaled(let signal): return ExecSettings.signalName(signal)
    }
  }
}
