import Logging

/// The configuration as the file gives it, before overrides and cross-field checks. Auth is
/// kept in parts because the user may come from the file and the password file from the
/// environment.
struct DecodedFile {
  var configuration = AgentConfiguration()
  var authUser: String?
  var authPasswordFile: String?
}

extension AgentConfiguration {
  static let topLevelKeys = [
    "etcd", "mappings", "presence", "metrics", "state", "wait", "log", "commandTimeout", "keyPrefix",
    "driftCheckInterval",
    "exec",
  ]

  /// Reads the whole file. Each field is checked for its own type and range here; checks
  /// that involve several fields or sources come after the overrides (see `validate`).
  static func decode(_ root: ConfigNode) throws(ConfigurationError) -> DecodedFile {
    var decoded = DecodedFile()
    if root.isNull { return decoded }
    let top = try root.keyed(self.topLevelKeys, allowExtensions: true)
    if let node = top["etcd"] { try Self.decodeEtcd(node, into: &decoded) }
    let keyPrefix = try top["keyPrefix"]?.keyPrefix()
    if let node = top["mappings"] {
      for element in try node.list(expected: "a list of mappings") {
        decoded.configuration.mappings.append(try Mapping(decoding: element, keyPrefix: keyPrefix))
      }
    }
    if let node = top["presence"] { decoded.configuration.presence = try PresenceSettings(decoding: node) }
    if let node = top["metrics"] { decoded.configuration.metrics = try MetricsSettings(decoding: node) }
    if let node = top["state"] { decoded.configuration.state = try StateSettings(decoding: node) }
    if let node = top["wait"] { decoded.configuration.wait = try WaitSettings(decoding: node) }
    if let node = top["log"] { decoded.configuration.log = try LogSettings(decoding: node) }
    if let node = top["commandTimeout"] { decoded.configuration.commandTimeout = try node.positiveDuration() }
    if let node = top["exec"] { decoded.configuration.exec = try ExecSettings(decoding: node) }
    if let node = top["driftCheckInterval"] { decoded.configuration.driftCheckInterval = try node.driftCheckInterval() }
    return decoded
  }

  private static func decodeEtcd(_ node: ConfigNode, into decoded: inout DecodedFile) throws(ConfigurationError) {
    let keys = [
      "endpoints", "dialTimeout", "requestTimeout", "keepaliveTime", "keepaliveTimeout", "tls", "auth", "watch",
    ]
    let map = try node.keyed(keys)
    var etcd = EtcdSettings()
    if let node = map["endpoints"] { etcd.endpoints = try node.endpoints() }
    if let node = map["dialTimeout"] { etcd.dialTimeout = try node.positiveDuration() }
    if let node = map["requestTimeout"] { etcd.requestTimeout = try node.positiveDuration() }
    if let node = map["keepaliveTime"] { etcd.keepaliveTime = try node.positiveDuration() }
    if let node = map["keepaliveTimeout"] { etcd.keepaliveTimeout = try node.positiveDuration() }
    if let mode = try map["watch"]?.oneOf(WatchMode.self, ignoringCase: false) { etcd.watch = mode }
    if let node = map["tls"] {
      let tls = try node.keyed(["ca", "cert", "key", "serverName"])
      etcd.tls = TLSSettings(
        ca: try tls["ca"]?.filePath(), cert: try tls["cert"]?.filePath(), key: try tls["key"]?.filePath(),
        serverName: try tls.string("serverName"))
    }
    if let node = map["auth"] {
      let auth = try node.keyed(["user", "passwordFile"])
      decoded.authUser = try auth.string("user")
      decoded.authPasswordFile = try auth["passwordFile"]?.filePath()
      if decoded.authUser == nil && decoded.authPasswordFile == nil {
        throw auth.missing("user", "etcd.auth needs a user and a passwordFile (or leave auth out)")
      }
    }
    decoded.configuration.etcd = etcd
  }
}

extension ConfigNode {
  /// `driftCheckInterval`: `0` (off) or at least one second (each check reads every file).
  func driftCheckInterval() throws(ConfigurationError) -> Duration {
    let duration = try self.duration()
    guard duration == .zero || duration >= .seconds(1) else {
      throw self.invalid("0 (no periodic check) or a duration of at least 1s such as \"60s\"")
    }
    return duration
  }

  /// A duration above zero.
  func positiveDuration() throws(ConfigurationError) -> Duration {
    let duration = try self.duration()
    guard duration > .zero else { throw self.invalid("a duration above 0s such as \"5s\"") }
    return duration
  }

  /// A file path; a relative one is taken relative to the configuration file's directory.
  func filePath() throws(ConfigurationError) -> String {
    let text = try self.nonEmptyString(expected: "a file path")
    return ConfigFiles.resolve(text, against: self.context.baseDirectory)
  }

