import Synchronization

/// A step of an applied batch on its way from etcd to the service, timed from the arrival of
/// the batch's first change (`etcsync_apply_stage_seconds{stage}`, docs/metrics.md).
public enum ApplyStage: String, Sendable, CaseIterable {
  /// The mapping's apply began (after the batching wait, if any).
  case applyStart = "apply_start"
  /// The plan is made: the template rendered, the tree laid out.
  case render
  /// The staged file (a swapped tree's staged directory) is on disk and synced; the check
  /// command runs next. Not recorded for an in-place tree, whose files are written as a batch.
  case fsync
  /// The staged file was renamed over the target (a swapped tree's `..data` re-pointed).
  case rename
  /// The write is done, the directory synced: the files are on disk for good.
  case dirFsync = "dir_fsync"
  /// The reload command returned (success or failure).
  case reload
}

/// When each ``ApplyStage`` of one applied batch was reached, and when its first change
/// arrived. A stage reached twice (a tree's files) keeps its first time.
public struct ApplyStages: Sendable, Equatable {
  /// The arrival of the batch's first change (nil: not a batch of watched changes, such as
  /// the first sync or `etcsync sync`).
  public var arrival: ContinuousClock.Instant?
  private var reached: [ApplyStage: ContinuousClock.Instant] = [:]

  public init(arrival: ContinuousClock.Instant? = nil) {
    self.arrival = arrival
  }

  /// Records `stage` as reached at `now`, unless it already was.
  public mutating func mark(_ stage: ApplyStage, at now: ContinuousClock.Instant = .now) {
    if self.reached[stage] == nil { self.reached[stage] = now }
  }

  /// The time from the arrival to each stage reached, in stage order; empty without an arrival.
  public var sinceArrival: [(ApplyStage, Duration)] {
    guard let arrival else { return [] }
    return ApplyStage.allCases.compactMap { stage in self.reached[stage].map { (stage, $0 - arrival) } }
  }

  /// The earlier arrival of two batches one reload covers.
  func coveringArrival(_ other: ApplyStages?) -> ContinuousClock.Instant? {
    [self.arrival, other?.arrival].compactMap { $0 }.min()
  }
}

/// The stages a writer reaches through its step hook (``WriteStep/afterFsync`` and
/// ``WriteStep/afterRename``), recorded from inside the write.
final class StageMarks: Sendable {
  private let stages: Mutex<ApplyStages>

  init(_ stages: ApplyStages) {
    self.stages = Mutex(stages)
  }

  func mark(_ step: WriteStep) {
    let now = ContinuousClock.now
    switch step {
    case .afterFsync: self.stages.withLock { $0.mark(.fsync, at: now) }
    case .afterRename: self.stages.withLock { $0.mark(.rename, at: now) }
    case .beforeOpen, .afterTempWrite: break
    }
  }

  var value: ApplyStages { self.stages.withLock { $0 } }

  /// `hook` (a test's, or none) with the stages marked before it runs.
  func timing(_ hook: WriteHook?) -> WriteHook {
    { step, path in
      self.mark(step)
      return await hook?(step, path) ?? .proceed
    }
  }
}
