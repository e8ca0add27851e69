@testable import EtcSync
import Synchronization
import Testing

/// ``HeapTrim``'s quiet period, with its sleep and its trim under the test's control: work
/// noted while the trimmer waits restarts the wait, and the heap is trimmed once per pause.
@Suite("Heap trim", .timeLimit(.minutes(1)))
struct HeapTrimTests {
  /// Hands out each sleep the trimmer starts and counts its trims, as streams the test awaits.
  final class Gate: Sendable {
    let sleeps: AsyncStream<CheckedContinuation<Void, Never>>
    let trims: AsyncStream<Void>
    private let sleepSink: AsyncStream<CheckedContinuation<Void, Never>>.Continuation
    private let trimSink: AsyncStream<Void>.Continuation
    let trimCount = Atomic<Int>(0)
    let sleepCount = Atomic<Int>(0)

    init() {
      (self.sleeps, self.sleepSink) = AsyncStream.makeStream()
      (self.trims, self.trimSink) = AsyncStream.makeStream()
    }

    func trimmer() -> HeapTrim {
      HeapTrim(quiet: .seconds(1), sleep: { _ in
        self.sleepCount.add(1, ordering: .sequentiallyConsistent)
        await withCheckedContinuation { self.sleepSink.yield($0) }
      }, trim: {
        self.trimCount.add(1, ordering: .sequentiallyConsistent)
        self.trimSink.yield()
      })
    }
  }

  @Test("work noted during the quiet period restarts it, with one waiter at a time; one trim per pause")
  func trimsOncePerPause() async throws {
    let gate = Gate()
    let trimmer = gate.trimmer()
    var sleeps = gate.sleeps.makeAsyncIterator()
    var trims = gate.trims.makeAsyncIterator()

    trimmer.noteWork()
    let first = try #require(await sleeps.next())
    for _ in 0..<100 { trimmer.noteWork() }
    first.resume()
    // Work came in during the first wait: the trimmer waits again instead of trimming.
    let second = try #require(await sleeps.next())
    #expect(gate.trimCount.load(ordering: .sequentiallyConsistent) == 0)
    second.resume()
    _ = await trims.next()
    #expect(gate.trimCount.load(ordering: .sequentiallyConsistent) == 1)

    // The next work starts a new wait and, after it, a second trim.
    trimmer.noteWork()
    let third = try #require(await sleeps.next())
    third.resume()
    _ = await trims.next()
    #expect(gate.trimCount.load(ordering: .sequentiallyConsistent) == 2)
    // One waiter at a time: three waits in all (a waiter per call would have started 102).
    #expect(gate.sleepCount.load(ordering: .sequentiallyConsistent) == 3)
  }
}
