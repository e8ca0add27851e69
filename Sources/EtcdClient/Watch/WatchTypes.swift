/// Options of a watch (clientv3's `OpOption`s for `Watch`).
public struct WatchOptions: Sendable, Hashable {
  /// First revision to deliver (0 = changes after now). A revision that has been compacted
  /// ends the watch with a `compacted` error carrying the compact revision.
  public var startRevision: Int64 = 0
  /// Deliver the previous key-value with each event.
  public var prevKV = false
  /// Leave out put events.
  public var filterPuts = false
  /// Leave out delete events.
  public var filterDeletes = false
  /// Ask etcd for periodic progress notifications (empty responses whose header revision
  /// says every event up to it has been delivered) while nothing changes.
  public var progressNotify = false
  /// Let etcd split a huge revision across responses; they are joined again before delivery,
  /// so a delivered response always holds whole revisions.
  public var fragment = false
  /// Also deliver the response that confirms the watch was created.
  public var createdNotify = false

  public init(startRevision: Int64 = 0, prevKV: Bool = false, progressNotify: Bool = false,
              filterPuts: Bool = false, filterDeletes: Bool = false, fragment: Bool = false) {
    self.startRevision = startRevision
    self.prevKV = prevKV
    self.progressNotify = progressNotify
    self.filterPuts = filterPuts
    self.filterDeletes = filterDeletes
    self.fragment = fragment
  }
}

/// One response of a watch: the events of one or more whole revisions, or a progress
/// notification (no events; the header revision tells how far the watch has got).
public struct WatchResponse: Sendable, Hashable {
  public var header: ResponseHeader
  public var watchID: Int64
  public var events: [WatchEvent]
  /// Set when the watch was cancelled because its start revision was compacted (the watch
  /// then ends with a `compacted` error instead; the field is kept for completeness).
  public var compactRevision: Int64
  /// Whether this is the confirmation of a new watch (only with `createdNotify`).
  public var created: Bool
  public var canceled: Bool
  public var cancelReason: String

  public init(header: ResponseHeader, watchID: Int64, events: [WatchEvent], compactRevision: Int64 = 0,
              created: Bool = false, canceled: Bool = false, cancelReason: String = "") {
    self.header = header
    self.watchID = watchID
    self.events = events
    self.compactRevision = compactRevision
    self.created = created
    self.canceled = canceled
    self.cancelReason = cancelReason
  }

  /// A progress notification: no events, not a creation or cancellation.
  public var isProgressNotify: Bool {
    self.events.isEmpty && !self.created && !self.canceled && self.compactRevision == 0
  }
}

/// The responses of one watch, as an async sequence. It ends by throwing an ``EtcdError``:
/// `compacted` (with ``EtcdError/compactRevision``), `watchCanceled`, `permissionDenied`, or
/// `clientClosed`. Stream failures and member outages do not end it: the watch resumes from
/// the next undelivered revision, and no event is lost or delivered twice. Stop watching by
/// cancelling the task that iterates, or by dropping the iterator.
public struct WatchStream: AsyncSequence, Sendable {
  public typealias Element = WatchResponse
  let base: AsyncThrowingStream<WatchResponse, any Error>
  /// The watch's ID on the client's shared stream.
  public let watchID: Int64

  init(base: AsyncThrowingStream<WatchResponse, any Error>, watchID: Int64) {
    self.base = base
    self.watchID = watchID
  }

  /// A watch fed by something other than a client (an in-memory etcd in tests). `base` must
  /// keep the contract above: whole revisions in order, ended only by an ``EtcdError``.
  public init(_ base: AsyncThrowingStream<WatchResponse, any Error>, watchID: Int64) {
    self.init(base: base, watchID: watchID)
  }

  public func makeAsyncIterator() -> AsyncThrowingStream<WatchResponse, any Error>.AsyncIterator {
    self.base.makeAsyncIterator()
  }
}
