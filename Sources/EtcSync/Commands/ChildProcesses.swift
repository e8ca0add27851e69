#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization

/// Every child process etcsync starts, and, when etcsync runs as PID 1 (a container's
/// entrypoint), the reaper of every other process that ends as its child: orphans the kernel
/// re-parents to PID 1.
///
/// A blanket `waitpid(-1)` would steal the status of a `check` command or of the exec child
/// from the code waiting for it, and would free its pid while that code may still signal it
/// (a freed pid can be reused by an unrelated process). So a registered child is reaped by its
/// owner alone (``reap(_:)``): until then it stays a zombie and its pid stays taken. The orphan
/// reaper reaps only unregistered children, each by its pid. Every reap goes through one lock,
/// under which a spawn registers its pid too (a child that ends at once is never taken for an
/// orphan).
public final class ChildProcesses: Sendable {
  /// The process's one registry (a process has one set of children).
  public static let shared = ChildProcesses()

  private struct State {
    /// Children started by etcsync whose owner has not reaped them yet.
    var registered: Set<pid_t> = []
    var reaping = false
  }

  private let state = Mutex(State())

  /// Runs `spawn` (a `posix_spawn` call that sets the pid and returns 0, or an error number)
  /// under the lock, and registers the child it started.
  func spawn(_ spawn: (inout pid_t) -> Int32) -> (pid: pid_t, error: Int32) {
    self.state.withLock { state in
      var pid = pid_t()
      let error = spawn(&pid)
      if error == 0 { state.registered.insert(pid) }
      return (pid, error)
    }
  }

  /// Reaps the registered child `pid` if it has ended: its raw `waitpid` status, nil while it
  /// runs. Until this returns a status the pid is still this process's (a zombie at worst), so
  /// signalling it reaches no other process. A child reaped by someone else entirely (SIGCHLD
  /// ignored) reports exit 255, so that a check never passes by accident.
  func reap(_ pid: pid_t) -> Int32? {
    self.state.withLock { state in
      var status: Int32 = 0
      let result = retryingEINTR { waitpid(pid, &status, WNOHANG) }
      if result == pid {
        state.registered.remove(pid)
        return status
      }
      guard result < 0 && currentErrno() == ECHILD else { return nil }
      state.registered.remove(pid)
      return 0xff00
    }
  }

  /// Blocks the calling thread until the registered child `pid` has ended, without reaping
  /// it: the caller reaps it with ``reap(_:)`` once it no longer signals it.
  func waitUntilEnded(_ pid: pid_t) {
    while true {
      var info = siginfo_t()
      if waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) == 0 { return }
      switch currentErrno() {
      case EINTR: continue
      // Not a child (any more): reaped elsewhere (SIGCHLD ignored); ``reap(_:)`` tells.
      case ECHILD: return
      default: Self.pause(.milliseconds(50))
      }
    }
  }

  /// Whether the orphan reaper runs (``startReapingOrphans(onOrphan:)``).
  public var isReapingOrphans: Bool { self.state.withLock { $0.reaping } }

  /// Starts, once, a thread that reaps every child that ends and that etcsync did not start
  /// (an orphan re-parented to this process), reporting each to `onOrphan` with its pid and
  /// raw status. A registered child is left to its owner. For PID 1 (or a subreaper) only:
  /// elsewhere the kernel re-parents orphans to the real init.
  ///
  /// The thread sleeps in `waitid(WNOWAIT)` until a child ends. When the ended child is a
  /// registered one, `waitid` would return it again at once until its owner reaps it; until
  /// then the thread polls every 20 ms, reaping the unregistered children it finds in
  /// `/proc/self/task/*/children`.
  public func startReapingOrphans(onOrphan: @escaping @Sendable (pid_t, Int32) -> Void) {
    let started = self.state.withLock { state in
      defer { state.reaping = true }
      return state.reaping
    }
    guard !started else { return }
    let thread = Thread { [self] in
      while true {
        var info = siginfo_t()
        let result = waitid(P_ALL, 0, &info, WEXITED | WNOWAIT)
        if result < 0 {
          // No child at all: one can appear only by a spawn of ours or by re-parenting.
          if currentErrno() == ECHILD { Self.pause(.milliseconds(200)) }
          continue
        }
        let pid = info._sifields._sigchld.si_pid
        if let status = self.reapUnregistered(pid) {
          onOrphan(pid, status)
          continue
        }
        // A registered child ended: its owner reaps it.
        while Self.isEnded(pid) {
          for child in Self.children() {
            if let status = self.reapUnregistered(child) { onOrphan(child, status) }
          }
          Self.pause(.milliseconds(20))
        }
      }
    }
    thread.name = "etcsync-reaper"
    thread.start()
  }

  /// Reaps `pid` if it is a child that ended and that nobody registered; its raw status.
  private func reapUnregistered(_ pid: pid_t) -> Int32? {
    self.state.withLock { state in
      guard pid > 0, !state.registered.contains(pid) else { return nil }
      var status: Int32 = 0
      return retryingEINTR { waitpid(pid, &status, WNOHANG) } == pid ? status : nil
    }
  }

  /// Whether `pid` is still an ended, unreaped child (false once reaped, even if its pid was
  /// reused by a new child that runs).
  private static func isEnded(_ pid: pid_t) -> Bool {
    var info = siginfo_t()
    let result = retryingEINTR { waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT | WNOHANG) }
    return result == 0 && info._sifields._sigchld.si_pid == pid
  }

  /// This process's children, from `/proc/self/task/*/children`; none when `/proc` is
  /// missing or belongs to another PID namespace (its pids would not be ours).
  private static func children() -> [pid_t] {
    guard Self.readText("/proc/self/stat")?.split(separator: " ").first == Substring("\(getpid())"),
      let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")
    else { return [] }
    return tasks.flatMap { task in
      (Self.readText("/proc/self/task/\(task)/children") ?? "").split(separator: " ").compactMap { pid_t($0) }
    }
  }

  /// The whole text of a (procfs) file, nil when it cannot be read.
  private static func readText(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
      let count = chunk.withUnsafeMutableBytes { buffer in
        retryingEINTR { read(fd, buffer.baseAddress, buffer.count) }
      }
      if count < 0 { return nil }
      if count == 0 { break }
      bytes.append(contentsOf: chunk[0..<count])
    }
    return String(decoding: bytes, as: UTF8.self)
  }

  private static func pause(_ duration: Duration) {
    var request = timespec(tv_sec: 0, tv_nsec: Int(duration / .nanoseconds(1)))
    _ = nanosleep(&request, nil)
  }
}
