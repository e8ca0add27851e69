/// One etcd member's client URL: `http://host:port`, `https://host:port` or `host:port`.
public struct EtcdEndpoint: Sendable, Hashable, CustomStringConvertible {
  /// Whether the URL asked for TLS (`https://`).
  public var secure: Bool
  public var host: String
  public var port: Int

  public init(host: String, port: Int = 2379, secure: Bool = false) {
    self.host = host
    self.port = port
    self.secure = secure
  }

  /// Parses `http://h:p`, `https://h:p`, `h:p`, `h` (port 2379) and `[v6]:p`.
  public init(parsing text: String) throws(EtcdError) {
    var rest = Substring(text.trimmingWhitespace())
    var secure = false
    if rest.hasPrefix("https://") { secure = true; rest = rest.dropFirst(8) }
    else if rest.hasPrefix("http://") { rest = rest.dropFirst(7) }
    else if rest.contains("://") {
      throw EtcdError(.invalidArgument, "endpoint \(text): the scheme must be http or https")
    }
    while rest.hasSuffix("/") { rest = rest.dropLast() }
    var host = rest
    var port = 2379
    if rest.hasPrefix("[") {
      guard let close = rest.firstIndex(of: "]") else {
        throw EtcdError(.invalidArgument, "endpoint \(text): unclosed '[' in IPv6 address")
      }
      host = rest[rest.index(after: rest.startIndex)..<close]
      let after = rest[rest.index(after: close)...]
      if after.hasPrefix(":") { port = try Self.port(after.dropFirst(), in: text) }
      else if !after.isEmpty { throw EtcdError(.invalidArgument, "endpoint \(text): unexpected text after ']'") }
    } else if let colon = rest.lastIndex(of: ":") {
      host = rest[..<colon]
      port = try Self.port(rest[rest.index(after: colon)...], in: text)
    }
    guard !host.isEmpty else { throw EtcdError(.invalidArgument, "endpoint \(text): the host is empty") }
    self.init(host: String(host), port: port, secure: secure)
  }

  private static func port(_ text: Substring, in endpoint: String) throws(EtcdError) -> Int {
    guard let port = Int(text), (1...65535).contains(port) else {
      throw EtcdError(.invalidArgument, "endpoint \(endpoint): '\(text)' is not a port number (1-65535)")
    }
    return port
  }

  public var description: String {
    let host = self.host.contains(":") ? "[\(self.host)]" : self.host
    return "\(self.secure ? "https" : "http")://\(host):\(self.port)"
  }
}

/// Everything needed to talk to an etcd cluster, with clientv3's knobs and safe defaults.
public struct EtcdConfiguration: Sendable {
  /// The cluster's client URLs. Requests are balanced across healthy members; when one fails,
  /// the others take over.
  public var endpoints: [EtcdEndpoint]
  /// How long to wait for a connection to any endpoint before a request fails with
  /// `unavailable`. Also bounds ``EtcdClient/connect()``.
  public var dialTimeout: Duration = .seconds(5)
  /// Deadline for each unary request. Watch and keep-alive streams have none as a whole, but a
  /// watch stream that sends nothing at all for this long while a create waits for its answer
  /// is ended, re-created and resumed (counted in ``EtcdClient/watchProtocolViolations``; the
  /// wait doubles after each such end, up to 8 times); zero turns that off.
  public var requestTimeout: Duration = .seconds(30)
  /// Client keepalive: a PING every `keepaliveTime` while a stream is open; the connection is
  /// dropped (and another member used) when no ACK arrives within `keepaliveTimeout`. etcd
  /// refuses pings more often than every 5 s, so shorter values are raised to 5 s.
  public var keepaliveTime: Duration = .seconds(10)
  public var keepaliveTimeout: Duration = .seconds(5)
  /// Largest request this client sends. etcd's own limit is `--max-request-bytes` (1.5 MiB by
  /// default); larger requests fail with `requestTooLarge` either way.
  public var maxSendMessageBytes: Int = 2 * 1024 * 1024 + 512 * 1024
  /// Largest response accepted. The default (2 GiB - 1) lets a 100k-key read through.
  public var maxReceiveMessageBytes: Int = Int(Int32.max)
  /// Username and password for etcd's auth; the token is refreshed transparently.
  public var credentials: Credentials?
  /// TLS settings; `nil` means plaintext unless an endpoint is `https://`, in which case the
  /// system trust roots are used.
  public var tls: TLS?
  /// Whether to retry read-only requests that fail with `unavailable` on another member.
  public var retryReads = true
  /// Tests only: leave out the handler that answers etcd's PINGs (and runs the keepalive),
  /// to show the transport defect it works around.
  package var installsLivenessHandler = true
  /// Package-only until measured (issue 16; ClientBench `--variants` runs both ways in one
  /// run): enforce each call's deadline with grpc-swift-2's own timer (two child tasks and a
  /// timer per call); false uses the client's one sweeper (``RequestDeadlines``) instead.
  package var perCallDeadlineTimer = true
  /// Package-only until measured (issue 16): run unary calls and the watch stream on the
  /// connections' event loop (``EventLoopTaskExecutor``, one process-wide NIO thread) instead
  /// of on Swift's global executor with the connections on NIO's singleton group.
  package var runsOnConnectionLoop = false
  /// Package-only (issue 16): every call and stream goes through the client's own HTTP/2 path
  /// (``DirectTransport``); false sends them through grpc-swift-2 as before, for ClientBench's
  /// `--variants` and the tests that compare both.
  package var directUnaryCalls = true
  /// Package-only (issue 16): the answer to etcd's PING (one per request, for etcd's BDP
  /// estimate) waits up to this long for the next request's write instead of leaving in a
  /// write of its own, as Go's client usually does. That saves etcd a read and an ACK-only
  /// segment per request: etcd's CPU per put fell from 1.15× Go's to 0.86× in the same run
  /// (docs/benchmarks.md). nil answers at the end of the read that brought the PING (the
  /// comparison in ClientBench's `--variants`).
  package var pingAckDelay: Duration? = .milliseconds(1)
  /// Package-only (issue 16): swift-nio-http2 checks every header block, ours and etcd's,
  /// against HTTP/2's rules for field names and pseudo-headers. The client reads only
  /// `:status`, `content-type`, `grpc-status` and `grpc-message` from etcd, each checked where
  /// it is read, and its own headers are fixed; the checks were 4 % of the client's CPU per
  /// put (docs/benchmarks.md). true turns them back on (ClientBench's `--variants`).
  package var validatesHeaderBlocks = false

