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
      state.watchers[id] = Watcher(range: range, options: options, next: start, continuation: continuation)
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
        deliveries.responses.append((watcher.continuation, WatchResponse(header: state.header, watchID: id, events: [])))
      }
      return deliveries
    }
    deliveries.deliver()
  }

  /// Breaks every watch's stream: nothing is delivered until ``reconnectWatches()``, as while
  /// etcd is unreachable.
  public func disconnectWatches() {
    self.state.withLock { state in
      for id in state.watchers.keys { state.watchers[id]?.connected = false }
    }
  }

  /// Resumes every broken watch the way `EtcdClient` does: from its next undelivered revision,
  /// or, if that has been compacted meanwhile, by ending it with `compacted`.
  public func reconnectWatches() {
    let deliveries = self.state.withLock { state in
      var deliveries = Deliveries()
      for (id, watcher) in state.watchers where !watcher.connected {
        if watcher.next < state.compacted {
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
      deliveries.responses.append((watcher.continuation, WatchResponse(header: self.header(at: entry.revision), watchID: id, events: events)))
    }
    self.watchers[id]?.next = max(watcher.next, self.revision + 1)
    return deliveries
  }
}
