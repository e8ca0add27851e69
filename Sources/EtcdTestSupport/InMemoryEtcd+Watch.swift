import EtcdClient
import Synchronization

// Watches of `InMemoryEtcd`: whole revisions in order from a start revision, as `EtcdClient`
// delivers them, with breaks and compaction the test controls.
extension InMemoryEtcd {
  struct Watcher {
    var range: KeyRange
    var options: WatchOptions
    /// The first revision not yet delivered.
    var next: Int64
    /// False while its stream is broken (``disconnectWatches()``): nothing is delivered.
    var connected = true
    /// Where a reconnect resumes at the latest (``advanceWatch(_:through:)``).
    var resumeAfter: Int64 = 0
    /// The revision of the last event (or progress notification) delivered: as
    /// `EtcdClient`, a reconnect resumes after it, not after revisions that touched nothing
    /// of the range.
    var lastDelivered: Int64 = 0
    let continuation: Deliveries.Continuation
  }

  /// Watches `range` from `options.startRevision` (0: from the next revision). Each response
  /// holds one revision's events in the range (filtered and with `prevKV` as asked). A start
  /// revision below the compaction ends the stream with `compacted` carrying the compact
  /// revision, as `EtcdClient`'s watch does.
  public func watch(_ range: KeyRange, options: WatchOptions = WatchOptions()) -> WatchStream {
    let (stream, continuation) = AsyncThrowingStream.makeStream(of: WatchResponse.self, throwing: (any Error).self)
    let (id, registered, deliveries) = self.state.withLock { state in
      let id = state.nextWatchID
      state.nextWatchID += 1
      var deliveries = Deliveries()
      do throws(EtcdError) {
        try state.admit(.watch(range, options))
      } catch {
        deliveries.endings.append((continuation, error))
        return (id, false, deliveries)
      }
      let start = options.startRevision == 0 ? state.revision + 1 : options.startRevision
      guard start >= state.compacted else {
        deliveries.endings.append((continuation, EtcdError.compacted(revision: state.compacted)))
        return (id, false, deliveries)
      }
      state.watchers[id] = Watcher(range: range, options: options, next: start, lastDelivered: start - 1, continuation: continuation)
      return (id, true, state.catchUp(id))
    }
    if registered {
      continuation.onTermination = { [weak self] _ in
        self?.state.withLock { _ = $0.watchers.removeValue(forKey: id) }
      }
    }
    deliveries.deliver()
    return WatchStream(stream, watchID: id)
  }

  /// Sends every connected watch a progress notification (no events, the current revision in
  /// the header), as etcd does on `RequestProgress` or its progress-notify interval.
  public func requestWatchProgress() {
    let deliveries = self.state.withLock { state in
      var deliveries = Deliveries()
      for (id, watcher) in state.watchers where watcher.connected {
        state.watchers[id]?.lastDelivered = state.revision
        deliveries.responses.append((watcher.continuation, WatchResponse(header: state.header, watchID: id, events: [])))
      }
      return deliveries
    }
    deliveries.deliver()
  }

  /// Breaks every watch's stream: nothing is delivered until ``reconnectWatches()``, as while
  /// etcd is unreachable.
  public func disconnectWatches() {
    self.disconnectWatches { _ in true }
  }

  /// Breaks the streams of the watches whose range `matches` selects: those watchers get
  /// nothing until ``reconnectWatches()``, while the others go on (one watcher of several
  /// delayed, as responses of two watchers can reach a client in either order).
  public func disconnectWatches(where matches: (KeyRange) -> Bool) {
    self.state.withLock { state in
      for (id, watcher) in state.watchers where matches(watcher.range) { state.watchers[id]?.connected = false }
    }
  }

  /// Resumes every broken watch the way `EtcdClient` does: after the last revision it
  /// delivered an event (or progress) of, or ``advanceWatch(_:through:)``'s revision, or, if
  /// that has been compacted meanwhile, by ending it with `compacted`.
  public func reconnectWatches() {
    let deliveries = self.state.withLock { state in
      var deliveries = Deliveries()
      for (id, watcher) in state.watchers where !watcher.connected {
        let next = max(watcher.lastDelivered + 1, watcher.resumeAfter + 1)
        state.watchers[id]?.next = next
        if next < state.compacted {
          state.watchers[id] = nil
          deliveries.endings.append((watcher.continuation, EtcdError.compacted(revision: state.compacted)))
        } else {
          state.watchers[id]?.connected = true
          deliveries.append(state.catchUp(id))
        }
      }
      return deliveries
    }
    deliveries.deliver()
  }

  /// Ends every watch with `error` (`watchCanceled`, `permissionDenied`: what no resume cures).
  public func endWatches(with error: EtcdError) {
    let deliveries = self.state.withLock { state in
      var deliveries = Deliveries()
      for watcher in state.watchers.values { deliveries.endings.append((watcher.continuation, error)) }
      state.watchers.removeAll()
      return deliveries
    }
    deliveries.deliver()
  }

  /// Watch `watch` resumes after `revision` when it is reconnected (``reconnectWatches()``),
  /// as `EtcdClient.advanceWatch(_:through:)` does; what is delivered meanwhile is not changed.
  public func advanceWatch(_ watch: Int64, through revision: Int64) {
    self.state.withLock { state in
      guard let watcher = state.watchers[watch] else { return }
      state.watchers[watch]?.resumeAfter = max(watcher.resumeAfter, revision)
    }
  }

  /// How many watches are open.
  public var watchCount: Int { self.state.withLock { $0.watchers.count } }
}

extension InMemoryEtcd.State {
  /// Every logged revision the watcher has not had yet, one response each; it is then current.
  mutating func catchUp(_ id: Int64) -> InMemoryEtcd.Deliveries {
    guard let watcher = self.watchers[id] else { return InMemoryEtcd.Deliveries() }
    var deliveries = InMemoryEtcd.Deliveries()
    for entry in self.log where entry.revision >= watcher.next {
      let events = entry.events.compactMap { event -> WatchEvent? in
        guard watcher.range.contains(event.kv.key) else { return nil }
        if event.kind == .put && watcher.options.filterPuts { return nil }
        if event.kind == .delete && watcher.options.filterDeletes { return nil }
        var event = event
        if !watcher.options.prevKV { event.prevKV = nil }
        return event
      }
      guard !events.isEmpty else { continue }
      self.watchers[id]?.lastDelivered = entry.revision
      deliveries.responses.append((watcher.continuation, WatchResponse(header: self.header(at: entry.revision), watchID: id, events: events)))
    }
    self.watchers[id]?.next = max(watcher.next, self.revision + 1)
    return deliveries
  }
}
