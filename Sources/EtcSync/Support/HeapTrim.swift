#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Gives the allocator's free memory back to the kernel once the daemon's work pauses. glibc's
/// malloc keeps the memory of freed blocks in its heaps, so the garbage of each apply (watch
/// responses, the rendered output, the old snapshot's arrays) stays resident after the work is
/// done: `etcsync run` over 10,000 keys grew from 7.9 to 10.4 MiB of anonymous memory in 300
/// updates. `malloc_trim(0)` returns every free page of every heap (`madvise(MADV_DONTNEED)`).
///
/// Each call of ``noteWork()`` restarts a quiet period; the trim runs once that period has passed
/// without another call, so a burst of changes is never slowed by it and a daemon at rest is
/// trimmed once. The `etcsync` executable's daemon notes every step of the agent's progress
/// once its first apply is done (``AgentSupervisor``'s `releaseMemory`): an apply that makes no
/// progress for a second (a large one) can meet a trim, which only takes the allocator's locks
/// for its duration. A library user's process is never trimmed.
/// Measured in docs/benchmarks.md ("The process at rest").
public final class HeapTrim: Sendable {
  /// The daemon's: one second of quiet, then `malloc_trim(0)`.
  public static let daemon = HeapTrim(quiet: .seconds(1)) { _ = etcsyncMallocTrim(0) }

  private struct State {
    var pending = false
    var generation: UInt64 = 0
  }

  private let state = Mutex(State())
  private let quiet: Duration
  private let sleep: @Sendable (Duration) async -> Void
  private let trim: @Sendable () -> Void

  /// A trimmer that calls `trim` once `quiet` has passed (as `sleep` waits it) without a
  /// ``noteWork()``.
  init(quiet: Duration, sleep: @escaping @Sendable (Duration) async -> Void = { try? await Task.sleep(for: $0) },
       trim: @escaping @Sendable () -> Void) {
    self.quiet = quiet
    self.sleep = sleep
    self.trim = trim
  }

  /// Notes that work happened: the heap is trimmed after the next quiet period.
  public func noteWork() {
    let start = self.state.withLock { state -> Bool in
      state.generation &+= 1
      guard !state.pending else { return false }
      state.pending = true
      return true
    }
    guard start else { return }
    Task.detached { [self] in
      var seen = self.state.withLock { $0.generation }
      while true {
        await self.sleep(self.quiet)
        let quiet = self.state.withLock { state -> Bool in
          guard state.generation == seen else {
            seen = state.generation
            return false
          }
          state.pending = false
          return true
        }
        if quiet { break }
      }
      self.trim()
    }
  }

  /// Caps glibc's malloc at two arenas. By default each thread that meets a locked arena makes
  /// another, up to eight per core, and the free memory of each stays with it: two are what the
  /// daemon's event loop and its tasks need (each thread still keeps its own small-block cache).
  /// Called by `etcsync run` before its agent starts; arenas made before stay. An operator's
  /// `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES=glibc.malloc.arena_max=N` (glibc reads both at
  /// start) is left in force.
  public static func limitArenas() {
    guard getenv("MALLOC_ARENA_MAX") == nil else { return }
    if let tunables = getenv("GLIBC_TUNABLES"), String(cString: tunables).contains("glibc.malloc.arena_max") { return }
    _ = etcsyncMallopt(-8 /* M_ARENA_MAX in malloc.h */, 2)
  }
}

// glibc's malloc.h, which the Glibc module does not export.
@_silgen_name("malloc_trim") private func etcsyncMallocTrim(_ pad: UInt) -> Int32
@_silgen_name("mallopt") private func etcsyncMallopt(_ parameter: Int32, _ value: Int32) -> Int32
