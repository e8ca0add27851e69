import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GRPCProtobuf
import Logging
import NIOCore
import NIOPosix
import SwiftProtobuf
import Synchronization

typealias Transport = HTTP2ClientTransport.Posix

/// A client for an etcd v3 cluster: KV, Txn and `Op`, Watch, Lease, Auth, Maintenance and
/// Cluster, over one multiplexed HTTP/2 connection per member (``DirectTransport``) with
/// failover between members.
///
/// Connections are made on demand; ``run()`` waits until ``shutdown()``. The simplest way is the scoped
/// ``withEtcdClient(_:logger:_:)``; a long-running service can instead call ``run()`` in a
/// task of its own and ``shutdown()`` when done.
///
/// ```swift
/// try await withEtcdClient(try EtcdConfiguration(endpoints: ["http://127.0.0.1:2379"])) { etcd in
///   try await etcd.put("/greeting", "hello")
///   let value = try await etcd.get("/greeting").kvs.first?.valueString
/// }
/// ```
public final class EtcdClient: Sendable {
  public let configuration: EtcdConfiguration
  let logger: Logger
  let grpc: GRPCClient<Transport>
  let tokens: TokenStore
  let watchHub: WatchHub
  let keepers = KeeperRegistry()
  /// Enforces request deadlines for all unary calls (see there for why not grpc's own).
  let deadlines = RequestDeadlines()
  /// Where unary calls and the watch stream run once they wait: the connections' event loop.
  let executor: EventLoopTaskExecutor?
  /// The executor of the event loop that carries this client's connections, for a caller that
  /// wants the lowest latency: a task that runs with it as its preference makes its calls on
  /// the thread that reads the client's sockets, without the two thread hops a call from
  /// Swift's global pool costs (one to the loop, one back):
  ///
  /// ```swift
  /// try await withTaskExecutorPreference(etcd.eventLoopExecutor) {
  ///   for update in updates { try await etcd.put(update.key, update.value) }
  /// }
  /// ```
  ///
  /// On the project's machine that brought sequential puts close to Go's clientv3, with half
  /// the context switches and about a fifth less CPU per put (docs/benchmarks.md).
  ///
  /// Such a task must never block (no file I/O, no waiting on a lock or a semaphore, no
  /// `wait()` on a future, no long computation): while it runs, no call, stream, deadline or
  /// keepalive moves on that loop, and the loop is shared (by other clients of the process, and
  /// by other users of NIO's singleton group). Child tasks inherit the preference. The
  /// client's own long work (decoding a large Range) moves to the global pool by itself.
  /// Through DirectTransport, the default; on the package-only grpc-swift-2 path it is a loop
  /// of its own, not the connections'.
  public let eventLoopExecutor: any TaskExecutor
  /// The client's own transport for every call and stream (``DirectTransport``), unless they
  /// go through grpc-swift-2 (`directUnaryCalls = false`).
  let direct: DirectTransport?

  /// Creates a client. It connects at the first request (through grpc-swift-2,
  /// `directUnaryCalls = false`, once ``run()`` is running too).
  public init(configuration: EtcdConfiguration, logger: Logger = Logger(label: "etcd.client")) throws(EtcdError) {
    try configuration.validate()
    self.configuration = configuration
    self.logger = logger
    self.grpc = GRPCClient(transport: try TransportFactory.make(configuration))
    self.tokens = TokenStore(credentials: configuration.credentials)
    self.watchHub = WatchHub(logger: logger, hasCredentials: configuration.credentials != nil)
    self.executor = configuration.runsOnConnectionLoop ? EventLoopTaskExecutor.shared : nil
    if configuration.directUnaryCalls {
      let loop = configuration.runsOnConnectionLoop
        ? EventLoopTaskExecutor.shared.loop : MultiThreadedEventLoopGroup.singleton.next()
      self.direct = try DirectTransport(configuration: configuration, eventLoop: loop)
      self.eventLoopExecutor = configuration.runsOnConnectionLoop ? EventLoopTaskExecutor.shared : EventLoopTaskExecutor(loop)
    } else {
      self.direct = nil
      // grpc-swift-2's connections (package-only path) run on their own group; this loop is
      // only as good as any other.
      self.eventLoopExecutor = EventLoopTaskExecutor.shared
    }
  }

