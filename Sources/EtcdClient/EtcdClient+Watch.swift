// Watch (clientv3's Watcher): the streams themselves live in `Watch/`.
extension EtcdClient {
  /// Watches a key or range (clientv3's `Watch`). See ``WatchStream`` for how it ends.
  public func watch(_ range: KeyRange, options: WatchOptions = WatchOptions()) -> WatchStream {
    self.watchHub.watch(range, options: options, client: self)
  }

  /// Watches one key.
  public func watch(_ key: String, options: WatchOptions = WatchOptions()) -> WatchStream {
    self.watch(.key(key), options: options)
  }

  /// Tells the client that the consumer of `watch` (a ``WatchStream/watchID``) knows the
  /// watched range through `revision` by other means, such as a read showing it unchanged: if
  /// the stream is re-created (a failover, a dropped connection), that watch resumes after
  /// `revision` instead of after its last event, which for an idle range may have been
  /// compacted. Events up to `revision` already on their way are still delivered.
  public func advanceWatch(_ watch: Int64, through revision: Int64) {
    self.watchHub.advance(watch, through: revision)
  }

  /// Asks etcd to send every open watch a progress notification (clientv3's `RequestProgress`).
  public func requestWatchProgress() {
    self.watchHub.requestProgress()
  }
}

extension EtcdClient {
  /// How many watch responses made no sense (a watch ID the stream never created, a created
  /// answer to no request, an event older than one already delivered) or never came (a create
  /// request waiting while the stream sent nothing at all for ``EtcdConfiguration/requestTimeout``,
  /// doubled after each such end): each one ended the watch stream, which was re-created and resumed from the
  /// revision after the last one delivered, so nothing is lost. Events older than a new
  /// watch's start revision (etcd-io/etcd#20221) are counted too, and dropped. Non-zero means
  /// a server or proxy that numbers, orders or answers watches unlike etcd.
  public var watchProtocolViolations: Int { self.watchHub.protocolViolations }
}
