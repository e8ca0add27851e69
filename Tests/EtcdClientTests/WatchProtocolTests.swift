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
