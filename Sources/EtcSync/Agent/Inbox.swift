import EtcdClient
import Synchronization
import Templates

/// The daemon's single input queue: watch responses, compaction, and timer ticks. It counts
/// what is queued, so the loop can coalesce a burst before rendering.
final class Inbox: Sendable {
  enum Input: Sendable {
    /// A watcher's response (`watcher` indexes the agent's watched ranges); `generation`
    /// tells the watch it came from (a compaction starts another).
    case response(WatchResponse, watcher: Int, generation: Int)
    /// A watch of `generation` was compacted.
    case compacted(generation: Int)
    case failed(any Error), local(String, Set<ExactString>?), tick
    /// What reads found of watched ranges behind the newest revision (see `RevisionBarrier`).
    case rangesChecked(RangeCheckResult)
    /// A mapping's reload ended (its outcome in the result).
    case reloaded(String, MappingResult)
    /// Files of a mapping without write-back to check for local changes (nil: all of them).
    case drift(String, Set<ExactString>?)
  }
  let stream: AsyncStream<Input>
  private let continuation: AsyncStream<Input>.Continuation
  private let queued = Atomic<Int>(0)
  private let queuedResponses = Atomic<Int>(0)

  init() {
    (self.stream, self.continuation) = AsyncStream.makeStream(of: Input.self)
  }

  var pending: Int { self.queued.load(ordering: .relaxed) }
  /// Watch responses queued and not yet consumed.
  var pendingResponses: Int { self.queuedResponses.load(ordering: .relaxed) }

  func send(_ input: Input) {
    self.queued.add(1, ordering: .relaxed)
    if case .response = input { self.queuedResponses.add(1, ordering: .relaxed) }
    self.continuation.yield(input)
  }

  func consumed(_ input: Input) {
    self.queued.subtract(1, ordering: .relaxed)
    if case .response = input { self.queuedResponses.subtract(1, ordering: .relaxed) }
  }

  /// The earliest tick already armed; a later one is not armed beside it (applying due
  /// mappings at that tick re-arms whatever is still waiting), so a burst arms one timer, not
  /// one per input.
  private let armed = Mutex<ContinuousClock.Instant?>(nil)

  func tick(at deadline: ContinuousClock.Instant) {
    let arm = self.armed.withLock { current -> Bool in
      if let current, current <= deadline { return false }
      current = deadline
      return true
    }
    guard arm else { return }
    Task {
      try? await Task.sleep(until: deadline)
      self.armed.withLock { if $0 == deadline { $0 = nil } }
      self.send(.tick)
    }
  }
}