  public init(endpoints: [EtcdEndpoint]) {
    self.endpoints = endpoints
  }

  /// Parses endpoint URLs such as `http://127.0.0.1:2379`.
  public init(endpoints: [String]) throws(EtcdError) {
    var parsed: [EtcdEndpoint] = []
    for text in endpoints { parsed.append(try EtcdEndpoint(parsing: text)) }
    self.init(endpoints: parsed)
  }

  /// A user name and password for etcd's `Authenticate` call.
  public struct Credentials: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var username: String
    public var password: String
    public init(username: String, password: String) {
      self.username = username
      self.password = password
    }
    /// Never shows the password.
    public var description: String { "Credentials(username: \(self.username), password: <redacted>)" }
    public var debugDescription: String { self.description }
    public var customMirror: Mirror { Mirror(self, children: ["username": self.username, "password": "<redacted>"]) }
  }

  /// TLS files in PEM format.
  public struct TLS: Sendable, Hashable {
    /// CA bundle that signs the server certificates; `nil` uses the system trust roots.
    public var caFile: String?
    /// Client certificate and key for mutual TLS.
    public var certFile: String?
    public var keyFile: String?
    /// Host name to verify every member's certificate against (and send as SNI). When nil,
    /// each member is checked against its own endpoint's host (a name against the
    /// certificate's DNS names, an IP address against its IP addresses), so that members
    /// with certificates of their own fail over to each other; SNI is then sent only when
    /// every endpoint has the same host name.
    public var serverName: String?
    /// Skips certificate verification. For tests only.
    public var insecureSkipVerify = false

    public init(caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil, serverName: String? = nil) {
      self.caFile = caFile
      self.certFile = certFile
      self.keyFile = keyFile
      self.serverName = serverName
    }
  }

  func validate() throws(EtcdError) {
    guard !self.endpoints.isEmpty else { throw EtcdError(.invalidArgument, "no etcd endpoints configured") }
    if Set(self.endpoints.map(\.secure)).count > 1 && self.tls == nil {
      throw EtcdError(.invalidArgument, "endpoints mix http:// and https://; use one scheme for all members")
    }
    if let tls = self.tls, (tls.certFile == nil) != (tls.keyFile == nil) {
      throw EtcdError(.invalidArgument, "TLS client certificate and key must be given together")
    }
  }

  var usesTLS: Bool { self.tls != nil || self.endpoints.contains(where: \.secure) }

  /// Which name a member's TLS certificate is checked against; both transports follow it.
  enum CertificateNames {
    /// One name for every member (`nil`: the one host is an IP address): the configured
    /// `serverName`, or the one host all endpoints share (also with `insecureSkipVerify`).
    case shared(String?)
    /// Each member against its own endpoint's host: several hosts, no `serverName`.
    case perMember
  }

  var certificateNames: CertificateNames {
    let tls = self.tls ?? TLS()
    if let name = tls.serverName { return .shared(name) }
    let hosts = Set(self.endpoints.map(\.host))
    if hosts.count == 1 || tls.insecureSkipVerify { return .shared(hosts.first.flatMap { isIPLiteral($0) ? nil : $0 }) }
    return .perMember
  }
}

extension StringProtocol {
  func trimmingWhitespace() -> SubSequence {
    var s = self[...]
    while let f = s.first, f.isWhitespace { s = s.dropFirst() }
    while let l = s.last, l.isWhitespace { s = s.dropLast() }
    return s
  }
}
