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

  private let limit: Int
  private var available: Int
  /// Waiting starts, first come first served: how many places each needs.
  private var waiting: [(places: Int, continuation: CheckedContinuation<Void, Never>)] = []

  init(limit: Int) {
    self.limit = limit
    self.available = limit
  }

  /// Runs `body` holding `places` of the gate's places (a 3-member cluster takes 3).
  static func passing<T: Sendable>(places: Int = 1, _ body: () async throws -> T) async throws -> T {
    let places = await shared.enter(places)
    do {
      let result = try await body()
      await shared.leave(places)
      return result
    } catch {
      await shared.leave(places)
      throw error
    }
  }

  /// Takes `places` (at most the whole gate) once they are free and nobody waits before; the
  /// number taken.
  private func enter(_ places: Int) async -> Int {
    let places = min(max(1, places), self.limit)
    if self.waiting.isEmpty && self.available >= places {
      self.available -= places
      return places
    }
    await withCheckedContinuation { self.waiting.append((places, $0)) }
    return places
  }

  private func leave(_ places: Int) {
    self.available += places
    while let first = self.waiting.first, self.available >= first.places {
      self.waiting.removeFirst()
      self.available -= first.places
      first.continuation.resume()
    }
  }
}
