import Foundation
import GRPCCore
import Logging
import NIOCore
import SwiftProtobuf
import Synchronization

/// Multiplexes every watch of a client on one gRPC Watch stream, and re-creates that stream
/// (on another member if need be) after a failure, resuming each watcher from the revision
/// after the last one it delivered.
final class WatchHub: Sendable {
  struct Watcher {
    var range: KeyRange
    var options: WatchOptions
    var continuation: AsyncThrowingStream<WatchResponse, any Error>.Continuation
    /// The next revision this watcher must deliver; 0 until known ("now").
    var nextRevision: Int64
    /// Events of a fragmented revision, waiting for its last fragment.
    var fragments: [WatchEvent] = []
    /// The ID the server gave this watcher on the current stream; nil until its create is
    /// answered.
    var serverID: Int64?
    /// Whether the server has sent this watcher events under its current ``serverID``.
    var deliveredOnStream = false
    /// The consumer needs nothing up to this revision (see ``WatchHub/advance(_:through:)``):
    /// a re-created watch starts after it.
    var skipThrough: Int64 = 0
  }

  struct State {
    var watchers: [Int64: Watcher] = [:]
    var nextID: Int64 = 1
    var outbound: AsyncStream<Etcdserverpb_WatchRequest>.Continuation?
    /// Watchers waiting to be created on the current stream, in order; only the first one's
    /// create request has been sent. One create at a time, as clientv3 does: etcd's gRPC
    /// proxy answers a create that joins a running watch at once and one that starts a new
    /// watch only once etcd has answered it, so answers to several would come out of order,
    /// and a refused create is answered with watch ID -1.
    var pendingCreates: [Int64] = []
    /// The server's watch IDs on the current stream → this hub's IDs. The server numbers
    /// watches itself: etcd's gRPC proxy ignores the ID a create request asks for.
    var serverIDs: [Int64: Int64] = [:]
    /// Server IDs of watchers cancelled on the current stream: their late responses are
    /// dropped, and the answer to the cancel retires the ID.
    var retired: Set<Int64> = []
    var task: Task<Void, Never>?
    var generation = 0
    var isShutdown = false
    /// Whether the current stream was opened with a token fetched just before it. etcd 3.4
    /// and 3.5 refuse a watch with an expired or stale token as "permission denied"; with an
    /// older token that refusal is retried once with a fresh one.
    var tokenIsFresh = false
    /// Events older than a freshly created watch's start revision, dropped since they were
    /// last counted (see `apply`).
    var staleDropped = 0
    /// Numbers the streams of this hub, so that a late call from one that has been replaced
    /// is told apart.
    var stream = 0
    /// Create requests put on the current stream so far. They are written in that order, so
    /// the writer knows which one it has just written (see ``createWritten(_:in:at:)``).
    var createsSent = 0
    /// The create in flight on the current stream (the first of `pendingCreates`): its number
    /// among `createsSent`, and since when the stream has been silent with it written: when it
    /// was written, restarted by every response the stream brings after that (see
    /// ``responseArrived(in:at:)``). Only it has a deadline (see
    /// ``createDeadline(_:now:timeout:)``): the others wait for it, and a stream still waiting
    /// for a connection has written nothing.
    var createInFlight: (number: Int, since: ContinuousClock.Instant?)?
    /// Creates given up on (their deadline expired, ending the stream) since the last stream
    /// whose creates were all answered: each doubles the next deadline, up to
    /// ``maxCreateTimeoutDoublings`` times (see ``createTimeout(_:expiries:)``). Kept across
    /// streams; reset when a stream has every create answered, or a new set of watchers starts.
    var createExpiries = 0
  }

  let state = Mutex(State())
  let logger: Logger
  /// Whether the client authenticates (a refusal may then be a stale token).
  let hasCredentials: Bool

  init(logger: Logger, hasCredentials: Bool) {
    self.logger = logger
    self.hasCredentials = hasCredentials
  }

  // MARK: Watchers

