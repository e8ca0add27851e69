import Logging

/// Settings given outside the configuration file, by command-line flags or `ETCSYNC_*`
/// environment variables. A non-nil value replaces the file's; precedence is flags >
/// environment > file > defaults.
///
/// The command line fills one from its flags (`--endpoints`, `--user`, `--password-file`,
/// `--ca-file`, `--cert-file`, `--key-file`, `--log-format`, `--log-level`, `--state-dir`);
/// ``init(environment:)`` reads the variables.
public struct ConfigurationOverrides: Sendable, Equatable {
  /// Replaces `etcd.endpoints`.
  public var endpoints: [String]?
  /// Replaces `etcd.auth.user`.
  public var user: String?
  /// Replaces `etcd.auth.passwordFile`.
  public var passwordFile: String?
  /// Replaces `etcd.tls.ca`.
  public var caFile: String?
  /// Replaces `etcd.tls.cert`.
  public var certFile: String?
  /// Replaces `etcd.tls.key`.
  public var keyFile: String?
  /// Replaces `log.format`.
  public var logFormat: LogSettings.Format?
  /// Replaces `log.level`.
  public var logLevel: Logger.Level?
  /// Replaces `state.dir`.
  public var stateDir: String?

  /// Overrides of the given settings; `nil` leaves a setting alone.
  public init(
    endpoints: [String]? = nil,
    user: String? = nil,
    passwordFile: String? = nil,
    caFile: String? = nil,
    certFile: String? = nil,
    keyFile: String? = nil,
    logFormat: LogSettings.Format? = nil,
    logLevel: Logger.Level? = nil,
    stateDir: String? = nil
  ) {
    self.endpoints = endpoints
    self.user = user
    self.passwordFile = passwordFile
    self.caFile = caFile
    self.certFile = certFile
    self.keyFile = keyFile
    self.logFormat = logFormat
    self.logLevel = logLevel
    self.stateDir = stateDir
  }

  /// Reads `ETCSYNC_ENDPOINTS` (comma-separated), `ETCSYNC_USER`, `ETCSYNC_PASSWORD_FILE`,
  /// `ETCSYNC_CA_FILE`, `ETCSYNC_CERT_FILE`, `ETCSYNC_KEY_FILE`, `ETCSYNC_LOG_FORMAT`,
  /// `ETCSYNC_LOG_LEVEL` and `ETCSYNC_STATE_DIR`. An empty variable counts as unset. Errors
  /// name the variable.
  public init(environment: [String: String]) throws(ConfigurationError) {
    try self.init(.environment) { setting in
      guard let text = environment[OverrideSource.environment.name(setting)].map({ String($0.trimmedWhitespace) }),
        !text.isEmpty
      else { return nil }
      return text
    }
  }

  /// The command line's flags, as given (`--endpoints` may be repeated, each value
  /// comma-separated), read as their variables are; errors name the flag. A flag given
  /// empty is refused when the configuration is loaded.
  public init(flags: [Setting: String], endpoints: [String] = []) throws(ConfigurationError) {
    try self.init(.flags) { setting in
      setting == .endpoints ? (endpoints.isEmpty ? nil : endpoints.joined(separator: ",")) : flags[setting]
    }
  }

  /// The one reader of override values, whatever carries them: `text` gives a setting's
  /// text, nil when it is not set.
  private init(_ source: OverrideSource, text: (Setting) -> String?) throws(ConfigurationError) {
    self.init()
    if let list = text(.endpoints).map(Self.splitList) {
      // An empty variable is unset; an empty flag is refused when it is applied.
      self.endpoints = list.isEmpty && source == .environment ? nil : list
    }
    self.user = text(.user)
    self.passwordFile = text(.passwordFile)
    self.caFile = text(.caFile)
    self.certFile = text(.certFile)
    self.keyFile = text(.keyFile)
    self.stateDir = text(.stateDir)
    if let format = text(.logFormat) { self.logFormat = try Self.parseLogFormat(format, source: source) }
    if let level = text(.logLevel) { self.logLevel = try Self.parseLogLevel(level, source: source) }
  }

  /// Splits `a, b,,c` into `["a", "b", "c"]`.
  static func splitList(_ text: String) -> [String] {
    text.split(separator: ",").map { String($0.trimmedWhitespace) }.filter { !$0.isEmpty }
  }

  static func parseLogFormat(_ text: String, source: OverrideSource) throws(ConfigurationError) -> LogSettings.Format {
    guard let format = LogSettings.Format(rawValue: text.lowercased()) else {
      throw ConfigurationError(
        .invalidValue, field: source.name(.logFormat),
        message: "expected \"text\" or \"json\", got \"\(text)\"")
    }
    return format
  }

  static func parseLogLevel(_ text: String, source: OverrideSource) throws(ConfigurationError) -> Logger.Level {
    guard let level = LogSettings.level(named: text) else {
      let names = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
      throw ConfigurationError(
        .invalidValue, field: source.name(.logLevel), message: "expected one of \(names), got \"\(text)\"")
    }
    return level
  }
}

extension LogSettings {
  /// A level by name, in any case; `warn` is taken for `warning`.
  static func level(named text: String) -> Logger.Level? {
    let name = text.lowercased()
    return name == "warn" ? .warning : Logger.Level(rawValue: name)
  }
}

extension ConfigurationOverrides {
  /// A setting that a flag and a variable can replace.
  public enum Setting: Sendable, Hashable, CaseIterable {
    case endpoints, user, passwordFile, caFile, certFile, keyFile, logFormat, logLevel, stateDir
  }
}

/// Where an override came from, to name it in errors.
enum OverrideSource {
  case environment, flags

  typealias Setting = ConfigurationOverrides.Setting

  /// The variable or flag that carries `setting`.
  func name(_ setting: Setting) -> String {
    let (variable, flag): (String, String) =
      switch setting {
      case .endpoints: ("ETCSYNC_ENDPOINTS", "--endpoints")
      case .user: ("ETCSYNC_USER", "--user")
      case .passwordFile: ("ETCSYNC_PASSWORD_FILE", "--password-file")
      case .caFile: ("ETCSYNC_CA_FILE", "--ca-file")
      case .certFile: ("ETCSYNC_CERT_FILE", "--cert-file")
      case .keyFile: ("ETCSYNC_KEY_FILE", "--key-file")
      case .logFormat: ("ETCSYNC_LOG_FORMAT", "--log-format")
      case .logLevel: ("ETCSYNC_LOG_LEVEL", "--log-level")
      case .stateDir: ("ETCSYNC_STATE_DIR", "--state-dir")
      }
    return self == .environment ? variable : flag
  }

  /// The configuration field `setting` replaces.
  static func field(_ setting: Setting) -> String {
    switch setting {
    case .endpoints: "etcd.endpoints"
    case .user: "etcd.auth.user"
    case .passwordFile: "etcd.auth.passwordFile"
    case .caFile: "etcd.tls.ca"
    case .certFile: "etcd.tls.cert"
    case .keyFile: "etcd.tls.key"
    case .logFormat: "log.format"
    case .logLevel: "log.level"
    case .stateDir: "state.dir"
    }
  }
}

extension StringProtocol {
  /// Without leading and trailing whitespace.
  fileprivate var trimmedWhitespace: SubSequence {
    var s = self[...]
    while let c = s.first, c.isWhitespace { s = s.dropFirst() }
    while let c = s.last, c.isWhitespace { s = s.dropLast() }
    return s
  }
}
