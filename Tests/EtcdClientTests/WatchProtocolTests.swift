import EtcdTestSupport
import Foundation
import GRPCCore
import Testing

@testable import EtcdClient

/// How `WatchHub` takes responses that make no sense: each is an error, which ends the stream
/// (it is then re-created and resumed, and counted in `watchProtocolViolations`), never a
/// response silently dropped. Pure logic on the hub's state; the live suites (`WatchTests`,
/// `GRPCProxyTests`) check that etcd and its proxy never trigger these.
@Suite("Watch protocol")
struct WatchProtocolTests {
  static func event(_ key: String, revision: Int64) -> Mvccpb_Event {
    var event = Mvccpb_Event()
    event.type = .put
    event.kv.key = Data(key.utf8)
    event.kv.value = Data("v".utf8)
    event.kv.modRevision = revision
    event.kv.createRevision = revision
    event.kv.version = 1
    return event
  }

  static func response(watchID: Int64, revisions: [Int64]) -> Etcdserverpb_WatchResponse {
    var message = Etcdserverpb_WatchResponse()
    message.watchID = watchID
    message.header.revision = revisions.last ?? 0
    message.events = revisions.map { Self.event("/k", revision: $0) }
    return message
  }

  /// A hub state with one watcher, server ID 7, that has delivered every revision before 10.
  static func state() -> (WatchHub.State, AsyncThrowingStream<WatchResponse, any Error>) {
    let (stream, continuation) = AsyncThrowingStream.makeStream(of: WatchResponse.self)
    var state = WatchHub.State()
    state.watchers[1] = WatchHub.Watcher(range: .prefix("/"), options: WatchOptions(startRevision: 10),
                                         continuation: continuation, nextRevision: 10, serverID: 7)
    state.serverIDs[7] = 1
    return (state, stream)
  }

