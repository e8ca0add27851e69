#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Keeps the last `limit` bytes of a stream.
struct OutputTail {
  let limit: Int
  private(set) var bytes: [UInt8] = []
  private(set) var dropped = 0

  init(limit: Int) { self.limit = max(0, limit) }

  mutating func append(_ chunk: ArraySlice<UInt8>) {
    bytes.append(contentsOf: chunk)
    // Trim in batches so that a chatty command costs amortised O(1) per byte.
    if bytes.count > 2 * limit + 4096 { trim() }
  }

  mutating func trim() {
    guard bytes.count > limit else { return }
    let excess = bytes.count - limit
    bytes.removeFirst(excess)
    dropped += excess
  }
}

/// Watches one spawned process on a dedicated thread (never a cooperative one): collects its
/// output, reaps it, and on timeout or cancellation sends SIGTERM to its whole process group,
/// then SIGKILL once the grace period has passed while any member is left.
final class ProcessSupervisor: Sendable {
  /// Limits of one supervision.
  struct Limits {
    var timeout: Duration
    var killGracePeriod: Duration
    var outputLimit: Int
    /// How long output is still read after the leader exited while something (a background
    /// grandchild) keeps the output socket open.
    var drainWindow: Duration = .milliseconds(100)
  }

  /// What the supervision saw.
  struct Outcome {
    var rawStatus: Int32
    var timedOut: Bool
    var cancelled: Bool
    var output: OutputTail
    var duration: Duration
  }

  private let cancelRequested = Mutex(false)

  /// Asks the supervision to kill the process group (task cancellation).
  func cancel() { cancelRequested.withLock { $0 = true } }

  /// Supervises `process` until it is reaped and its output is drained. Blocks the thread.
  func supervise(_ process: SpawnedProcess, limits: Limits) -> Outcome {
    let clock = ContinuousClock()
    let start = clock.now
    var state = State(output: OutputTail(limit: limits.outputLimit))
    var idle = Duration.milliseconds(1)
    while true {
      let now = clock.now
      if state.status == nil { state.status = reap(process.pid) }
      if state.status != nil && state.exitedAt == nil { state.exitedAt = now }
      enforceLimits(process.pid, &state, now: now, deadline: start + limits.timeout, limits: limits)
      if let exitedAt = state.exitedAt, state.groupSettled,
        state.endOfOutput || now >= exitedAt + limits.drainWindow
      {
        break
      }
      if state.endOfOutput {
        sleep(for: idle)
        idle = min(idle * 2, .milliseconds(20))
      } else {
        readOutput(process.output, into: &state, waitingAtMost: .milliseconds(20))
      }
    }
    state.output.trim()
    return Outcome(
      rawStatus: state.status ?? 0, timedOut: state.timedOut, cancelled: state.cancelled,
      output: state.output, duration: clock.now - start)
  }

  private struct State {
    var output: OutputTail
    var chunk = [UInt8](repeating: 0, count: 16 * 1024)
    var status: Int32?
    var exitedAt: ContinuousClock.Instant?
    var endOfOutput = false
    var timedOut = false
    var cancelled = false
    var terminatedAt: ContinuousClock.Instant?
    var killed = false
    /// True when nothing more is to be done about the group: it was never asked to stop, or
    /// it got SIGKILL, or no member is left.
    var groupSettled: Bool { terminatedAt == nil || killed }
  }

  private func enforceLimits(
    _ pid: pid_t, _ state: inout State, now: ContinuousClock.Instant,
    deadline: ContinuousClock.Instant, limits: Limits
  ) {
    if state.terminatedAt == nil && state.status == nil {
      let cancelled = cancelRequested.withLock { $0 }
      guard now >= deadline || cancelled else { return }
      state.timedOut = !cancelled
      state.cancelled = cancelled
      state.terminatedAt = now
      _ = kill(-pid, SIGTERM)
    } else if let terminatedAt = state.terminatedAt, !state.killed {
      if kill(-pid, 0) != 0 && currentErrno() == ESRCH {
        state.killed = true
      } else if now >= terminatedAt + limits.killGracePeriod {
        _ = kill(-pid, SIGKILL)
        state.killed = true
      }
    }
  }

  /// Waits up to `timeout` for output and reads what is there.
  private func readOutput(_ fd: FileDescriptor, into state: inout State, waitingAtMost timeout: Duration) {
    var poller = pollfd(fd: fd.raw, events: Int16(POLLIN), revents: 0)
    let ready = poll(&poller, 1, Int32(timeout / .milliseconds(1)))
    guard ready > 0 else { return }
    let count = state.chunk.withUnsafeMutableBytes { buffer in
      retryingEINTR { read(fd.raw, buffer.baseAddress, buffer.count) }
    }
    if count > 0 {
      state.output.append(state.chunk[0..<count])
    } else if count == 0 || currentErrno() != EAGAIN {
      state.endOfOutput = true
    }
  }

  /// `waitpid(WNOHANG)` through ``ChildProcesses`` (which PID 1's orphan reaper shares): the
  /// raw status once the process has ended. A status lost to someone else (SIGCHLD ignored)
  /// reads as exit 255, so that a check never passes by accident.
  private func reap(_ pid: pid_t) -> Int32? {
    ChildProcesses.shared.reap(pid)
  }

  private func sleep(for duration: Duration) {
    var request = timespec(tv_sec: 0, tv_nsec: Int(duration / .nanoseconds(1)))
    _ = nanosleep(&request, nil)
  }
}

extension CommandResult.Termination {
  /// Decodes a `waitpid` status (the `WIFEXITED`/`WTERMSIG` macros are not imported).
  init(rawStatus status: Int32) {
    let signal = status & 0x7f
    self = signal == 0 ? .exited((status >> 8) & 0xff) : .signaled(signal)
  }
}