  /// An absolute path without `.` or `..` segments, normalized (no trailing or doubled `/`).
  func absolutePath(example: String) throws(ConfigurationError) -> String {
    let text = try self.nonEmptyString(expected: "an absolute path such as \"\(example)\"")
    guard let path = ValueSyntax.normalizedAbsolute(text) else {
      if text.hasPrefix("/") {
        throw self.invalid("an absolute path without \".\" or \"..\" segments")
      }
      throw self.invalid("an absolute path such as \"\(example)\"")
    }
    return path
  }

  /// A list of endpoints, or one string of comma-separated endpoints.
  func endpoints() throws(ConfigurationError) -> [String] {
    var endpoints: [(String, ConfigNode)] = []
    if self.isScalar {
      let text = try self.string(expected: "a list of endpoints")
      endpoints = ConfigurationOverrides.splitList(text).map { ($0, self) }
    } else {
      for element in try self.list(expected: "a list of endpoints such as [\"http://127.0.0.1:2379\"]") {
        endpoints.append((try element.nonEmptyString(expected: "an endpoint"), element))
      }
    }
    guard !endpoints.isEmpty else { throw self.invalid("at least one endpoint") }
    for (text, node) in endpoints {
      if case .failure(let error) = ValueSyntax.endpoint(text) {
        throw node.error(
          .invalidValue,
          "expected an endpoint such as \"https://10.0.0.1:2379\", got \"\(text)\": \(error.message)")
      }
    }
    return endpoints.map(\.0)
  }
}

extension PresenceSettings {
  init(decoding node: ConfigNode) throws(ConfigurationError) {
    let map = try node.keyed(["prefix", "name", "ttl", "takeOver"])
    self.init(name: ConfigFiles.hostName())
    if let prefix = try map.string("prefix") { self.prefix = prefix }
    if let nameNode = map["name"] {
      let name = try nameNode.nonEmptyString(expected: "an agent name")
      guard !name.contains("/") else { throw nameNode.invalid("a name without \"/\" (one key segment)") }
      self.name = name
    }
    if let ttlNode = map["ttl"] {
      let ttl = try ttlNode.duration()
      guard ttl >= .seconds(2) else { throw ttlNode.invalid("a TTL of at least 2s") }
      guard ttl.components.attoseconds == 0 else {
        throw ttlNode.invalid("a whole number of seconds (etcd leases count in seconds)")
      }
      self.ttl = ttl
    }
    if let takeOver = try map.bool("takeOver") { self.takeOver = takeOver }
  }
}

extension MetricsSettings {
  init(decoding node: ConfigNode) throws(ConfigurationError) {
    let map = try node.keyed(["listen"])
    self.init()
    if let listenNode = map["listen"] {
      let listen = try listenNode.nonEmptyString(expected: "host:port such as \"127.0.0.1:9464\"")
      if case .failure(let error) = ValueSyntax.listenAddress(listen) {
        throw listenNode.invalid("host:port such as \"127.0.0.1:9464\"", hint: error.message)
      }
      self.listen = listen
    }
  }
}

extension StateSettings {
  init(decoding node: ConfigNode) throws(ConfigurationError) {
    let map = try node.keyed(["dir"])
    self.init()
    if let dir = try map["dir"]?.absolutePath(example: "/var/lib/etcsync") { self.dir = dir }
  }
}

extension LogSettings {
  init(decoding node: ConfigNode) throws(ConfigurationError) {
    let map = try node.keyed(["format", "level"])
    self.init()
    if let format = try map["format"]?.oneOf(Format.self, ignoringCase: true) { self.format = format }
    if let level = try map["level"]?.oneOf(Logger.Level.self, aliases: ["warn": .warning], ignoringCase: true) {
      self.level = level
    }
  }
}

extension WaitSettings {
  /// `{min: 200ms, max: 2s}`, or consul-template's string form `"200ms:2s"`; without a max,
  /// the max is four times the min.
  init(decoding node: ConfigNode) throws(ConfigurationError) {
    let minimum: Duration
    var maximum: Duration?
    var maxNode = node
    if node.isScalar {
      let text = try node.string()
      let parts = text.split(separator: ":", omittingEmptySubsequences: false)
      guard parts.count <= 2 else { throw node.invalid("{min: 200ms, max: 2s} or \"200ms:2s\"") }
      do {
        minimum = try GoDuration.parse(String(parts[0]))
        if parts.count == 2 { maximum = try GoDuration.parse(String(parts[1])) }
      } catch {
        throw node.error(.invalidValue, "expected {min: 200ms, max: 2s} or \"200ms:2s\": \(error.message)")
      }
    } else {
      let map = try node.keyed(["min", "max"])
      minimum = try map.required("min", "the quiet time, such as min: 200ms").duration()
      if let node = map["max"] {
        maximum = try node.duration()
        maxNode = node
      }
    }
    self.init(min: minimum, max: maximum)
    guard self.min <= self.max else {
      throw maxNode.error(
        .invalidValue,
        "max (\(GoDuration.format(self.max))) must not be less than min (\(GoDuration.format(self.min)))")
    }
  }
}
