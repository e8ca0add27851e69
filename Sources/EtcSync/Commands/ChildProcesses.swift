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
/// from the code waiting for it. So every reap goes through one lock: a spawn registers its
/// pid under it (a child that ends at once is never taken for an orphan), an owner reaps its
/// own child under it (``reap(_:)``), and the orphan reaper collects every ended child under
/// it, keeping the status of a registered one for its owner and dropping the others.
public final class ChildProcesses: Sendable {
  /// The process's one registry (a process has one set of children).
  public static let shared = ChildProcesses()

  private struct State {
    /// Children started by etcsync whose owner has not reaped them yet.
    var registered: Set<pid_t> = []
    /// Statuses the orphan reaper collected for registered children, until their owner asks.
    var ended: [pid_t: Int32] = [:]
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

  /// The raw `waitpid` status of the registered child `pid` once it has ended (reaped now or
  /// earlier by the orphan reaper), nil while it runs. A child reaped by someone else entirely
  /// (SIGCHLD ignored) reports exit 255, so that a check never passes by accident.
  func reap(_ pid: pid_t) -> Int32? {
    self.state.withLock { state in
      // A status the orphan reaper already took comes first: once reaped, `pid` may belong to
      // another process, which `waitpid` would wait for instead.
      if let ended = state.ended.removeValue(forKey: pid) {
        state.registered.remove(pid)
        return ended
      }
      var status: Int32 = 0
      let result = retryingEINTR { waitpid(pid, &status, WNOHANG) }
      if result == pid {
        state.registered.remove(pid)
        return status
      }
      guard result < 0 && currentErrno() == ECHILD else { return nil }
      state.registered.remove(pid)
      return state.ended.removeValue(forKey: pid) ?? 0xff00
    }
  }

  /// Blocks the calling thread until the registered child `pid` has ended, and returns its
  /// raw status (see ``reap(_:)``).
  func waitForExit(_ pid: pid_t) -> Int32 {
    while true {
      // Waits without reaping: the reap itself happens under the lock.
      var info = siginfo_t()
      let result = waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT)
      if let status = self.reap(pid) { return status }
      if result < 0 && currentErrno() != EINTR { Self.pause(.milliseconds(50)) }
    }
  }

  /// Whether the orphan reaper runs (``startReapingOrphans(onOrphan:)``).
  public var isReapingOrphans: Bool { self.state.withLock { $0.reaping } }

  /// Starts, once, a thread that reaps every child that ends: the status of a registered one
  /// is kept for its owner, any other (an orphan re-parented to this process) is reaped and
  /// reported to `onOrphan` with its pid and raw status. For PID 1 only: elsewhere the
  /// kernel re-parents orphans to the real init, and etcsync's own children are reaped by
  /// their owners. The thread sleeps in `waitid(WNOWAIT)` until a child ends.
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
        for (pid, status) in self.sweep() { onOrphan(pid, status) }
      }
    }
    thread.name = "etcsync-reaper"
    thread.start()
  }

  /// Reaps every ended child now; returns the orphans among them.
  private func sweep() -> [(pid_t, Int32)] {
    self.state.withLock { state in
      var orphans: [(pid_t, Int32)] = []
      while true {
        var status: Int32 = 0
        let pid = retryingEINTR { waitpid(-1, &status, WNOHANG) }
        guard pid > 0 else { break }
        if state.registered.contains(pid) {
          state.ended[pid] = status
        } else {
          orphans.append((pid, status))
        }
      }
      return orphans
    }
  }

  private static func pause(_ duration: Duration) {
    var request = timespec(tv_sec: 0, tv_nsec: Int(duration / .nanoseconds(1)))
    _ = nanosleep(&request, nil)
  }
}