  @Test("an event older than one already delivered (a revision going backwards) is an error, not dropped")
  func revisionBackwards() async throws {
    var (state, stream) = Self.state()
    #expect(try WatchHub.apply(Self.response(watchID: 7, revisions: [10, 11]), to: &state, hasCredentials: false) == nil)
    #expect(state.watchers[1]?.nextRevision == 12)
    #expect(throws: EtcdError.self) {
      _ = try WatchHub.apply(Self.response(watchID: 7, revisions: [11]), to: &state, hasCredentials: false)
    }
    #expect(throws: EtcdError.self) {
      _ = try WatchHub.apply(Self.response(watchID: 7, revisions: [9, 12]), to: &state, hasCredentials: false)
    }
    // Nothing of the refused responses reached the watcher, and it still resumes from 12.
    #expect(state.watchers[1]?.nextRevision == 12)
    state.watchers[1]?.continuation.finish()
    var delivered: [Int64] = []
    for try await response in stream { delivered += response.events.map(\.revision) }
    #expect(delivered == [10, 11])
  }

  @Test("events older than a freshly created watch's start (etcd-io/etcd#20221) are dropped and counted, not a restart")
  func staleOnFreshWatch() async throws {
    var (state, stream) = Self.state()
    // Re-created on a new stream from revision 10: nothing delivered under this server ID yet.
    state.watchers[1]?.deliveredOnStream = false
    #expect(try WatchHub.apply(Self.response(watchID: 7, revisions: [8, 9, 10]), to: &state, hasCredentials: false) == nil)
    #expect(state.staleDropped == 1)
    #expect(state.watchers[1]?.nextRevision == 11)
    // After that, a revision going backwards is an error again.
    #expect(throws: EtcdError.self) {
      _ = try WatchHub.apply(Self.response(watchID: 7, revisions: [9]), to: &state, hasCredentials: false)
    }
    state.watchers[1]?.continuation.finish()
    var delivered: [Int64] = []
    for try await response in stream { delivered += response.events.map(\.revision) }
    #expect(delivered == [10])
  }

  @Test("a response for a watch ID the stream never created is an error")
  func unknownWatchID() {
    var (state, _) = Self.state()
    #expect(throws: EtcdError.self) {
      _ = try WatchHub.apply(Self.response(watchID: 99, revisions: [12]), to: &state, hasCredentials: false)
    }
  }

  static func created(watchID: Int64, revision: Int64) -> Etcdserverpb_WatchResponse {
    var message = Etcdserverpb_WatchResponse()
    message.watchID = watchID
    message.created = true
    message.header.revision = revision
    return message
  }

  @Test("only the create in flight has a deadline, counted from when it was written; creates queued behind it have none")
  func createDeadline() throws {
    var state = WatchHub.State()
    for id: Int64 in 1...3 {
      let (_, continuation) = AsyncThrowingStream.makeStream(of: WatchResponse.self)
      state.watchers[id] = WatchHub.Watcher(range: .prefix("/\(id)/"), options: WatchOptions(),
                                            continuation: continuation, nextRevision: 0)
    }
    state.pendingCreates = [1, 2, 3]
    WatchHub.sendNextCreate(&state)
    #expect(state.createInFlight?.number == 1)
    let timeout = Duration.seconds(30)
    let t0 = ContinuousClock.now
    // Not written yet (a stream waiting for a connection): no deadline however long it waits.
    #expect(!WatchHub.createDeadline(state, now: t0 + .seconds(3600), timeout: timeout).expired)
    #expect(WatchHub.createDeadline(state, now: t0, timeout: timeout).recheck == .milliseconds(7500))
    WatchHub.createWritten(1, in: &state, at: t0)
    let early = WatchHub.createDeadline(state, now: t0 + .seconds(29), timeout: timeout)
    #expect(!early.expired && early.recheck == .seconds(1))
    #expect(WatchHub.createDeadline(state, now: t0 + .seconds(30), timeout: timeout).expired)
    // Answered: the next create goes out; its clock starts only when it is written, and a late
    // report that the previous one was written does not start it.
    #expect(try WatchHub.apply(Self.created(watchID: 100, revision: 5), to: &state, hasCredentials: false) == nil)
    #expect(state.createInFlight?.number == 2 && state.createInFlight?.since == nil)
    WatchHub.createWritten(1, in: &state, at: t0)
    #expect(state.createInFlight?.since == nil)
    #expect(!WatchHub.createDeadline(state, now: t0 + .seconds(3600), timeout: timeout).expired)
    WatchHub.createWritten(2, in: &state, at: t0 + .seconds(40))
    #expect(!WatchHub.createDeadline(state, now: t0 + .seconds(69), timeout: timeout).expired)
    #expect(WatchHub.createDeadline(state, now: t0 + .seconds(70), timeout: timeout).expired)
    // The last two answered: nothing in flight, nothing can expire.
    #expect(try WatchHub.apply(Self.created(watchID: 101, revision: 5), to: &state, hasCredentials: false) == nil)
    WatchHub.createWritten(3, in: &state, at: t0 + .seconds(50))
    #expect(try WatchHub.apply(Self.created(watchID: 102, revision: 5), to: &state, hasCredentials: false) == nil)
    #expect(state.createInFlight == nil && state.pendingCreates.isEmpty)
    #expect(!WatchHub.createDeadline(state, now: t0 + .seconds(3600), timeout: timeout).expired)
    #expect(state.watchers.values.map(\.serverID).sorted { ($0 ?? -1) < ($1 ?? -1) } == [100, 101, 102])
  }

  /// A hub state with watchers 1...`count`, none created, as a freshly (re-)created stream
  /// has them: the first one's create is in flight (not yet written).
  static func newStream(_ count: Int64, in state: inout WatchHub.State) {
    for id: Int64 in 1...count where state.watchers[id] == nil {
      let (_, continuation) = AsyncThrowingStream.makeStream(of: WatchResponse.self)
      state.watchers[id] = WatchHub.Watcher(range: .prefix("/\(id)/"), options: WatchOptions(),
                                            continuation: continuation, nextRevision: 0)
    }
    for id in state.watchers.keys { state.watchers[id]!.serverID = nil }
    state.serverIDs = [:]
    state.pendingCreates = state.watchers.keys.sorted()
    state.stream += 1
    state.createsSent = 0
    state.createInFlight = nil
    WatchHub.sendNextCreate(&state)
  }

  @Test("the create deadline is one of inactivity: any response on the stream, for any watcher, starts its clock again")
  func anyResponseRestartsCreateClock() throws {
    var state = WatchHub.State()
    Self.newStream(2, in: &state)
    let timeout = Duration.seconds(30)
    let t0 = ContinuousClock.now
    // Responses before the create is written start nothing.
    WatchHub.responseArrived(in: &state, at: t0)
    #expect(state.createInFlight?.since == nil)
    WatchHub.createWritten(1, in: &state, at: t0)
    // Watcher 1 is answered at once; watcher 2's create goes out and its answer queues behind
    // watcher 1's catch-up, which arrives response after response.
    #expect(try WatchHub.apply(Self.created(watchID: 0, revision: 0), to: &state, hasCredentials: false) == nil)
    WatchHub.createWritten(2, in: &state, at: t0 + .seconds(1))
    var now = t0 + .seconds(1)
    for revision: Int64 in 1...4 {
      now += .seconds(25)  // each one within the deadline of the one before, all four well past it
      #expect(!WatchHub.createDeadline(state, now: now, timeout: timeout).expired)
      WatchHub.responseArrived(in: &state, at: now)
      #expect(try WatchHub.apply(Self.response(watchID: 0, revisions: [revision]), to: &state, hasCredentials: false) == nil)
    }
    // A progress notification for the whole stream counts too.
    now += .seconds(25)
    WatchHub.responseArrived(in: &state, at: now)
    var progress = Etcdserverpb_WatchResponse()
    progress.watchID = -1
    progress.header.revision = 4
    #expect(try WatchHub.apply(progress, to: &state, hasCredentials: false) == nil)
    // A late report of an earlier time moves nothing back.
    WatchHub.responseArrived(in: &state, at: t0)
    #expect(state.createInFlight?.since == now)
    let check = WatchHub.createDeadline(state, now: now + .seconds(29), timeout: timeout)
    #expect(!check.expired && check.recheck == .seconds(1))
    // Silent for the whole deadline: given up on.
    #expect(WatchHub.createDeadline(state, now: now + .seconds(30), timeout: timeout).expired)
    #expect(state.watchers[1]?.nextRevision == 5)
  }

  @Test("consecutive expiries double the create deadline, up to 8 × the request timeout")
  func consecutiveExpiriesDoubleDeadline() {
    let timeout = Duration.seconds(30)
    let seconds: [Int] = [30, 60, 120, 240, 240, 240, 240]
    #expect((0...6).map { WatchHub.createTimeout(timeout, expiries: $0) } == seconds.map { Duration.seconds($0) })
    var state = WatchHub.State()
    var now = ContinuousClock.now
    for expected: Int64 in [30, 60, 120, 240, 240] {
      Self.newStream(1, in: &state)
      WatchHub.createWritten(1, in: &state, at: now)
      let before = WatchHub.checkCreateDeadline(&state, now: now + .seconds(expected - 1), timeout: timeout)
      #expect(!before.expired && before.recheck == .seconds(1), "deadline \(expected) s")
      let expiries = state.createExpiries
      #expect(WatchHub.checkCreateDeadline(&state, now: now + .seconds(expected), timeout: timeout).expired, "deadline \(expected) s")
      #expect(state.createExpiries == expiries + 1)
      now += .seconds(expected + 1)
    }
  }

  @Test("a stream with every create answered resets the create deadline; a first create answered while the next one waits does not")
  func answeredCreatesResetDeadline() throws {
    let timeout = Duration.seconds(30)
    var state = WatchHub.State()
    let t0 = ContinuousClock.now
    state.createExpiries = 2  // two streams given up on with watcher 2's create unanswered
    Self.newStream(2, in: &state)
    WatchHub.createWritten(1, in: &state, at: t0)
    #expect(try WatchHub.apply(Self.created(watchID: 0, revision: 5), to: &state, hasCredentials: false) == nil)
    // Watcher 1's answer came at once, as it does after a reconnect: watcher 2's create still
    // has the longer deadline, which lets watcher 1's catch-up through.
    #expect(state.createExpiries == 2)
    WatchHub.createWritten(2, in: &state, at: t0)
    #expect(!WatchHub.createDeadline(state, now: t0 + .seconds(119), timeout: timeout).expired)
    #expect(WatchHub.createDeadline(state, now: t0 + .seconds(120), timeout: timeout).expired)
    #expect(try WatchHub.apply(Self.created(watchID: 1, revision: 5), to: &state, hasCredentials: false) == nil)
    #expect(state.createExpiries == 0 && state.createInFlight == nil)
    // A watcher added later gets the request timeout again.
    let (_, continuation) = AsyncThrowingStream.makeStream(of: WatchResponse.self)
    state.watchers[3] = WatchHub.Watcher(range: .prefix("/3/"), options: WatchOptions(), continuation: continuation, nextRevision: 0)
    state.pendingCreates = [3]
    WatchHub.sendNextCreate(&state)
    WatchHub.createWritten(state.createsSent, in: &state, at: t0 + .seconds(200))
    #expect(WatchHub.createDeadline(state, now: t0 + .seconds(230), timeout: timeout).expired)
    // A refused create is an answer too.
    state.createExpiries = 3
    var refused = Self.created(watchID: -1, revision: 5)
    refused.canceled = true
    refused.cancelReason = "etcdserver: permission denied"
    #expect(try WatchHub.apply(refused, to: &state, hasCredentials: false) != nil)
    #expect(state.createExpiries == 0)
  }

  @Test("a progress notification below the next revision is taken (a member behind), and moves nothing back")
  func progressBehind() throws {
    var (state, _) = Self.state()
    var progress = Etcdserverpb_WatchResponse()
    progress.watchID = 7
    progress.header.revision = 5
    #expect(try WatchHub.apply(progress, to: &state, hasCredentials: false) == nil)
    #expect(state.watchers[1]?.nextRevision == 10)
  }
}

