import Foundation

/// Bounds how many etcd members, clusters and proxies start at once in one test process.
///
/// Swift Testing runs every test in parallel; at the start of a run a hundred tests each start
/// an etcd at once, and on two slow cores none of them elects itself leader within its 30 s
/// readiness limit (seen: every start failing three times, on one core). Through the gate a
/// few start at a time, each quickly; the readiness limit counts from the gate, not from the
/// queue before it. Restarts inside a running test do not queue.
actor StartGate {
  /// The gate every start in this process goes through: twice the cores, at least 2.
  static let shared = StartGate(limit: max(2, 2 * ProcessInfo.processInfo.activeProcessorCount))

  private var available: Int
  private var waiting: [CheckedContinuation<Void, Never>] = []

  init(limit: Int) { self.available = limit }

  /// Runs `body` holding one of the gate's places.
  static func passing<T: Sendable>(_ body: () async throws -> T) async throws -> T {
    await shared.enter()
    do {
      let result = try await body()
      await shared.leave()
      return result
    } catch {
      await shared.leave()
      throw error
    }
  }

  private func enter() async {
    if self.available > 0 {
      self.available -= 1
      return
    }
    await withCheckedContinuation { self.waiting.append($0) }
  }

  private func leave() {
    if self.waiting.isEmpty {
      self.available += 1
    } else {
      self.waiting.removeFirst().resume()
    }
  }
}
