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
  /// group, with stdin on `/dev/null`, stdout and stderr on one socket, no other descriptor,
  /// an empty signal mask and default signal dispositions. `environment` nil inherits the agent's environment.
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
    closeInheritedDescriptors(&actions)

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
  /// signal mask and default signal dispositions. Descriptors the agent inherited without
  /// close-on-exec pass through, as from any container entrypoint (a supervisor's readiness
  /// descriptor, sockets handed over with `LISTEN_FDS`); the agent's own are all close-on-exec. Returns its pid, also its process group id.
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

  /// Closes every descriptor above stderr in a check or reload command. The agent's own
  /// descriptors are all close-on-exec; this is for those it inherited without that flag (a
  /// supervisor's pipes, the exit-detection socket Foundation's `Process` leaves in the
  /// processes it starts), which a command, or a daemon it leaves behind, would otherwise
  /// hold open for as long as it runs, keeping whoever waits on them waiting.
  private static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
    if let addCloseFrom {
      _ = addCloseFrom(&actions, 3)
      return
    }
    // A C library before glibc 2.34: the descriptors open now, one by one.
    guard let directory = opendir("/proc/self/fd") else { return }
    defer { closedir(directory) }
    let own = dirfd(directory)
    while let entry = readdir(directory) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
      if let fd = Int32(name), fd > 2, fd != own, fcntl(fd, F_GETFD) >= 0, fcntl(fd, F_GETFD) & FD_CLOEXEC == 0 {
        posix_spawn_file_actions_addclose(&actions, fd)
      }
    }
  }

  /// `posix_spawn_file_actions_addclosefrom_np` (glibc 2.34 and later), which Swift's Glibc
  /// module does not import: looked up at run time, nil where the C library lacks it.
  private static let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
    guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "posix_spawn_file_actions_addclosefrom_np") else {
      return nil
    }
    return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
  }()

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
