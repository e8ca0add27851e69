#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Exec mode (`exec:` in the file, `etcsync run --exec -- CMD ARGS…` on the command line):
/// etcsync renders every mapping once, then runs `command` as its child and tells it about
/// every change, like consul-template's exec mode. Read at start only: a SIGHUP does not
/// change it.
public struct ExecSettings: Sendable, Equatable {
  /// What the child is told when a batch changed files.
  public enum OnChange: String, Sendable, CaseIterable {
    /// Send ``ExecSettings/signal`` to the child.
    case signal
    /// Stop the child (SIGTERM, SIGKILL after ``ExecSettings/killTimeout``) and start it again.
    case restart
  }

  /// What etcsync does when the child exits without being asked to.
  public enum OnChildExit: String, Sendable, CaseIterable {
    /// etcsync stops and exits with the child's status.
    case stop
    /// The child is started again after a backoff (``ExecSettings/restartBackoff``).
    case restart
  }

  /// The child's argv (argv[0] looked up in `PATH`, no shell).
  public var command: [String]
  /// The signal a change sends (SIGHUP by default).
  public var signal: Int32
  /// Signal the child, or restart it, on a change.
  public var onChange: OnChange
  /// How long a child asked to stop (a forwarded SIGTERM, a restart) may take before it gets
  /// SIGKILL, with every process left in its process group.
  public var killTimeout: Duration
  /// The longest random delay before a change is signalled, so that a fleet does not reload
  /// at once (0: signal at once).
  public var splay: Duration
  /// Stop or restart when the child exits on its own.
  public var onChildExit: OnChildExit
  /// The delays between restarts of a child that keeps exiting (`onChildExit: restart`):
  /// 1 s, doubling, at most 30 s; reset once a child has run for 30 s.
  public var restartBackoff: RetrySettings

  /// Exec settings for `command` with the defaults: SIGHUP on change, 10 s kill timeout, no
  /// splay, stop when the child exits.
  public init(command: [String], signal: Int32 = SIGHUP, onChange: OnChange = .signal, killTimeout: Duration = .seconds(10),
              splay: Duration = .zero, onChildExit: OnChildExit = .stop,
              restartBackoff: RetrySettings = RetrySettings(min: .seconds(1), max: .seconds(30))) {
    self.command = command
    self.signal = signal
    self.onChange = onChange
    self.killTimeout = killTimeout
    self.splay = splay
    self.onChildExit = onChildExit
    self.restartBackoff = restartBackoff
  }

  /// The signals `signal` accepts, by name without `SIG`.
  public static let signalNames: [(name: String, number: Int32)] = [
    ("HUP", SIGHUP), ("INT", SIGINT), ("QUIT", SIGQUIT), ("TERM", SIGTERM), ("USR1", SIGUSR1), ("USR2", SIGUSR2),
    ("WINCH", SIGWINCH), ("ALRM", SIGALRM), ("CONT", SIGCONT),
  ]

  /// A signal by name: `SIGHUP`, `HUP` or `hup`; nil for an unknown one.
  public static func signal(named text: String) -> Int32? {
    var name = text.uppercased()
    if name.hasPrefix("SIG") { name.removeFirst(3) }
    return self.signalNames.first { $0.name == name }?.number
  }

  /// `SIGHUP` for 1, `signal 42` for a number without a name.
  public static func signalName(_ number: Int32) -> String {
    self.signalNames.first { $0.number == number }.map { "SIG\($0.name)" } ?? "signal \(number)"
  }
}

extension ExecSettings {
  /// `exec: {command: [argv], signal: SIGHUP, onChange: signal|restart, killTimeout: 10s,
  /// splay: 0s, onChildExit: stop|restart}`.
  init(decoding node: ConfigNode) throws(ConfigurationError) {
    let map = try node.keyed(["command", "signal", "onChange", "killTimeout", "splay", "onChildExit"])
    self.init(command: try map.required("command", "the child's argv, such as command: [nginx, -g, \"daemon off;\"]")
      .argv(example: "[nginx, -g, \"daemon off;\"]"))
    if let signalNode = map["signal"] {
      let expected = "a signal name such as SIGHUP (one of " + Self.signalNames.map { "SIG\($0.name)" }.joined(separator: ", ") + ")"
      guard let number = Self.signal(named: try signalNode.nonEmptyString(expected: expected)) else {
        throw signalNode.invalid(expected)
      }
      self.signal = number
    }
    if let onChange = try map["onChange"]?.oneOf(OnChange.self, ignoringCase: true) { self.onChange = onChange }
    if let killTimeout = try map["killTimeout"]?.positiveDuration() { self.killTimeout = killTimeout }
    if let splayNode = map["splay"] {
      let splay = try splayNode.duration()
      guard splay >= .zero else { throw splayNode.invalid("a duration of 0s or more such as \"5s\"") }
      self.splay = splay
    }
    if let onChildExit = try map["onChildExit"]?.oneOf(OnChildExit.self, ignoringCase: true) { self.onChildExit = onChildExit }
  }
}
