@testable import EtcdClient
import EtcdTestSupport
import Foundation
import NIOCore
import Testing

/// The unary call path: DirectTransport (the default), and grpc-swift-2's path as it was
/// before it (`levers: false`) and with that path's levers (`levers: true`: deadlines kept by
/// the client's sweeper instead of grpc's per-call timer; calls on the connections' event
/// loop, large Range responses decoded after the call, off that loop).
@Suite("Unary call path against a real etcd") struct CallPathTests {
  static func configure(_ configuration: inout EtcdConfiguration, levers: Bool?) {
    guard let levers else { return }  // DirectTransport
    configuration.directUnaryCalls = false
    configuration.perCallDeadlineTimer = !levers
    configuration.runsOnConnectionLoop = levers
  }

  /// A put to a member that stopped answering fails with `deadlineExceeded` once
  /// `requestTimeout` has passed, and the same client works once the member is back.
  @Test(.timeLimit(.minutes(2)), arguments: [nil, false, true]) func requestTimeoutEndsAStalledCall(levers: Bool?) async throws {
    try await EtcdServer.with { server in
      var configuration = server.configuration()
      Self.configure(&configuration, levers: levers)
      // 5 s, not 1: in a loaded CI run the first put (which also connects) or the put right
      // after the member resumed took longer than 1 s and failed the test.
      configuration.requestTimeout = .seconds(5)
      try await withEtcdClient(configuration) { etcd in
        let first = try await etcd.put("/deadline/a", "1")
        // pause() waits until every thread is stopped: a put sent right after SIGSTOP was once
        // answered by a member whose threads had not stopped yet (state R).
        #expect(server.pause(), "etcd's threads did not all stop within 10 s of SIGSTOP")
        let stateBefore = Self.processState(server.pid)
        var error: EtcdError?
        do {
          let answer = try await etcd.put("/deadline/b", "2")
          // Say what answered, for the next look.
          Issue.record(
            "a put to a paused etcd was answered: etcd pid \(server.pid.map(String.init) ?? "none"), state \(stateBefore) when paused and \(Self.processState(server.pid)) now; member \(first.header.memberID) before, \(answer.header.memberID) now; revision \(answer.header.revision)")
        } catch let failure as EtcdError {
          error = failure
        }
        server.resume()
        #expect(error?.code == .deadlineExceeded)
        try await etcd.put("/deadline/c", "3")
        #expect(try await etcd.get("/deadline/c").kvs.first?.valueString == "3")
      }
    }
  }

  /// A task that prefers the client's `eventLoopExecutor` makes its calls, reads a watch and
  /// resumes on the loop that carries the client's connections (not merely some NIO loop), and
  /// gets the same answers as from the pool; a Range over the in-call decoding limit (decoded on
  /// the global pool, not on the loop) still answers whole, and the task is back on the loop.
  @Test(.timeLimit(.minutes(2))) func callsFromTheClientsEventLoopExecutor() async throws {
    try await EtcdServer.with { server in
      try await withEtcdClient(server.configuration()) { etcd in
        let revision = try await etcd.put("/loop/warm", "0").header.revision
        let watch = etcd.watch(.prefix("/loop/k/"), options: WatchOptions(startRevision: revision + 1))
        let loop = try #require(etcd.direct?.eventLoop)
        let big = String(repeating: "v", count: 1000)
        let (onLoop, seen, bigCount) = try await withTaskExecutorPreference(etcd.eventLoopExecutor) {
          var onLoop = true
          for i in 0..<20 {
            try await etcd.put("/loop/k/\(i)", "\(i)")
            onLoop = onLoop && loop.inEventLoop
          }
          var seen: [String] = []
          for try await response in watch {
            seen += response.events.map(\.kv.valueString)
            onLoop = onLoop && loop.inEventLoop
            if seen.count >= 20 { break }
          }
          // Over 64 KiB: decoded on the global pool, then back on the loop.
          for i in 0..<100 { try await etcd.put("/loop/big/\(i)", big) }
          let bigCount = try await etcd.get(.prefix("/loop/big/")).kvs.count
          onLoop = onLoop && loop.inEventLoop
          return (onLoop, seen, bigCount)
        }
        #expect(onLoop, "the task left the connections' event loop")
        #expect(seen == (0..<20).map(String.init))
        #expect(bigCount == 100)
        // The same keys read from the pool.
        let kvs = try await etcd.get(.prefix("/loop/k/")).kvs
        #expect(Set(kvs.map(\.valueString)) == Set((0..<20).map(String.init)))
        #expect(!loop.inEventLoop, "back on the pool")
      }
    }
  }

