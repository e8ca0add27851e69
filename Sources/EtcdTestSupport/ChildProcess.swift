import Foundation
import Glibc
import Synchronization

/// A child process for tests: started with `posix_spawnp`, watched with `waitpid(WNOHANG)`.
///
/// Foundation's `Process` is not used for anything the suite starts: on Linux one manager
/// thread waits for every child with a blocking `waitpid`, fired by a socket each child
/// inherits without close-on-exec. Under a parallel suite that socket (and every `Pipe`)
/// leaks into children started at the same moment, and one stray wake-up blocks that thread on
/// a live process: from then on no `Process` is ever seen to end, and every
/// `waitUntilExit()` hangs, taking the cooperative pool with it. Here each child is polled on
/// its own, output goes to files (never pipes a stray child could hold open), and the child
/// gets no descriptor beyond 0, 1 and 2, an empty signal mask and default dispositions.
public final class ChildProcess: Sendable {
  /// The child's pid.
  public let processIdentifier: pid_t
  /// The raw wait status once the child has been reaped.
  private let status = Mutex<Int32?>(nil)

  /// Starts `argv` (`argv[0]` looked up in `PATH`). stdin is `/dev/null`; stdout and stderr
  /// are appended to the files given (created if missing; the same path for both shares one
  /// descriptor), or go to `/dev/null`. `environment` nil inherits this process's.
  public init(_ argv: [String], environment: [String: String]? = nil, currentDirectory: String? = nil,
              output: String? = nil, error: String? = nil) throws {
    precondition(!argv.isEmpty, "an empty argv")
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    let append = O_WRONLY | O_CREAT | O_APPEND
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, output ?? "/dev/null", output == nil ? O_WRONLY : append, 0o644)
    if let error, error == output {
      posix_spawn_file_actions_adddup2(&actions, 1, 2)
    } else {
      posix_spawn_file_actions_addopen(&actions, 2, error ?? "/dev/null", error == nil ? O_WRONLY : append, 0o644)
    }
    if let currentDirectory {
      guard let addChdir = SpawnExtensions.addChdir else {
        throw TestSupportError("posix_spawn_file_actions_addchdir_np is missing; cannot start \(argv[0]) in \(currentDirectory)")
      }
      let status = addChdir(&actions, currentDirectory)
      guard status == 0 else { throw TestSupportError("cannot start \(argv[0]) in \(currentDirectory): \(String(cString: strerror(status)))") }
    }
    guard let addCloseFrom = SpawnExtensions.addCloseFrom else {
      throw TestSupportError("posix_spawn_file_actions_addclosefrom_np is missing (glibc before 2.34); cannot start \(argv[0]) without leaking descriptors")
    }
    _ = addCloseFrom(&actions, 3)

    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    var mask = sigset_t()
    sigemptyset(&mask)
    posix_spawnattr_setsigmask(&attributes, &mask)
    var defaults = sigset_t()
    sigfillset(&defaults)
    posix_spawnattr_setsigdefault(&attributes, &defaults)

    let arguments = argv.map { strdup($0) } + [nil]
    defer { arguments.forEach { free($0) } }
    let entries: [UnsafeMutablePointer<CChar>?]? = environment.map { environment in
      environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    }
    defer { entries?.forEach { free($0) } }
    var pid: pid_t = 0
    let result = entries.map { entries in
      entries.withUnsafeBufferPointer { posix_spawnp(&pid, argv[0], &actions, &attributes, arguments, $0.baseAddress) }
    } ?? posix_spawnp(&pid, argv[0], &actions, &attributes, arguments, environ)
    guard result == 0 else {
      throw TestSupportError("cannot start \(argv[0]): \(String(cString: strerror(result)))")
    }
    self.processIdentifier = pid
  }

  /// Whether it still runs (it is reaped as soon as it has ended).
  public var isRunning: Bool { self.reaped() == nil }

  /// Its exit status, or the number of the signal that ended it (as Foundation's `Process`
  /// says); -1 while it runs.
  public var terminationStatus: Int32 {
    guard let raw = self.reaped() else { return -1 }
    return raw & 0x7f == 0 ? (raw >> 8) & 0xff : raw & 0x7f
  }

  /// Whether a signal ended it.
  public var endedBySignal: Bool {
    guard let raw = self.reaped() else { return false }
    return raw & 0x7f != 0
  }

  /// Sends `signal`, unless it has already been reaped (its pid may be another process's by then).
  public func signal(_ signal: Int32) {
    self.status.withLock { status in
      if status == nil { _ = kill(self.processIdentifier, signal) }
    }
  }

  /// SIGTERM.
  public func terminate() { self.signal(SIGTERM) }

  /// Waits for it to end, at most `limit` (the limit bounds a hang; it times nothing),
  /// blocking this thread; whether it ended.
  @discardableResult
  public func waitUntilExit(within limit: Duration = .seconds(300)) -> Bool {
    let deadline = ContinuousClock.now + limit
    while self.isRunning {
      if ContinuousClock.now > deadline { return false }
      usleep(2_000)
    }
    return true
  }

  /// Waits for it to end, at most `limit`, without holding a thread; whether it ended.
  @discardableResult
  public func exit(within limit: Duration = .seconds(300)) async -> Bool {
    let deadline = ContinuousClock.now + limit
    while self.isRunning {
      if ContinuousClock.now > deadline { return false }
      try? await Task.sleep(for: .milliseconds(5))
    }
    return true
  }

  /// The raw wait status once ended, reaping it the first time.
  private func reaped() -> Int32? {
    self.status.withLock { status in
      if let status { return status }
      var raw: Int32 = 0
      var result: pid_t
      repeat { result = waitpid(self.processIdentifier, &raw, WNOHANG) } while result < 0 && errno == EINTR
      if result == self.processIdentifier {
        status = raw
      } else if result < 0 {
        status = 0xff00  // not our child any more (ECHILD): ended, status unknown (as 255)
      }
      return status
    }
  }
}

/// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34) and `…_addchdir_np` (2.29),
/// which Swift's Glibc module does not import: looked up at run time.
enum SpawnExtensions {
  typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
  typealias Chdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32

  static let addCloseFrom: CloseFrom? = symbol("posix_spawn_file_actions_addclosefrom_np")
  static let addChdir: Chdir? = symbol("posix_spawn_file_actions_addchdir_np")

  private static func symbol<T>(_ name: String) -> T? {
    guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, name) else { return nil }
    return unsafeBitCast(symbol, to: T.self)
  }
}