  /// Runs the client until ``shutdown()`` is called (or the task is cancelled, which shuts it
  /// down). Calls do not wait for it: connections are made on demand. (Through grpc-swift-2,
  /// `directUnaryCalls = false`, it runs that transport's connections, which calls need.)
  public func run() async throws {
    if let direct = self.direct {
      // Every call goes through DirectTransport, which connects on demand: grpc-swift-2's
      // connections are not started (they would sit idle beside DirectTransport's).
      // Cancelling run() shuts the whole client down: its watch and keep-alive streams too.
      await withTaskCancellationHandler {
        await direct.waitUntilShutdown()
      } onCancel: {
        self.shutdown()
      }
      return
    }
    do {
      try await self.grpc.runConnections()
    } catch {
      throw EtcdError.wrap(error)
    }
  }

  /// Ends every watch and keep-alive stream and lets in-flight requests finish; ``run()``
  /// then returns.
  public func shutdown() {
    self.watchHub.shutdown()
    self.keepers.closeAll()
    self.grpc.beginGracefulShutdown()
    self.direct?.shutdown()
    self.deadlines.stop()
  }

  /// Fails fast when no member answers within ``EtcdConfiguration/dialTimeout``: a Status
  /// request to any member. Returns that member's status.
  @discardableResult
  public func connect() async throws(EtcdError) -> MemberStatus {
    try await self.status(timeout: self.configuration.dialTimeout)
  }

  // MARK: Calls

  var kv: Etcdserverpb_KV.Client<Transport> { .init(wrapping: self.grpc) }
  var watchRPC: Etcdserverpb_Watch.Client<Transport> { .init(wrapping: self.grpc) }
  var leaseRPC: Etcdserverpb_Lease.Client<Transport> { .init(wrapping: self.grpc) }
  var authRPC: Etcdserverpb_Auth.Client<Transport> { .init(wrapping: self.grpc) }
  var maintenanceRPC: Etcdserverpb_Maintenance.Client<Transport> { .init(wrapping: self.grpc) }
  var clusterRPC: Etcdserverpb_Cluster.Client<Transport> { .init(wrapping: self.grpc) }

  /// Call options for a unary request: waiting for a ready member. The deadline is kept by
  /// ``withDeadline(_:_:)``.
  func callOptions(timeout: Duration? = nil) -> CallOptions {
    var options = CallOptions.defaults
    if self.configuration.perCallDeadlineTimer || self.direct != nil {
      options.timeout = timeout ?? self.configuration.requestTimeout
    }
    options.waitForReady = true
    return options
  }

  /// Runs one attempt of a unary call under its deadline (`timeout`, or else
  /// ``EtcdConfiguration/requestTimeout``), on the connections' event loop once it waits.
  /// A call past its deadline fails with `deadlineExceeded`.
  func withDeadline<Response: Sendable>(
    _ timeout: Duration?,
    _ body: @escaping @Sendable () async throws -> Response
  ) async throws -> Response {
    // DirectTransport keeps the deadline itself (a timer on its event loop).
    if self.direct != nil { return try await body() }
    if self.configuration.perCallDeadlineTimer {
      // grpc-swift-2 keeps the deadline (set in callOptions).
      guard let executor = self.executor else { return try await body() }
      return try await withTaskExecutorPreference(executor) { try await body() }
    }
    return try await self.deadlines.run(timeout: timeout ?? self.configuration.requestTimeout, executor: self.executor, body)
  }

  /// How a read that failed with `unavailable` is retried: 200, 400, 800 ms (three retries).
  static let readRetry = Backoff(initial: .milliseconds(200), maximum: .milliseconds(800), jitter: 0)

  /// Runs one unary RPC with the auth token attached. An invalid or expired token is
  /// refreshed and the call made once more; a read-only call (`idempotent`) that fails with
  /// `unavailable` is retried on another member a few times.
  func unary<Response: Sendable>(
    idempotent: Bool,
    timeout: Duration? = nil,
    _ body: @escaping @Sendable (Metadata, CallOptions) async throws -> Response
  ) async throws(EtcdError) -> Response {
    var attempt = 0
    var refreshedToken = false
    while true {
      attempt += 1
      var metadata: Metadata?
      do {
        let current = self.configuration.credentials == nil ? [:] : try await self.tokens.metadata(using: self)
        metadata = current
        let options = self.callOptions(timeout: timeout)
        return try await self.withDeadline(timeout) { try await body(current, options) }
      } catch {
        let error = EtcdError.wrap(error)
        if error.code == .invalidToken, !refreshedToken, self.configuration.credentials != nil {
          refreshedToken = true
          await self.tokens.invalidate(ifCurrent: metadata.flatMap { Array($0[stringValues: "token"]).first })
          continue
        }
        if idempotent, self.configuration.retryReads, error.code == .unavailable, attempt < 4, !Task.isCancelled {
          try? await Task.sleep(for: Self.readRetry.delay(afterFailures: attempt))
          continue
        }
        throw error
      }
    }
  }

