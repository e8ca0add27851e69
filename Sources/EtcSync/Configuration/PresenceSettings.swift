/// The presence key: `<prefix>/<name>`, bound to a lease and kept alive while the agent runs,
/// so that `etcsync status` can list the fleet.
public struct PresenceSettings: Sendable, Equatable {
  /// The prefix under which agents register (default `/etcsync/agents`).
  public var prefix: String
  /// This agent's name, one key segment without `/` (default: the host name).
  public var name: String
  /// The lease's time to live, whole seconds, at least 2 s (default 10 s). It is kept alive
  /// every `ttl / 3`.
  public var ttl: Duration
  /// Whether the agent takes its name over when another running agent holds it at start
  /// (default false: the agent refuses to start, exit status 2). `etcsync run --take-over`
  /// does the same once. Re-registering after a lost lease never takes a name over.
  public var takeOver: Bool

  /// Presence under `prefix` as `name`.
  public init(prefix: String = "/etcsync/agents", name: String, ttl: Duration = .seconds(10), takeOver: Bool = false) {
    self.prefix = prefix
    self.name = name
    self.ttl = ttl
    self.takeOver = takeOver
  }

  /// The presence key itself: `<prefix>/<name>`, with one `/` between them.
  public var key: String {
    self.prefix.hasSuffix("/") ? self.prefix + self.name : self.prefix + "/" + self.name
  }

  /// The lease TTL in seconds, as etcd's LeaseGrant takes it.
  public var ttlSeconds: Int64 { self.ttl.components.seconds }
}