  func watch(_ range: KeyRange, options: WatchOptions, client: EtcdClient) -> WatchStream {
    let (stream, continuation) = AsyncThrowingStream.makeStream(of: WatchResponse.self)
    let id: Int64 = self.state.withLock { state in
      let id = state.nextID
      state.nextID += 1
      guard !state.isShutdown else {
        continuation.finish(throwing: EtcdError(.clientClosed, "the etcd client has been shut down"))
        return id
      }
      let watcher = Watcher(range: range, options: options, continuation: continuation, nextRevision: options.startRevision)
      state.watchers[id] = watcher
      if state.outbound != nil {
        state.pendingCreates.append(id)
        if state.pendingCreates.count == 1 { Self.sendCreate(watcher, in: &state) }
      } else if state.task == nil {
        state.generation += 1
        state.createExpiries = 0
        let generation = state.generation
        // The stream's task runs on the connections' event loop (as unary calls do): each
        // response is handled on the thread that read it.
        state.task = Task(executorPreference: client.executor) { await self.runStream(client: client, generation: generation) }
      }
      return id
    }
    continuation.onTermination = { [weak self] _ in self?.remove(id) }
    return WatchStream(base: stream, watchID: id)
  }

  /// Forgets a watcher whose consumer went away, and cancels it on the server.
  private func remove(_ id: Int64) {
    self.state.withLock { state in
      guard let watcher = state.watchers.removeValue(forKey: id) else { return }
      if let serverID = watcher.serverID {
        Self.cancel(serverID, in: &state)
      } else if let index = state.pendingCreates.firstIndex(of: id), index > 0 {
        // Not sent yet. The one whose create is in flight is cancelled once it is answered.
        state.pendingCreates.remove(at: index)
      }
      Self.stopIfIdle(&state)
    }
  }

  static func cancel(_ serverID: Int64, in state: inout State) {
    state.serverIDs[serverID] = nil
    state.retired.insert(serverID)
    var cancel = Etcdserverpb_WatchRequest()
    cancel.cancelRequest.watchID = serverID
    state.outbound?.yield(cancel)
  }

  /// Sends the create request of the next watcher waiting, if any (internal for tests).
  static func sendNextCreate(_ state: inout State) {
    while let next = state.pendingCreates.first {
      if let watcher = state.watchers[next] {
        Self.sendCreate(watcher, in: &state)
        return
      }
      state.pendingCreates.removeFirst()
    }
    state.createInFlight = nil
  }

  /// Puts a watcher's create request on the stream: it is now the one in flight.
  private static func sendCreate(_ watcher: Watcher, in state: inout State) {
    state.createsSent += 1
    state.createInFlight = (state.createsSent, nil)
    state.outbound?.yield(Self.createRequest(watcher))
  }

  /// The stream's writer has written create request `number` (counted from 1 on each stream):
  /// if it is still the one in flight, its clock starts at `now` (internal for tests).
  static func createWritten(_ number: Int, in state: inout State, at now: ContinuousClock.Instant) {
    guard let inFlight = state.createInFlight, inFlight.number == number, inFlight.since == nil else { return }
    state.createInFlight = (number, now)
  }

  /// A response (of any kind, for any watcher) arrived on the current stream at `now`: the
  /// clock of the create in flight, if written, starts again. etcd sends a create's answer on
  /// the same stream as every other watcher's events, in order, so a stream busy delivering
  /// (a resumed watcher's catch-up, say) is not one that stopped answering (internal for tests).
  static func responseArrived(in state: inout State, at now: ContinuousClock.Instant) {
    guard let inFlight = state.createInFlight, let since = inFlight.since, since < now else { return }
    state.createInFlight = (inFlight.number, now)
  }

  /// How many times the create deadline doubles after consecutive expiries: at most
  /// 2³ = 8 × ``EtcdConfiguration/requestTimeout``.
  static let maxCreateTimeoutDoublings = 3

  /// The deadline of a create after `expiries` consecutive ones given up on: `timeout`,
  /// doubled for each, up to ``maxCreateTimeoutDoublings`` times (internal for tests).
  static func createTimeout(_ timeout: Duration, expiries: Int) -> Duration {
    timeout * (1 << min(max(expiries, 0), Self.maxCreateTimeoutDoublings))
  }

  /// Whether the stream has been silent for the create deadline (`timeout`, doubled after
  /// consecutive expiries: ``createTimeout(_:expiries:)``) with the create in flight written
  /// and unanswered and, if not, how long to wait before asking again: until its deadline as
  /// things stand, or a quarter of `timeout` while none is written, so that a create is given
  /// up on at most a quarter late (internal for tests).
  static func createDeadline(_ state: State, now: ContinuousClock.Instant, timeout: Duration) -> (expired: Bool, recheck: Duration) {
    guard let since = state.createInFlight?.since else { return (false, timeout / 4) }
    let due = since + Self.createTimeout(timeout, expiries: state.createExpiries)
    return now >= due ? (true, .zero) : (false, due - now)
  }

