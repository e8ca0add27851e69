import GRPCCore
import Synchronization

/// Enforces ``EtcdConfiguration/requestTimeout`` (and a call's own timeout) for every unary
/// call of one client with a single sleeping task, instead of grpc-swift-2's per-call deadline.
///
/// grpc-swift-2 runs a call that has a deadline in a task group with two child tasks, one of
/// them a timer (`withDeadline` in GRPCCore's `ClientRPCExecutor+OneShotExecutor.swift`): about
/// 0.1 ms of CPU and three or four thread switches per call on the project's machine
/// (docs/benchmarks.md). Here a call runs in one task started in place (`Task.immediate`), is
/// registered with its deadline, and is unregistered when it ends. The sweeper task sleeps
/// until the earliest deadline it knows of and cancels the calls that are overdue; a call
/// cancelled that way fails with `deadlineExceeded`, as before. With the default 30 s timeout
/// and calls that take milliseconds, the sweeper wakes about once per timeout period.
final class RequestDeadlines: Sendable {
  private struct Call {
    var deadline: ContinuousClock.Instant
    var cancel: @Sendable () -> Void
    var expired = false
  }

  private struct State {
    var calls: [UInt64: Call] = [:]
    var nextID: UInt64 = 0
    /// When the running sweeper wakes next; nil when none runs.
    var wake: ContinuousClock.Instant?
    var sweeper: Task<Void, Never>?
    var generation = 0
  }

  private let state = Mutex(State())

  /// Runs `body` (one attempt of a unary call), cancelling it when `timeout` has passed; it then
  /// throws grpc's `deadlineExceeded`. Cancelling the calling task cancels the call. The call
  /// starts on the calling thread and, once it waits, goes on on `executor` (if any).
  func run<Response: Sendable>(
    timeout: Duration,
    executor: (any TaskExecutor)?,
    _ body: @escaping @Sendable () async throws -> Response
  ) async throws -> Response {
    let call = Task.immediate(executorPreference: executor, operation: body)
    let id = self.register(deadline: .now + timeout, cancel: { call.cancel() })
    let result = await withTaskCancellationHandler {
      await call.result
    } onCancel: {
      call.cancel()
    }
    // A call that failed after the sweeper cancelled it failed for its deadline; one that
    // completed all the same keeps its response.
    if self.unregister(id), case .failure = result {
      throw RPCError(code: .deadlineExceeded, message: "RPC timed out before completing (after \(timeout))")
    }
    return try result.get()
  }

  private func register(deadline: ContinuousClock.Instant, cancel: @escaping @Sendable () -> Void) -> UInt64 {
    self.state.withLock { state in
      let id = state.nextID
      state.nextID &+= 1
      state.calls[id] = Call(deadline: deadline, cancel: cancel)
      if let wake = state.wake, wake <= deadline { return id }
      // No sweeper yet, or it sleeps past this deadline: start one that wakes in time.
      state.sweeper?.cancel()
      state.generation += 1
      state.wake = deadline
      let generation = state.generation
      state.sweeper = Task { [weak self] in await self?.sweep(generation: generation, until: deadline) }
      return id
    }
  }

  /// Forgets a call that ended; returns whether the sweeper had cancelled it.
  private func unregister(_ id: UInt64) -> Bool {
    self.state.withLock { $0.calls.removeValue(forKey: id)?.expired ?? false }
  }

  private func sweep(generation: Int, until first: ContinuousClock.Instant) async {
    var wake = first
    while true {
      do { try await Task.sleep(until: wake, tolerance: .milliseconds(5)) } catch { return }
      let now = ContinuousClock.now
      let overdue = self.state.withLock { state -> [@Sendable () -> Void]? in
        guard state.generation == generation else { return nil }
        var overdue: [@Sendable () -> Void] = []
        var next: ContinuousClock.Instant?
        for (id, call) in state.calls where !call.expired {
          if call.deadline <= now {
            state.calls[id]!.expired = true
            overdue.append(call.cancel)
          } else if next == nil || call.deadline < next! {
            next = call.deadline
          }
        }
        state.wake = next
        if next == nil { state.sweeper = nil }
        return overdue
      }
      guard let overdue else { return }
      for cancel in overdue { cancel() }
      guard let next = self.state.withLock({ $0.generation == generation ? $0.wake : nil }) else { return }
      wake = next
    }
  }

  /// Stops the sweeper (the client is shutting down; its calls end with the connections). A
  /// later call starts a new one.
  func stop() {
    self.state.withLock { state in
      state.sweeper?.cancel()
      state.sweeper = nil
      state.wake = nil
      state.generation += 1
    }
  }
}
