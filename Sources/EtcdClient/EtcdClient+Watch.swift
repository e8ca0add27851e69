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

  /// Asks etcd to send every open watch a progress notification (clientv3's `RequestProgress`).
  public func requestWatchProgress() {
    self.watchHub.requestProgress()
  }
}

extension EtcdClient {
  /// How many watch responses made no sense (a watch ID the stream never created, a created
  /// answer to no request): each one ended the watch stream, which was re-created and resumed
  /// from the revision after the last one delivered, so nothing is lost. Non-zero means a
  /// server or proxy that numbers or orders watches unlike etcd.
  public var watchProtocolViolations: Int { self.watchHub.protocolViolations }
}