  /// Checks the create deadline like ``createDeadline(_:now:timeout:)`` and, if it expired,
  /// counts the expiry (the next stream's creates get twice as long) (internal for tests).
  static func checkCreateDeadline(_ state: inout State, now: ContinuousClock.Instant, timeout: Duration) -> (expired: Bool, recheck: Duration) {
    let check = Self.createDeadline(state, now: now, timeout: timeout)
    if check.expired { state.createExpiries += 1 }
    return check
  }

  static func stopIfIdle(_ state: inout State) {
    guard state.watchers.isEmpty else { return }
    state.task?.cancel()
    state.task = nil
    state.outbound?.finish()
    state.outbound = nil
  }

  /// The consumer of watcher `id` knows its range through `revision` by other means (a read):
  /// a stream re-created later resumes it after `revision`, not from the last event it
  /// delivered, which for an idle range may long since be compacted. Events up to `revision`
  /// on the current stream are still delivered.
  func advance(_ id: Int64, through revision: Int64) {
    self.state.withLock { state in
      guard state.watchers[id] != nil else { return }
      state.watchers[id]!.skipThrough = max(state.watchers[id]!.skipThrough, revision)
    }
  }

  /// Asks etcd for a progress notification on every watcher (clientv3's `RequestProgress`).
  func requestProgress() {
    var request = Etcdserverpb_WatchRequest()
    request.progressRequest = Etcdserverpb_WatchProgressRequest()
    _ = self.state.withLock { $0.outbound?.yield(request) }
  }

  func shutdown() {
    let watchers = self.state.withLock { state -> [Watcher] in
      state.isShutdown = true
      let watchers = Array(state.watchers.values)
      state.watchers.removeAll()
      Self.stopIfIdle(&state)
      return watchers
    }
    for watcher in watchers {
      watcher.continuation.finish(throwing: EtcdError(.clientClosed, "the etcd client has been shut down"))
    }
  }

  // MARK: The stream

  private func runStream(client: EtcdClient, generation: Int) async {
    var backoff = Backoff()
    let progressed = Flag()
    let createExpired = Flag()
    var refreshedToken = false
    while !Task.isCancelled {
      let (outbound, continuation) = AsyncStream.makeStream(of: Etcdserverpb_WatchRequest.self)
      let stream = self.state.withLock { state -> Int? in
        guard state.generation == generation, !state.watchers.isEmpty else { return nil }
        state.outbound = continuation
        state.serverIDs = [:]
        state.retired = []
        state.tokenIsFresh = refreshedToken
        for id in Array(state.watchers.keys) {
          state.watchers[id]!.fragments = []  // resent whole
          state.watchers[id]!.serverID = nil
          let skip = state.watchers[id]!.skipThrough
          if state.watchers[id]!.nextRevision != 0, skip >= state.watchers[id]!.nextRevision {
            state.watchers[id]!.nextRevision = skip + 1
          }
        }
        state.pendingCreates = state.watchers.keys.sorted()
        state.stream += 1
        state.createsSent = 0
        state.createInFlight = nil
        Self.sendNextCreate(&state)
        return state.stream
      }
      guard let stream else { return }
      refreshedToken = false
      do {
        let metadata = try await client.streamMetadata([("hasleader", "true")])
        let options = { var options = CallOptions.defaults; options.waitForReady = true; return options }()
        let timeout = client.configuration.requestTimeout
        // Each response, whichever transport brought it.
        let receive: @Sendable (Etcdserverpb_WatchResponse) throws -> Void = { message in
          if !message.events.isEmpty || (message.created && !message.canceled) { progressed.set() }
          try self.handle(message, generation: generation, stream: stream)
        }
        // The stream, and beside it the deadline of the create in flight: whichever ends first
        // ends the other.
        try await withThrowingTaskGroup(of: Void.self) { group in
          group.addTask {
            if let direct = client.direct {
              // The client's own transport: each response is decoded and handled on the event
              // loop as it arrives, so an event reaches its watcher's stream with no hop between.
              let creates = Counter()
              try await direct.bidirectional(path: "/etcdserverpb.Watch/Watch", metadata: metadata, requests: outbound) { request in
                if case .createRequest = request.requestUnion {
                  self.createWritten(creates.increment(), stream: stream)
                }
              } onMessage: { bytes in
                try receive(try Etcdserverpb_WatchResponse(serializedBytes: Array(bytes.readableBytesView)))
              }
              return
            }
            try await client.watchRPC.watch(metadata: metadata, options: options) { writer in
              var creates = 0
              for await request in outbound {
                try await writer.write(request)
                if case .createRequest = request.requestUnion {
                  creates += 1
                  self.createWritten(creates, stream: stream)
                }
              }
            } onResponse: { response in
              for try await message in response.messages { try receive(message) }
            }
          }
          if timeout > .zero {
            group.addTask { try await self.enforceCreateDeadline(stream: stream, timeout: timeout, expired: createExpired) }
          }
          _ = try await group.next()
          group.cancelAll()
        }
        self.logger.debug("etcd watch stream ended by the server; resuming")
      } catch {
        let error = EtcdError.wrap(error)
        if Task.isCancelled { break }
        switch error.code {
        case .clientClosed, .permissionDenied, .authFailed:
          self.failAll(error, generation: generation)
          return
        case .invalidToken:
          await client.tokens.invalidate()
          refreshedToken = true
        default:
          self.logger.warning("etcd watch stream failed; resuming", metadata: ["error": "\(error)"])
        }
      }
      self.state.withLock { state in
        if state.generation == generation { state.outbound = nil }
      }
      continuation.finish()
      // A stream given up on for an unanswered create made no progress, whatever it answered
      // before (a resumed watcher's created answer moves nothing): the backoff keeps growing.
      let expired = createExpired.take()
      if progressed.take(), !expired { backoff.reset() }
      try? await Task.sleep(for: backoff.next())
    }
  }

