/// How the agent reaches the etcd cluster. The agent turns these into the client's own
/// configuration; this layer only reads and checks them.
public struct EtcdSettings: Sendable, Equatable {
  /// Client URLs of the members: `http://host:port`, `https://host:port`, `host:port`,
  /// `host` (port 2379) or `[v6]:port`. Default: `http://127.0.0.1:2379`.
  public var endpoints: [String]
  /// How long to wait for a connection to any member (default 5 s).
  public var dialTimeout: Duration
  /// Deadline of each unary request (default 30 s).
  public var requestTimeout: Duration
  /// Client keepalive ping interval while a stream is open (default 10 s).
  public var keepaliveTime: Duration
  /// How long an unanswered ping may take before the connection is dropped (default 5 s).
  public var keepaliveTimeout: Duration
  /// TLS files; `nil` means plaintext unless an endpoint is `https://`.
  public var tls: TLSSettings?
  /// User and password file for etcd's authentication; `nil` means none.
  public var auth: AuthSettings?
  /// How the daemon watches its mappings' keys (default ``WatchMode/ranges``).
  public var watch: WatchMode

  /// The defaults: one local member, no TLS, no authentication.
  public init(
    endpoints: [String] = ["http://127.0.0.1:2379"],
    dialTimeout: Duration = .seconds(5),
    requestTimeout: Duration = .seconds(30),
    keepaliveTime: Duration = .seconds(10),
    keepaliveTimeout: Duration = .seconds(5),
    tls: TLSSettings? = nil,
    auth: AuthSettings? = nil,
    watch: WatchMode = .ranges
  ) {
    self.endpoints = endpoints
    self.dialTimeout = dialTimeout
    self.requestTimeout = requestTimeout
    self.keepaliveTime = keepaliveTime
    self.keepaliveTimeout = keepaliveTimeout
    self.tls = tls
    self.auth = auth
    self.watch = watch
  }
}

/// How the daemon watches: one watcher per disjoint mapped range, or one over the range that
/// covers them all. Either way a render sees one revision across all its prefixes.
public enum WatchMode: String, Sendable, Equatable, CaseIterable {
  /// One watcher per disjoint mapped range, all on one stream: read rights on exactly the
  /// mapped prefixes suffice. A revision is applied once every watcher is known to have
  /// delivered everything up to it; a change in one range costs one extra read of the others
  /// (see `RevisionBarrier`).
  case ranges
  /// One watcher over the smallest range covering every mapping: needs read rights on every
  /// key in between, and applies each change as soon as it arrives.
  case covering
}

/// TLS files in PEM format. Present (even empty) means the connection uses TLS.
public struct TLSSettings: Sendable, Equatable {
  /// CA bundle that signs the members' certificates; `nil` uses the system trust roots.
  public var ca: String?
  /// Client certificate for mutual TLS; given together with `key`.
  public var cert: String?
  /// The client certificate's private key.
  public var key: String?
  /// Name to verify the members' certificates against (and send as SNI); by default each
  /// endpoint's host.
  public var serverName: String?

  /// TLS with the given files; all `nil` means TLS with the system roots.
  public init(ca: String? = nil, cert: String? = nil, key: String? = nil, serverName: String? = nil) {
    self.ca = ca
    self.cert = cert
    self.key = key
    self.serverName = serverName
  }
}

/// etcd user authentication. Only the path of the password file is kept; the password itself
/// is read by ``resolvePassword()`` when the agent connects, so it never sits in the
/// configuration, its descriptions or a log line.
public struct AuthSettings: Sendable, Equatable {
  /// The etcd user name.
  public var user: String
  /// A file holding the password (one trailing newline is ignored).
  public var passwordFile: String

  /// Authentication as `user` with the password in `passwordFile`.
  public init(user: String, passwordFile: String) {
    self.user = user
    self.passwordFile = passwordFile
  }

  /// Reads the password from ``passwordFile``, without its trailing newline (`\n` or `\r\n`).
  ///
  /// The error names the file and the reason (missing, not readable, empty) and never holds
  /// any of the file's content.
  public func resolvePassword() throws(ConfigurationError) -> String {
    do {
      return try Self.readPassword(self.passwordFile)
    } catch {
      throw ConfigurationError(
        .fileAccess, file: self.passwordFile, field: "etcd.auth.passwordFile",
        message: "cannot read the password file: \(error.reason)")
    }
  }

  /// The password in `path`, or why there is none usable; the reason never quotes the file.
  static func readPassword(_ path: String) throws(ConfigFiles.Failure) -> String {
    var password = try ConfigFiles.readFile(path, limit: 64 * 1024)[...]
    if password.last == UInt8(ascii: "\n") {
      password = password.dropLast()
      if password.last == UInt8(ascii: "\r") { password = password.dropLast() }
    }
    guard !password.isEmpty else { throw ConfigFiles.Failure(reason: "the file is empty") }
    guard let text = String(validating: password, as: UTF8.self) else {
      throw ConfigFiles.Failure(reason: "the file is not UTF-8 text")
    }
    return text
  }
}
