import Synchronization

/// Whether the agent is ready (`/readyz`): its first full sync is done, it can reach etcd
/// (so its watch is current), and no reload has run longer than expected (see
/// ``Agent/overdueReloadThreshold(timeout:)``). Shared between the agent and the health server.
public final class Readiness: Sendable {
  private let state = Mutex<(synced: Bool, connected: Bool, reason: String)>((false, false, "the first sync has not finished"))
  /// Mappings whose reload has run longer than expected, in name order.
  private let overdue = Mutex<[String]>([])

  /// Creates a readiness that is not ready.
  public init() {}

  /// Whether `/readyz` answers 200.
  public var isReady: Bool { self.state.withLock { $0.synced && $0.connected } && self.overdue.withLock { $0.isEmpty } }

  /// Why the agent is not ready (empty when it is).
  public var reason: String {
    let reason = self.state.withLock { state in
      if !state.synced { return state.reason }
      return state.connected ? "" : state.reason
    }
    guard reason.isEmpty else { return reason }
    let overdue = self.overdue.withLock { $0 }
    guard !overdue.isEmpty else { return "" }
    return "the reload of mapping\(overdue.count == 1 ? "" : "s") \(overdue.joined(separator: ", ")) has run longer than expected"
  }

  /// The mappings whose reload has run longer than expected (none: empty). Returns whether
  /// that changed anything.
  @discardableResult
  func reloadsOverdue(_ names: [String]) -> Bool {
    let sorted = names.sorted()
    return self.overdue.withLock { current in
      defer { current = sorted }
      return current != sorted
    }
  }

  /// The first sync finished.
  func synced() {
    self.state.withLock { $0.synced = true; $0.connected = true; $0.reason = "" }
  }

  /// The agent reached etcd, or could not (with why). Returns whether that changed anything.
  @discardableResult
  func connected(_ connected: Bool, reason: String = "") -> Bool {
    self.state.withLock { state in
      let changed = state.connected != connected
      state.connected = connected
      if !connected { state.reason = reason }
      return changed
    }
  }
}
