import Yams

/// Points errors found after decoding at the right place: the line of a field's value in the
/// file, or the variable or flag that replaced it.
struct FieldLocator {
  let sourceName: String
  let marks: [String: Mark]
  /// Field path → the variable or flag whose value it now holds.
  var overrides: [String: String] = [:]

  func error(_ code: ConfigurationError.Code, field: String, _ message: String) -> ConfigurationError {
    if let name = self.overrides[field] { return ConfigurationError(code, field: name, message: message) }
    let mark = self.mark(for: field)
    return ConfigurationError(
      code, file: self.sourceName, line: mark?.line, column: mark?.column, field: field, message: message)
  }

  /// The field's own position, else that of the closest enclosing field that has one.
  private func mark(for field: String) -> Mark? {
    var path = Substring(field)
    while true {
      if let mark = self.marks[String(path)] { return mark }
      guard let cut = path.lastIndex(where: { $0 == "." || $0 == "[" }) else { return self.marks[""] }
      path = path[..<cut]
    }
  }
}

extension DecodedFile {
  /// Replaces file values with the non-nil overrides, checking each and remembering where it
  /// came from.
  mutating func apply(
    _ overrides: ConfigurationOverrides, from source: OverrideSource, locator: inout FieldLocator
  ) throws(ConfigurationError) {
    func take(_ value: String?, _ setting: OverrideSource.Setting) throws(ConfigurationError) -> String? {
      guard let value else { return nil }
      guard !value.isEmpty else {
        throw ConfigurationError(.invalidValue, field: source.name(setting), message: "expected a non-empty value")
      }
      locator.overrides[OverrideSource.field(setting)] = source.name(setting)
      return value
    }
    if let endpoints = overrides.endpoints {
      try Self.checkEndpoints(endpoints, name: source.name(.endpoints))
      self.configuration.etcd.endpoints = endpoints
      locator.overrides["etcd.endpoints"] = source.name(.endpoints)
    }
    // Relative paths from flags and variables are relative to the current directory.
    let here = ConfigFiles.currentDirectory()
    func path(_ value: String?, _ setting: OverrideSource.Setting) throws(ConfigurationError) -> String? {
      try take(value, setting).map { ConfigFiles.resolve($0, against: here) }
    }
    if let user = try take(overrides.user, .user) { self.authUser = user }
    if let file = try path(overrides.passwordFile, .passwordFile) { self.authPasswordFile = file }
    var tls = self.configuration.etcd.tls ?? TLSSettings()
    if let file = try path(overrides.caFile, .caFile) { tls.ca = file }
    if let file = try path(overrides.certFile, .certFile) { tls.cert = file }
    if let file = try path(overrides.keyFile, .keyFile) { tls.key = file }
    if tls != TLSSettings() || self.configuration.etcd.tls != nil { self.configuration.etcd.tls = tls }
    if let format = overrides.logFormat { self.configuration.log.format = format }
    if let level = overrides.logLevel { self.configuration.log.level = level }
    if let dir = try take(overrides.stateDir, .stateDir) {
      guard let normalized = ValueSyntax.lexicallyNormalized(ConfigFiles.resolve(dir, against: here)) else {
        throw ConfigurationError(
          .invalidValue, field: source.name(.stateDir), message: "expected a directory path, got \"\(dir)\"")
      }
      self.configuration.state.dir = normalized
    }
  }

  private static func checkEndpoints(_ endpoints: [String], name: String) throws(ConfigurationError) {
    guard !endpoints.isEmpty else {
      throw ConfigurationError(.invalidValue, field: name, message: "expected at least one endpoint")
    }
    for endpoint in endpoints {
      if case .failure(let error) = ValueSyntax.endpoint(endpoint) {
        throw ConfigurationError(
          .invalidValue, field: name,
          message: "expected endpoints such as \"https://10.0.0.1:2379\", got \"\(endpoint)\": \(error.message)")
      }
    }
  }

