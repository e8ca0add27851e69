import Foundation
import GRPCCore
import Logging
import Synchronization

// The hub's handling of what etcd answers on the Watch stream: creates matched to the watchers
// that asked, events and progress delivered in order, cancels, and responses that make no sense.
extension WatchHub {
  /// Applies a response; throws (ending the stream, which is then re-created) when a create
  /// was refused because the auth token expired, or when the response makes no sense.
  func handle(_ message: Etcdserverpb_WatchResponse, generation: Int, stream: Int) throws(EtcdError) {
    // Finishing a stream runs its onTermination, which takes the lock: do it afterwards.
    let hasCredentials = self.hasCredentials
    let now = ContinuousClock.now
    typealias Finished = (AsyncThrowingStream<WatchResponse, any Error>.Continuation, EtcdError)
    let finished: Finished?
    let stale: Int
    do {
      (finished, stale) = try self.state.withLock { state throws(EtcdError) -> (Finished?, Int) in
        // A late message of a stream that has been replaced must not touch the new one.
        guard state.generation == generation else { return (nil, 0) }
        if state.stream == stream { Self.responseArrived(in: &state, at: now) }
        let finished = try Self.apply(message, to: &state, hasCredentials: hasCredentials)
        defer { state.staleDropped = 0 }
        return (finished, state.staleDropped)
      }
    } catch {
      self.violations.add(1, ordering: .relaxed)
      throw error
    }
    if stale > 0 {
      self.violations.add(stale, ordering: .relaxed)
      self.logger.warning("etcd re-sent watch events older than the revision the watch was created from; dropped")
    }
    guard let (continuation, error) = finished else { return }
    if error.code == .invalidToken { throw error }
    continuation.finish(throwing: error)
  }

  static func protocolError(_ what: String) -> EtcdError {
    EtcdError(.internalError, "etcd's watch stream sent \(what); the stream is re-created")
  }

