/// Everything the etcsync agent is configured with: how to reach etcd, which prefixes map to
/// which files, and how the agent runs.
///
/// Read it with ``load(path:environment:overrides:checkFiles:)``, which applies the
/// precedence flags > `ETCSYNC_*` environment > file > defaults. Every property has the
/// default that an absent key gets; `docs/configuration.md` describes each key.
public struct AgentConfiguration: Sendable, Equatable {
  /// The etcd cluster and how to talk to it.
  public var etcd: EtcdSettings
  /// Prefix → file mappings, in the order of the file. Names are unique.
  public var mappings: [Mapping]
  /// The presence key; `nil` (the default) announces nothing.
  public var presence: PresenceSettings?
  /// The Prometheus endpoint; `nil` (the default) serves none.
  public var metrics: MetricsSettings?
  /// Where the applied revision and content hashes are kept.
  public var state: StateSettings
  /// Quiescence for mappings that have no `wait` of their own; `nil` renders at once.
  public var wait: WaitSettings?
  /// Log output.
  public var log: LogSettings
  /// Timeout of `check` and `reload` commands for mappings without their own (default 30 s).
  public var commandTimeout: Duration
  /// Exec mode: the child etcsync runs and signals on changes; `nil` (the default) runs none.
  /// Read at start only (`etcsync run`); `--exec` overrides it.
  public var exec: ExecSettings?
  /// How often the daemon re-reads every repaired file and compares its hash with what it
  /// wrote, for file systems where inotify misses changes (NFS, FUSE, a bind mount changed
  /// from another namespace); `.zero` turns the periodic check off (inotify still repairs).
  /// Default 60 s. See "Drift repair" in docs/agent.md.
  public var driftCheckInterval: Duration = .seconds(60)
  /// The most inotify watches (one per directory) the drift watcher of one tree adds; a tree
  /// with more directories is left to the periodic check, with a warning. Not a key of the
  /// configuration file (8192); tests lower it.
  public var driftWatchLimit = 8192
  /// Write-back mappings whose watched directory is accepted as it is now, replacing the one
  /// the state file recorded (`etcsync run --accept-destination NAME`). Not a key of the
  /// configuration file: an operator's one-time answer to `destination_replaced`.
  public var acceptDestinations: Set<String> = []
  /// The values the configuration file wrote with a `${…}` or a `$$` other than the escaped
  /// `$$$$` and `$${`, by field path (`mappings[0].reload[2]`), as written before
  /// ``ConfigVariables`` expanded them. Not a key
  /// of the file: ``warnings`` names a shell script among them, whose meaning changed when
  /// etcsync began expanding variables.
  public var writtenWithDollars: [String: String] = [:]

  /// The default configuration: local etcd, no mappings.
  public init(
    etcd: EtcdSettings = EtcdSettings(),
    mappings: [Mapping] = [],
    presence: PresenceSettings? = nil,
    metrics: MetricsSettings? = nil,
    state: StateSettings = StateSettings(),
    wait: WaitSettings? = nil,
    log: LogSettings = LogSettings(),
    commandTimeout: Duration = .seconds(30)
  ) {
    self.etcd = etcd
    self.mappings = mappings
    self.presence = presence
    self.metrics = metrics
    self.state = state
    self.wait = wait
    self.log = log
    self.commandTimeout = commandTimeout
  }

  /// The default path of the configuration file, `/etc/etcsync/etcsync.yaml`, unless
  /// `ETCSYNC_CONFIG` names another.
  public static func defaultPath(environment: [String: String]) -> String {
    if let path = environment["ETCSYNC_CONFIG"], !path.isEmpty { return path }
    return "/etc/etcsync/etcsync.yaml"
  }

  /// The mapping with this name.
  public func mapping(named name: String) -> Mapping? {
    self.mappings.first { $0.name == name }
  }

  /// The quiescence that applies to `mapping`: its own, else the global one.
  public func wait(for mapping: Mapping) -> WaitSettings? {
    mapping.wait ?? self.wait
  }

  /// The command timeout that applies to `mapping`: its own, else the global one.
  public func commandTimeout(for mapping: Mapping) -> Duration {
    mapping.commandTimeout ?? self.commandTimeout
  }

  /// `mapping` with the global `wait` and `commandTimeout` filled in where it has none, so
  /// that comparing two of them shows whether the mapping's behaviour changed.
  public func effective(_ mapping: Mapping) -> Mapping {
    var mapping = mapping
    mapping.wait = self.wait(for: mapping)
    mapping.commandTimeout = self.commandTimeout(for: mapping)
    return mapping
  }

  /// What a reload (SIGHUP) changes, mapping by mapping, from `previous` to this
  /// configuration. Mappings are matched by name and compared with their effective
  /// settings; `unchanged` ones can keep running.
  public func mappingChanges(from previous: AgentConfiguration) -> MappingChanges {
    var changes = MappingChanges()
    for mapping in self.mappings {
      guard let old = previous.mapping(named: mapping.name) else {
        changes.added.append(mapping)
        continue
      }
      if previous.effective(old) == self.effective(mapping) {
        changes.unchanged.append(mapping)
      } else {
        changes.changed.append(mapping)
      }
    }
    changes.removed = previous.mappings.filter { self.mapping(named: $0.name) == nil }
    return changes
  }
}

/// The mappings a configuration reload adds, removes, changes and leaves alone.
public struct MappingChanges: Sendable, Equatable {
  /// Mappings whose name is new.
  public var added: [Mapping] = []
  /// Mappings of the old configuration whose name is gone.
  public var removed: [Mapping] = []
  /// Mappings whose effective settings differ (the new version).
  public var changed: [Mapping] = []
  /// Mappings that are the same in both.
  public var unchanged: [Mapping] = []

  /// Creates an empty set of changes.
  public init() {}
}

/// Where the agent keeps its state file.
public struct StateSettings: Sendable, Equatable {
  /// An absolute directory, `/var/lib/etcsync` by default. It must not lie inside a
  /// mapping's destination, nor contain one.
  public var dir: String

  /// The default state directory.
  public init(dir: String = "/var/lib/etcsync") {
    self.dir = dir
  }
}

/// Quiescence, with consul-template's meaning: after a change, wait until no further change
/// has come for `min`, but never longer than `max` after the first one.
public struct WaitSettings: Sendable, Equatable {
  /// The quiet time that ends a burst.
  public var min: Duration
  /// The longest a burst may delay a render; at least `min`.
  public var max: Duration

  /// Quiescence of `min`, bounded by `max` (by default four times `min`).
  public init(min: Duration, max: Duration? = nil) {
    self.min = min
    self.max = max ?? min * 4
  }
}