/// Waits until `condition` holds; the limit only keeps a failing test from hanging.
private func waitUntil(upTo limit: Duration, _ condition: () -> Bool) async -> Bool {
  let deadline = ContinuousClock.now + limit
  while !condition() {
    guard ContinuousClock.now < deadline else { return condition() }
    try? await Task.sleep(for: .milliseconds(20))
  }
  return true
}

/// A watch create that is never answered while the stream stays open. etcd's gRPC proxy
/// answers a create that starts a new upstream watch only once etcd has answered that one, and
/// it answers the client's keepalive itself: with the etcd behind it stopped (SIGSTOP), the
/// create waits, and so does every create queued behind it, with nothing else to end the
/// stream.
@Suite("Unanswered watch creates", .timeLimit(.minutes(3)))
struct UnansweredCreateTests {
  @Test("a create the gRPC proxy never answers ends the stream, counted; it is re-created and every watch resumes, missing nothing")
  func createUnansweredThroughProxy() async throws {
    try await EtcdServer.with { server in
      let proxy = try await EtcdGRPCProxy.start(inFrontOf: [server])
      defer { proxy.stop() }
      var configuration = proxy.configuration()
      configuration.requestTimeout = .seconds(2)  // also how long a create may go unanswered
      try await withEtcdClient(server.configuration()) { direct in
        try await withEtcdClient(configuration) { etcd in
          let a = await liveWatch(etcd, .prefix("/a/"))
          let start = try await direct.put("/a/1", "a1").header.revision
          #expect(await a.wait { $0.events.count == 1 })
          let b0 = try await direct.put("/b/0", "b0").header.revision
          try await direct.put("/a/2", "a2")  // delivered to `a` before the stop or after the resume
          server.pause()
          var options = WatchOptions(startRevision: b0)
          options.createdNotify = true
          let b = EventCollector(etcd.watch(.prefix("/b/"), options: options))
          // The limit is well past the client's keepalive (10 s + 5 s), which the proxy answers
          // itself: only the create's deadline ends this stream. Twice: the re-created stream's
          // first create (`a`, resumed) starts a new upstream watch too, and waits in turn.
          let counted = await waitUntil(upTo: .seconds(30)) { etcd.watchProtocolViolations >= 2 }
          let createdWhileStopped = b.responses.contains(where: \.created)
          server.resume()
          #expect(counted, "the unanswered create was never given up on")
          #expect(!createdWhileStopped, "the proxy answered a create while its etcd was stopped")
          try await direct.put("/a/3", "a3")
          try await direct.put("/b/1", "b1")
          #expect(await a.wait { $0.events.count >= 3 })
          #expect(await b.wait { $0.events.count >= 2 })
          // The oracle: etcd's own history of each range, read on a stream that never broke.
          let oracleA = EventCollector(direct.watch(.prefix("/a/"), options: WatchOptions(startRevision: start)))
          let oracleB = EventCollector(direct.watch(.prefix("/b/"), options: WatchOptions(startRevision: b0)))
          #expect(await oracleA.wait { $0.events.count >= 3 })
          #expect(await oracleB.wait { $0.events.count >= 2 })
          #expect(a.events == oracleA.events, "\(a.events.map(\.kv.keyString)) vs \(oracleA.events.map(\.kv.keyString))")
          #expect(b.events == oracleB.events, "\(b.events.map(\.kv.keyString)) vs \(oracleB.events.map(\.kv.keyString))")
          #expect(a.error == nil && b.error == nil)
          for watch in [a, b, oracleA, oracleB] { watch.stop() }
        }
      }
    }
  }
}

/// etcd's refusals forwarded by its gRPC proxy arrive with gRPC's code `unknown`: the client
/// still tells them apart by etcd's message.
@Suite("Errors through the gRPC proxy")
struct ForwardedErrorTests {
  @Test("etcd's messages under gRPC's unknown code map to their meaning", arguments: [
    ("etcdserver: user name is empty", EtcdError.Code.permissionDenied),
    ("etcdserver: permission denied", .permissionDenied),
    ("etcdserver: authentication failed, invalid user ID or password", .authFailed),
    ("etcdserver: invalid auth token", .invalidToken),
    ("mvcc: required revision has been compacted", .compacted),
    ("etcdserver: requested lease not found", .leaseNotFound),
    ("etcdserver: mvcc: required revision is a future revision", .futureRevision),
    ("etcdserver: no leader", .unavailable),
    ("something else entirely", .internalError),
  ])
  func unknownCode(message: String, code: EtcdError.Code) {
    let error = EtcdError(rpc: RPCError(code: .unknown, message: message))
    #expect(error.code == code, "\(message)")
  }
}
