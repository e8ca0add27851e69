import GRPCCore

/// The one error type of `EtcdClient`: a code, etcd's (or the transport's) message, and the
/// underlying cause. No value, token or password ever appears in its description.
public struct EtcdError: Error, Sendable, CustomStringConvertible {
  /// What went wrong, coarse enough to branch on.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private let name: String
    private init(_ name: String) { self.name = name }
    public var description: String { self.name }

    /// No member could be reached, or the member has no leader.
    public static let unavailable = Code("unavailable")
    /// The request's deadline passed.
    public static let deadlineExceeded = Code("deadlineExceeded")
    /// The requested revision has been compacted; see ``EtcdError/compactRevision``.
    public static let compacted = Code("compacted")
    /// The requested revision is newer than the store's.
    public static let futureRevision = Code("futureRevision")
    public static let leaseNotFound = Code("leaseNotFound")
    /// Wrong user name or password, or auth is not enabled while credentials were given.
    public static let authFailed = Code("authFailed")
    /// The token was rejected even after re-authenticating.
    public static let invalidToken = Code("invalidToken")
    public static let permissionDenied = Code("permissionDenied")
    /// The request exceeds etcd's `--max-request-bytes` or the client's send limit.
    public static let requestTooLarge = Code("requestTooLarge")
    /// A Txn has more operations than etcd's `--max-txn-ops`.
    public static let tooManyOps = Code("tooManyOps")
    public static let duplicateKey = Code("duplicateKey")
    /// The response exceeds the client's receive limit.
    public static let responseTooLarge = Code("responseTooLarge")
    public static let invalidArgument = Code("invalidArgument")
    /// A watch was cancelled by the server; the message says why.
    public static let watchCanceled = Code("watchCanceled")
    /// The client was shut down.
    public static let clientClosed = Code("clientClosed")
    public static let cancelled = Code("cancelled")
    public static let tlsFailed = Code("tlsFailed")
    public static let notFound = Code("notFound")
    public static let internalError = Code("internal")
  }

  public var code: Code
  /// etcd's message (for example `etcdserver: request is too large`) or the client's own.
  public var message: String
  /// For ``Code/compacted``: the compaction revision reported by etcd (0 if unknown).
  public var compactRevision: Int64 = 0
  /// The underlying error, if any.
  public var cause: (any Error)?

  public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
    self.code = code
    self.message = message
    self.cause = cause
  }

  /// A compaction error carrying the compact revision.
  public static func compacted(revision: Int64, message: String = "etcdserver: mvcc: required revision has been compacted") -> EtcdError {
    var error = EtcdError(.compacted, message)
    error.compactRevision = revision
    return error
  }

  public var description: String {
    var text = "\(self.code): \(self.message)"
    if self.code == .compacted && self.compactRevision > 0 { text += " (compact revision \(self.compactRevision))" }
    return text
  }

  /// Whether retrying on another member (or later) can succeed.
  public var isTransient: Bool {
    self.code == .unavailable || self.code == .deadlineExceeded
  }
}

extension EtcdError {
  /// Maps a gRPC error to etcd's meaning, using etcd's well-known messages (rpctypes).
  init(rpc error: RPCError) {
    let message = error.message
    let code: Code
    switch error.code {
    case .unavailable:
      code = .unavailable
    case .deadlineExceeded:
      code = message.contains("etcdserver: request timed out") ? .unavailable : .deadlineExceeded
    case .outOfRange:
      code = message.contains("compacted") ? .compacted : message.contains("future revision") ? .futureRevision : .invalidArgument
    case .notFound:
      code = message.contains("lease not found") ? .leaseNotFound : .notFound
    case .permissionDenied:
      code = .permissionDenied
    case .unauthenticated:
      code = .invalidToken
    case .invalidArgument, .failedPrecondition:
      code = Self.knownCode(message) ?? .invalidArgument
    case .resourceExhausted:
      // grpc-go on the server: "grpc: received message larger than max (N vs. M)" is our
      // request; grpc-swift on our side reports a response over maxReceiveMessageBytes.
      if message.contains("received message larger than max") || message.contains("trying to send message larger") {
        code = .requestTooLarge
      } else if message.lowercased().contains("exceeded") || message.lowercased().contains("too large") {
        code = .responseTooLarge
      } else {
        code = .unavailable
      }
    case .cancelled:
      code = .cancelled
    case .unknown, .internalError, .aborted:
      if message.contains("revision in header is old") || message.contains("revision of auth store is old") {
        code = .invalidToken  // the token predates a user or role change: re-authenticate
      } else if message.contains("no leader") || message.contains("leader changed") {
        code = .unavailable
      } else if message.hasPrefix("etcdserver: ") || message.hasPrefix("mvcc: "), let known = Self.knownCode(message) {
        // etcd's gRPC proxy passes etcd's refusals on with gRPC's code `unknown` and etcd's
        // message: the message alone tells what it was.
        code = known
      } else {
        code = .internalError
      }
    default:
      code = .internalError
    }
    self.init(code, message.isEmpty ? "\(error.code)" : message, cause: error)
  }

  /// What etcd's well-known refusal messages (rpctypes) mean, whatever gRPC code carried them.
  static func knownCode(_ message: String) -> Code? {
    let known: [(String, Code)] = [
      ("request is too large", .requestTooLarge), ("too many operations in txn", .tooManyOps),
      ("duplicate key", .duplicateKey),
      ("authentication failed", .authFailed), ("authentication is not enabled", .authFailed),
      ("user name is empty", .permissionDenied),  // auth is on, no credentials
      ("revision of auth store is old", .invalidToken),  // roles changed: re-authenticate
      ("permission denied", .permissionDenied), ("invalid auth token", .invalidToken),
      ("requested lease not found", .leaseNotFound),
      ("required revision has been compacted", .compacted), ("required revision is a future revision", .futureRevision),
    ]
    return known.first { message.contains($0.0) }?.1
  }

  /// Wraps any error thrown by the transport or by our own code.
  static func wrap(_ error: any Error) -> EtcdError {
    if let etcd = error as? EtcdError { return etcd }
    if let rpc = error as? RPCError { return EtcdError(rpc: rpc) }
    if error is CancellationError { return EtcdError(.cancelled, "the task was cancelled", cause: error) }
    if let runtime = error as? RuntimeError, runtime.code == .clientIsStopped {
      return EtcdError(.clientClosed, "the etcd client has been shut down", cause: error)
    }
    return EtcdError(.internalError, "\(error)", cause: error)
  }
}