  private func createWritten(_ number: Int, stream: Int) {
    let now = ContinuousClock.now
    self.state.withLock { state in
      guard state.stream == stream else { return }
      Self.createWritten(number, in: &state, at: now)
    }
  }

  /// Throws (ending stream `stream`, which is then re-created) once the stream has brought
  /// nothing at all for `timeout` (``EtcdConfiguration/requestTimeout``) while a create request
  /// written on it waits for its answer: an inactivity deadline, restarted by every response,
  /// since etcd answers a create on the same stream, in order, as the events of the other
  /// watchers (a resumed watcher's catch-up may come first). Each consecutive expiry doubles
  /// it, up to 8 × `timeout`, so that a single response slower to arrive than `timeout` (a
  /// large catch-up on a slow link, a member busy defragmenting) is let through in the end.
  /// An answer that never comes (etcd's gRPC proxy answers a create that starts a new upstream
  /// watch only once its etcd has, and answers the keepalive itself) would otherwise hold that
  /// watcher, and every one created after it, forever. Counted as a protocol violation, and
  /// `expired` is set. Returns when the stream is replaced; cancelled when it ends.
  private func enforceCreateDeadline(stream: Int, timeout: Duration, expired: Flag) async throws {
    while true {
      let now = ContinuousClock.now
      let check = self.state.withLock { state -> (expired: Bool, recheck: Duration, waited: Duration)? in
        guard state.stream == stream else { return nil }
        let waited = Self.createTimeout(timeout, expiries: state.createExpiries)
        let check = Self.checkCreateDeadline(&state, now: now, timeout: timeout)
        return (check.expired, check.recheck, waited)
      }
      guard let check else { return }
      if check.expired {
        expired.set()
        self.violations.add(1, ordering: .relaxed)
        throw Self.protocolError("nothing for \(check.waited) while a watch create request waited for its answer")
      }
      try await Task.sleep(for: check.recheck)
    }
  }

  private func failAll(_ error: EtcdError, generation: Int) {
    let watchers = self.state.withLock { state -> [Watcher] in
      guard state.generation == generation else { return [] }
      let watchers = Array(state.watchers.values)
      state.watchers.removeAll()
      state.task = nil
      state.outbound = nil
      return watchers
    }
    for watcher in watchers { watcher.continuation.finish(throwing: error) }
  }

  /// How many watch responses made no sense (an unknown watch ID, an answer to no create, an
  /// event older than one already delivered, or older than a new watch's start revision), or
  /// never came (a stream silent for the request timeout, or longer after consecutive
  /// expiries, while a create request waited for its answer): each but the
  /// too-old events of a new watch (dropped) ended the stream, which was re-created and resumed.
  var protocolViolations: Int { self.violations.load(ordering: .relaxed) }
  let violations = Atomic<Int>(0)
}

/// A count kept from a `@Sendable` closure.
final class Counter: Sendable {
  private let value = Atomic<Int>(0)
  /// Adds one and returns the new count.
  func increment() -> Int { self.value.add(1, ordering: .relaxed).newValue }
}

/// A flag set from a `@Sendable` closure and read (and cleared) by its owner.
final class Flag: Sendable {
  private let value = Atomic<Bool>(false)
  func set() { self.value.store(true, ordering: .relaxed) }
  func take() -> Bool { self.value.exchange(false, ordering: .relaxed) }
}
