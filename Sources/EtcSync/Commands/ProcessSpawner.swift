#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A child process started by ``ProcessSpawner``.
struct SpawnedProcess: Sendable {
  /// Its pid, which is also its process group id.
  let pid: pid_t
  /// The read end of the socket its stdout and stderr both write to.
  let output: FileDescriptor
}

/// A small `posix_spawn` wrapper: Foundation's `Process` cannot put the child in a process
/// group of its own, which a timeout needs to kill the whole group.
enum ProcessSpawner {
  /// Starts `argv` (argv[0] looked up in `PATH`, no shell) as the leader of a new process
  /// group, with stdin on `/dev/null`, stdout and stderr on one socket, an empty signal mask
  /// and default signal dispositions. `environment` nil inherits the agent's environment.
  static func spawn(_ argv: [String], environment: [String: String]?) throws(CommandError)
    -> SpawnedProcess
  {
    var sockets: [Int32] = [-1, -1]
    let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
    guard socketpair(AF_UNIX, type, 0, &sockets) == 0 else {
      throw CommandError(.spawnFailed, argv: argv, errno: currentErrno())
    }
    let readEnd = FileDescriptor(sockets[0])
    let writeEnd = FileDescriptor(sockets[1])
    // The parent's copy of the write end must stay open until the spawn has happened.
    defer { withExtendedLifetime(writeEnd) {} }
    _ = shutdown(readEnd.raw, Int32(SHUT_WR))

    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, writeEnd.raw, 1)
    posix_spawn_file_actions_adddup2(&actions, writeEnd.raw, 2)

    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    configure(&attributes)

    let pid = try withCStrings(argv) { (arguments) throws(CommandError) -> pid_t in
      try withEnvironment(environment) { (environ) throws(CommandError) -> pid_t in
        // Registered as it starts: the orphan reaper of PID 1 never takes its status.
        let (pid, status) = ChildProcesses.shared.spawn { pid in
          posix_spawnp(&pid, argv[0], &actions, &attributes, arguments, environ)
        }
        guard status == 0 else { throw CommandError(.spawnFailed, argv: argv, errno: status) }
        return pid
      }
    }
    return SpawnedProcess(pid: pid, output: readEnd)
  }

  /// Starts `argv` (argv[0] looked up in `PATH`, no shell) as the leader of a new process
  /// group that shares the agent's stdin, stdout and stderr (exec mode's child), with an empty
  /// signal mask and default signal dispositions. Returns its pid, also its process group id.
  static func spawnInheritingStdio(_ argv: [String], environment: [String: String]?) throws(CommandError) -> pid_t {
    guard !argv.isEmpty else { throw CommandError(.emptyArgv, argv: argv) }
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    configure(&attributes)
    return try withCStrings(argv) { (arguments) throws(CommandError) -> pid_t in
      try withEnvironment(environment) { (environ) throws(CommandError) -> pid_t in
        let (pid, status) = ChildProcesses.shared.spawn { pid in
          posix_spawnp(&pid, argv[0], nil, &attributes, arguments, environ)
        }
        guard status == 0 else { throw CommandError(.spawnFailed, argv: argv, errno: status) }
        return pid
      }
    }
  }

  /// New process group (pgid = pid), empty signal mask, every signal back to its default
  /// (the agent ignores SIGPIPE; its children must not inherit that).
  private static func configure(_ attributes: inout posix_spawnattr_t) {
    let flags = POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
    posix_spawnattr_setflags(&attributes, Int16(flags))
    posix_spawnattr_setpgroup(&attributes, 0)
    var mask = sigset_t()
    sigemptyset(&mask)
    posix_spawnattr_setsigmask(&attributes, &mask)
    var defaults = sigset_t()
    sigfillset(&defaults)
    posix_spawnattr_setsigdefault(&attributes, &defaults)
  }

  /// Calls `body` with a NULL-terminated C array of `strings`.
  private static func withCStrings<R>(
    _ strings: [String],
    _ body: ([UnsafeMutablePointer<CChar>?]) throws(CommandError) -> R
  ) throws(CommandError) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { pointers.forEach { free($0) } }
    return try body(pointers)
  }

  /// Calls `body` with the environment to give the child: the agent's own (`environ`) when
  /// `environment` is nil.
  private static func withEnvironment<R>(
    _ environment: [String: String]?,
    _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>?) throws(CommandError) -> R
  ) throws(CommandError) -> R {
    guard let environment else { return try body(environ) }
    let entries = environment.map { "\($0.key)=\($0.value)" }.sorted()
    return try withCStrings(entries) { (pointers) throws(CommandError) -> R in
      try pointers.withUnsafeBufferPointer { (buffer) throws(CommandError) -> R in
        try body(buffer.baseAddress)
      }
    }
  }
}