  /// Makes one unary RPC: through ``DirectTransport`` when the client has one, else through
  /// grpc-swift-2. `options.timeout` is the call's deadline on the direct path.
  func invoke<Request: SwiftProtobuf.Message & Sendable, Response: SwiftProtobuf.Message & Sendable>(
    _ descriptor: MethodDescriptor,
    _ request: Request,
    _ metadata: Metadata,
    _ options: CallOptions,
    as type: Response.Type = Response.self
  ) async throws -> Response {
    if let direct = self.direct {
      let response = try await self.invoke(direct, descriptor, request, metadata, options)
      return try Response(serializedBytes: Array(response.readableBytesView))
    }
    return try await self.grpc.unary(
      request: ClientRequest(message: request, metadata: metadata),
      descriptor: descriptor,
      serializer: ProtobufSerializer<Request>(),
      deserializer: ProtobufDeserializer<Response>(),
      options: options
    ) { try $0.message }
  }

  /// Makes one unary RPC through ``DirectTransport``; returns the serialized response.
  func invoke<Request: SwiftProtobuf.Message>(
    _ direct: DirectTransport, _ descriptor: MethodDescriptor, _ request: Request, _ metadata: Metadata, _ options: CallOptions
  ) async throws -> ByteBuffer {
    try await direct.unary(
      path: "/" + descriptor.fullyQualifiedMethod, message: try request.serializedBytes(), metadata: metadata,
      timeout: options.timeout ?? self.configuration.requestTimeout)
  }

  /// Metadata for a stream (watch, keep-alive): the token, plus any extra entries.
  func streamMetadata(_ extra: [(String, String)] = []) async throws(EtcdError) -> Metadata {
    var metadata = try await self.tokens.metadata(using: self)
    for (key, value) in extra { metadata.addString(value, forKey: key) }
    return metadata
  }
}

/// Runs `body` with a running client and shuts the client down afterwards, whether `body`
/// returns or throws.
public func withEtcdClient<Result: Sendable>(
  _ configuration: EtcdConfiguration,
  logger: Logger = Logger(label: "etcd.client"),
  _ body: (EtcdClient) async throws -> Result
) async throws -> Result {
  let client = try EtcdClient(configuration: configuration, logger: logger)
  return try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await client.run() }
    do {
      let result = try await body(client)
      client.shutdown()
      try await group.waitForAll()
      return result
    } catch {
      client.shutdown()
      group.cancelAll()
      throw error
    }
  }
}

/// Holds the auth token and fetches a new one when asked to. Concurrent callers share one
/// Authenticate call, and a failure only discards the token that failed, so a burst of
/// failures does not make several Authenticate calls (each a raft write on the server).
actor TokenStore {
  private let credentials: EtcdConfiguration.Credentials?
  private var token: String?
  private var pending: Task<String, any Error>?

  init(credentials: EtcdConfiguration.Credentials?) {
    self.credentials = credentials
  }

  /// Metadata carrying the current token (authenticating first if there is none yet).
  func metadata(using client: EtcdClient) async throws(EtcdError) -> Metadata {
    guard self.credentials != nil else { return [:] }
    let token = try await self.currentToken(using: client)
    return ["token": "\(token)"]
  }

  /// Forgets the token if it is still the one a failed request carried (`nil`: any token).
  func invalidate(ifCurrent failed: String? = nil) {
    if failed == nil || failed == self.token { self.token = nil }
  }

  private func currentToken(using client: EtcdClient) async throws(EtcdError) -> String {
    if let token = self.token { return token }
    guard let credentials = self.credentials else { return "" }
    let task: Task<String, any Error>
    if let pending = self.pending {
      task = pending
    } else {
      task = Task { try await client.authenticate(credentials) }
      self.pending = task
    }
    do {
      let token = try await task.value
      // Only the caller that finds its own task still pending publishes the result; a late
      // waiter must not overwrite a newer fetch or revive an invalidated token.
      if self.pending == task {
        self.pending = nil
        self.token = token
      }
      return token
    } catch {
      if self.pending == task { self.pending = nil }
      throw EtcdError.wrap(error)
    }
  }
}