  /// The configuration with authentication assembled from its parts, which must come as a
  /// pair.
  func finish(_ locator: FieldLocator) throws(ConfigurationError) -> AgentConfiguration {
    var configuration = self.configuration
    switch (self.authUser, self.authPasswordFile) {
    case (nil, nil):
      configuration.etcd.auth = nil
    case (let user?, let passwordFile?):
      configuration.etcd.auth = AuthSettings(user: user, passwordFile: passwordFile)
    case (_?, nil):
      throw locator.error(
        .missingKey, field: "etcd.auth.user",
        "a user needs a password file: set etcd.auth.passwordFile, ETCSYNC_PASSWORD_FILE or --password-file")
    case (nil, _?):
      throw locator.error(
        .missingKey, field: "etcd.auth.passwordFile",
        "a password file needs a user: set etcd.auth.user, ETCSYNC_USER or --user")
    }
    return configuration
  }
}

extension AgentConfiguration {
  /// Checks that involve several fields or sources.
  func validate(_ locator: FieldLocator) throws(ConfigurationError) {
    try self.validateEtcd(locator)
    try self.validateNames(locator)
    try self.validateDestinations(locator)
  }

  private func validateEtcd(_ locator: FieldLocator) throws(ConfigurationError) {
    let secure = Set(self.etcd.endpoints.map { (try? ValueSyntax.endpoint($0).get()) ?? false })
    if secure.count > 1 && self.etcd.tls == nil {
      throw locator.error(
        .conflict, field: "etcd.endpoints",
        "the endpoints mix http:// and https://; use one scheme for all members")
    }
    if let tls = self.etcd.tls {
      if tls.cert != nil && tls.key == nil {
        throw locator.error(
          .missingKey, field: "etcd.tls.cert",
          "a client certificate needs its key: set etcd.tls.key, ETCSYNC_KEY_FILE or --key-file")
      }
      if tls.key != nil && tls.cert == nil {
        throw locator.error(
          .missingKey, field: "etcd.tls.key",
          "a client key needs its certificate: set etcd.tls.cert, ETCSYNC_CERT_FILE or --cert-file")
      }
    }
  }

  private func validateNames(_ locator: FieldLocator) throws(ConfigurationError) {
    var seen: [String: Int] = [:]
    for (index, mapping) in self.mappings.enumerated() {
      if let first = seen[mapping.name] {
        throw locator.error(
          .conflict, field: "mappings[\(index)].name",
          "\"\(mapping.name)\" is also the name of mappings[\(first)]; mapping names must be unique")
      }
      seen[mapping.name] = index
    }
  }

  /// No destination may equal, contain or lie inside another, nor overlap the state
  /// directory.
  private func validateDestinations(_ locator: FieldLocator) throws(ConfigurationError) {
    let segments = self.mappings.map { ValueSyntax.absoluteSegments($0.dest) ?? [] }
    for later in segments.indices {
      for earlier in segments.indices where earlier < later {
        guard let relation = Self.relation(segments[later], segments[earlier]) else { continue }
        let other = "the destination of mappings[\(earlier)] (\"\(self.mappings[earlier].name)\")"
        let dest = self.mappings[later].dest
        let message: String =
          switch relation {
          case .same: "\"\(dest)\" is also \(other)"
          case .inside: "\"\(dest)\" lies inside \"\(self.mappings[earlier].dest)\", \(other)"
          case .contains: "\"\(dest)\" contains \"\(self.mappings[earlier].dest)\", \(other)"
          }
        throw locator.error(.conflict, field: "mappings[\(later)].dest", message + "; destinations must not overlap")
      }
    }
    let state = ValueSyntax.absoluteSegments(self.state.dir) ?? []
    for (index, mapping) in self.mappings.enumerated() where Self.relation(state, segments[index]) != nil {
      throw locator.error(
        .conflict, field: "state.dir",
        "the state directory \"\(self.state.dir)\" overlaps \"\(mapping.dest)\", "
          + "the destination of mappings[\(index)] (\"\(mapping.name)\")")
    }
  }

  private enum Relation { case same, inside, contains }

  /// How path `a` relates to path `b`, if they overlap.
  private static func relation(_ a: [Substring], _ b: [Substring]) -> Relation? {
    if a == b { return .same }
    if a.count > b.count, Array(a.prefix(b.count)) == b { return .inside }
    if b.count > a.count, Array(b.prefix(a.count)) == a { return .contains }
    return nil
  }
}