  /// The `State:` line of /proc/PID/status (diagnostics).
  static func processState(_ pid: Int32?) -> String {
    guard let pid, let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return "unknown" }
    return text.split(separator: "\n").first { $0.hasPrefix("State:") }.map(String.init) ?? "unknown"
  }

  /// A call with a short timeout of its own (`status(timeout:)`) ends at that deadline even
  /// while a call with a far later deadline is waiting: the sweeper wakes for the earlier one.
  /// (With a one-hour requestTimeout, a sweeper that slept for the first deadline would hang
  /// this test until its time limit.)
  @Test(.timeLimit(.minutes(2)), arguments: [nil, false, true]) func shortTimeoutFiresWhileALongCallWaits(levers: Bool?) async throws {
    try await EtcdServer.with { server in
      var configuration = server.configuration()
      Self.configure(&configuration, levers: levers)
      configuration.requestTimeout = .seconds(3600)
      try await withEtcdClient(configuration) { etcd in
        try await etcd.put("/deadline/warm", "1")
        server.pause()
        let long = Task { try await etcd.put("/deadline/long", "2") }
        try await Task.sleep(for: .milliseconds(100))  // let it register first
        let error = await #expect(throws: EtcdError.self) { try await etcd.status(timeout: .milliseconds(500)) }
        #expect(error?.code == .deadlineExceeded)
        server.resume()
        // The long call was not cancelled by the sweep: it completes once etcd answers.
        _ = try await long.value
        #expect(try await etcd.get("/deadline/long").kvs.first?.valueString == "2")
      }
    }
  }

  /// Cancelling the task that makes a call ends the call with an error, and the client keeps
  /// working. DirectTransport and grpc-swift-2's path without its levers: with those levers on
  /// (off, and only in ClientBench's variants), a full run on 2026-12-05 saw the cancelled put
  /// complete once etcd resumed, 1 time in about 10 runs. Through DirectTransport the error is
  /// `cancelled` and the stream is reset; whether etcd, once resumed, reads the reset before it
  /// starts the put is etcd's race, so the test does not ask.
  @Test(.timeLimit(.minutes(2)), arguments: [nil, false]) func cancellingTheCallerCancelsTheCall(levers: Bool?) async throws {
    try await EtcdServer.with { server in
      var configuration = server.configuration()
      Self.configure(&configuration, levers: levers)
      try await withEtcdClient(configuration) { etcd in
        try await etcd.put("/deadline/warm", "1")
        server.pause()
        let call = Task { try await etcd.put("/deadline/x", "1") }
        try await Task.sleep(for: .milliseconds(100))
        call.cancel()
        let result = await call.result
        server.resume()
        let error = #expect(throws: EtcdError.self) { try result.get() }
        try await etcd.put("/deadline/after", "1")
        if levers == nil { #expect(error?.code == .cancelled) }
      }
    }
  }

  /// A Range response larger than what is decoded on the event loop (64 KiB) comes back
  /// whole and in key order, from a single Range and from paginated reads.
  @Test(arguments: [nil, false, true]) func largeRangeIsDecodedWhole(levers: Bool?) async throws {
    try await EtcdServer.with { server in
      var configuration = server.configuration()
      Self.configure(&configuration, levers: levers)
      try await withEtcdClient(configuration) { etcd in try await Self.largeRange(etcd) }
    }
  }

  static func largeRange(_ etcd: EtcdClient) async throws {
    do {
      let value = String(repeating: "v", count: 200)
      for base in stride(from: 0, to: 2000, by: 100) {
        _ = try await etcd.txn(if: [], then: (base..<base + 100).map { Op.put(String(format: "/large/%05d", $0), value + "\($0)") })
      }
      let all = try await etcd.get(.prefix("/large/"))
      #expect(all.kvs.count == 2000)
      #expect(all.kvs.map(\.keyString) == (0..<2000).map { String(format: "/large/%05d", $0) })
      #expect(all.kvs.map(\.valueString) == (0..<2000).map { value + "\($0)" })
      let paged = try await etcd.getAll(.prefix("/large/"), pageSize: 700)
      #expect(paged.kvs == all.kvs)
    }
  }
}