  /// Applies one response to the watchers; returns a watcher to finish, if it was cancelled.
  /// Throws for a response that makes no sense (internal for tests).
  static func apply(
    _ message: Etcdserverpb_WatchResponse, to state: inout State, hasCredentials: Bool
  ) throws(EtcdError) -> (AsyncThrowingStream<WatchResponse, any Error>.Continuation, EtcdError)? {
    let header = ResponseHeader(message.header)
    var watchID = message.watchID
    if message.created {
      guard !state.pendingCreates.isEmpty else {
        throw Self.protocolError("a created answer to no create request (watch ID \(message.watchID))")
      }
      let pending = state.pendingCreates.removeFirst()
      state.createInFlight = nil
      Self.sendNextCreate(&state)
      // Every create of the stream answered: it got past wherever earlier streams stalled, and
      // the create deadline is back to the request timeout. (Not on the first answer: after a
      // reconnect the first watcher's create is answered at once, and it is the next one that
      // waits behind that watcher's catch-up.)
      if state.createInFlight == nil { state.createExpiries = 0 }
      guard state.watchers[pending] != nil else {
        // Removed while its create was in flight: cancel what the server created.
        if !message.canceled, message.watchID != -1 { Self.cancel(message.watchID, in: &state) }
        return nil
      }
      if !message.canceled {
        guard message.watchID != -1, state.serverIDs[message.watchID] == nil else {
          throw Self.protocolError("a created answer with watch ID \(message.watchID), already in use or invalid")
        }
        state.serverIDs[message.watchID] = pending
        state.watchers[pending]!.serverID = message.watchID
        state.watchers[pending]!.deliveredOnStream = false
      }
      watchID = pending
    } else if watchID != -1 {
      guard let local = state.serverIDs[watchID] else {
        // A cancelled watcher's late events, or the answer to its cancel.
        if state.retired.contains(watchID) {
          // Only the plain answer to the cancel retires the ID: a compaction also says
          // "canceled", and the cancel's answer may still follow it.
          if message.canceled, message.compactRevision == 0 { state.retired.remove(watchID) }
          return nil
        }
        throw Self.protocolError("a response for watch ID \(watchID), which it never created")
      }
      watchID = local
    }
    if watchID == -1 {
      // A progress notification for the whole stream (answer to requestProgress). Before
      // etcd 3.4.24/3.5.8 it can overtake events, so it is delivered but never moves a
      // watcher's resume revision.
      // Only to watchers created on this stream: one still waiting for its create (after a
      // restart, say) has not been sent the events before this revision.
      for (id, watcher) in state.watchers where watcher.nextRevision != 0 && watcher.serverID != nil {
        watcher.continuation.yield(WatchResponse(header: header, watchID: id, events: []))
      }
      return nil
    }
    guard var watcher = state.watchers[watchID] else { return nil }
    let id = watchID
    defer { if state.watchers[id] != nil { state.watchers[id] = watcher } }

    if message.created {
      if watcher.nextRevision == 0 { watcher.nextRevision = header.revision + 1 }
      if watcher.options.createdNotify && !message.canceled {
        watcher.continuation.yield(WatchResponse(header: header, watchID: id, events: [], created: true))
      }
    }
    if message.canceled || message.compactRevision > 0 {
      if let serverID = watcher.serverID {
        if message.compactRevision > 0 {
          // etcd keeps a compacted watch on the stream, and etcd's gRPC proxy keeps its
          // shared upstream watch, now dead, to which a later watch of the same range could
          // be attached and never hear of anything: cancel it, as clientv3 does.
          Self.cancel(serverID, in: &state)
        } else {
          state.serverIDs[serverID] = nil
        }
      }
      watcher.serverID = nil
      var error = Self.cancelError(message)
      // A stale token is refused as "permission denied" by etcd 3.4/3.5: retry once with a
      // fresh token before believing it.
      if error.code == .permissionDenied, hasCredentials, !state.tokenIsFresh { error.code = .invalidToken }
      // Refused for an expired token: keep the watcher; the stream is re-created.
      if error.code == .invalidToken { return (watcher.continuation, error) }
      state.watchers[id] = nil
      Self.stopIfIdle(&state)
      return (watcher.continuation, error)
    }
    if message.created { return nil }
    var events = message.events.map(WatchEvent.init)
    if watcher.options.fragment {
      watcher.fragments += events
      if message.fragment { return nil }
      events = watcher.fragments
      watcher.fragments = []
    }
    if events.isEmpty {
      Self.deliverProgress(&watcher, id: id, header: header)
      return nil
    }
    // Events come in revision order from the watcher's next revision on (a resumed watch is
    // created from it). An older one after events of the same server watch means a revision
    // that went backwards: an error that re-creates the stream. An older one first thing on a
    // freshly created watch is a known etcd fault (a member that restores a snapshot re-sends
    // history below the start revision, etcd-io/etcd#20221): dropped and counted, since
    // re-creating the stream would only meet it again.
    let next = watcher.nextRevision
    if let stale = events.first(where: { $0.kv.modRevision < next }) {
      guard !watcher.deliveredOnStream else {
        throw Self.protocolError("an event of revision \(stale.kv.modRevision) for watch ID \(message.watchID), which had delivered every revision before \(next)")
      }
      state.staleDropped += 1
      events.removeAll { $0.kv.modRevision < next }
    }
    guard let last = events.last else { return nil }
    watcher.deliveredOnStream = true
    watcher.nextRevision = last.kv.modRevision + 1
    watcher.continuation.yield(WatchResponse(header: header, watchID: id, events: events))
    return nil
  }

  private static func deliverProgress(_ watcher: inout Watcher, id: Int64, header: ResponseHeader) {
    guard watcher.nextRevision != 0 else { return }
    watcher.nextRevision = max(watcher.nextRevision, header.revision + 1)
    watcher.continuation.yield(WatchResponse(header: header, watchID: id, events: []))
  }

  private static func cancelError(_ message: Etcdserverpb_WatchResponse) -> EtcdError {
    if message.compactRevision > 0 {
      return .compacted(revision: message.compactRevision)
    }
    let reason = message.cancelReason
    if reason.contains("permission denied") || reason.contains("user name is empty") {
      return EtcdError(.permissionDenied, reason)
    }
    if reason.contains("invalid auth token") || reason.contains("revision of auth store is old")
      || reason.contains("revision in header is old") {
      return EtcdError(.invalidToken, reason)
    }
    return EtcdError(.watchCanceled, reason.isEmpty ? "etcd cancelled the watch" : reason)
  }

  /// The server numbers the watch (ID 0 in the request: etcd's own choice, as clientv3 does).
  static func createRequest(_ watcher: Watcher) -> Etcdserverpb_WatchRequest {
    var create = Etcdserverpb_WatchCreateRequest()
    create.key = Data(watcher.range.key)
    create.rangeEnd = Data(watcher.range.rangeEnd)
    create.startRevision = watcher.nextRevision
    create.progressNotify = watcher.options.progressNotify
    create.prevKv = watcher.options.prevKV
    create.fragment = watcher.options.fragment
    if watcher.options.filterPuts { create.filters.append(.noput) }
    if watcher.options.filterDeletes { create.filters.append(.nodelete) }
    var request = Etcdserverpb_WatchRequest()
    request.createRequest = create
    return request
  }
}
