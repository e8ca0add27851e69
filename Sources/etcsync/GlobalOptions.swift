import ArgumentParser
import EtcSync
import EtcdClient
import Foundation
import Logging

/// Options every subcommand shares. Each also has an `ETCSYNC_*` variable and a key in the
/// configuration file; flags win over the environment, which wins over the file.
struct GlobalOptions: ParsableArguments {
  @Option(name: [.short, .customLong("config")], help: "The configuration file (default: $ETCSYNC_CONFIG or /etc/etcsync/etcsync.yaml).")
  var config: String?
  @Option(parsing: .singleValue, help: "An etcd client URL; repeat for several members.")
  var endpoints: [String] = []
  @Option(help: "etcd user name.") var user: String?
  @Option(help: "File holding the etcd password.") var passwordFile: String?
  @Option(help: "CA bundle for etcd's certificates.") var caFile: String?
  @Option(help: "Client certificate.") var certFile: String?
  @Option(help: "Client certificate's key.") var keyFile: String?
  @Option(help: "Log format: text or json.") var logFormat: String?
  @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel: String?
  @Option(help: "Directory of the state file.") var stateDir: String?

  /// Loads the configuration with flags > environment > file > defaults, and bootstraps
  /// logging. Exits with status 2 on any configuration error, naming file, line and field.
  func load(checkFiles: Bool = false, fileOptional: Bool = false) throws -> (AgentConfiguration, Logger) {
    do {
      let configuration = try self.configuration(checkFiles: checkFiles, fileOptional: fileOptional)
      return (configuration, Self.bootstrap(configuration.log))
    } catch {
      FileHandle.standardError.write(Data("etcsync: \(error)\n".utf8))
      throw ExitCode(2)
    }
  }

  /// Loads the configuration (flags > environment > file > defaults) without touching logging.
  /// With `fileOptional` (`etcsync status`), a default configuration file that does not exist
  /// is no error: flags and the environment are enough to reach etcd.
  func configuration(checkFiles: Bool = false, fileOptional: Bool = false) throws(ConfigurationError) -> AgentConfiguration {
    let environment = ProcessInfo.processInfo.environment
    // The environment's variables are applied by `load`, under these flags.
    let flags: [ConfigurationOverrides.Setting: String?] = [
      .user: self.user, .passwordFile: self.passwordFile, .caFile: self.caFile, .certFile: self.certFile,
      .keyFile: self.keyFile, .stateDir: self.stateDir, .logFormat: self.logFormat, .logLevel: self.logLevel,
    ]
    let overrides = try ConfigurationOverrides(flags: flags.compactMapValues { $0 }, endpoints: self.endpoints)
    let path = self.config ?? AgentConfiguration.defaultPath(environment: environment)
    if fileOptional, self.config == nil, environment["ETCSYNC_CONFIG"] == nil, !FileManager.default.fileExists(atPath: path) {
      return try AgentConfiguration.load(yaml: "{}", sourceName: "<defaults>", environment: environment, overrides: overrides)
    }
    return try AgentConfiguration.load(path: path, environment: environment, overrides: overrides, checkFiles: checkFiles)
  }

  private static func bootstrap(_ settings: LogSettings) -> Logger {
    LoggingSystem.bootstrap { label in
      var handler: any LogHandler = settings.format == .json ? JSONLogHandler(label: label) : TextLogHandler.standardError(label: label)
      handler.logLevel = settings.level
      return handler
    }
    return Logger(label: "etcsync")
  }
}

/// A duration given on the command line, in the configuration's Go-style form (`10s`,
/// `1m30s`, `500ms`), read by the configuration's own parser (``GoDuration``). A bare number
/// (`10`) is refused with the parser's message, the same for every duration flag:
/// `The value '10' is invalid for '--timeout <timeout>': "10" has no unit; …`.
struct DurationFlag: CustomStringConvertible, Sendable {
  let duration: Duration
  /// As it was written (also how help shows a default).
  let description: String

  /// A default: `seconds` written as `10s`.
  init(seconds: Int) {
    self.duration = .seconds(seconds)
    self.description = "\(seconds)s"
  }

  /// Parses a flag's value (the `transform` of every duration option). Every one is a
  /// timeout, so zero (`0`, `0s`) is refused: it would give up before trying.
  init(parsing text: String) throws(DurationParseError) {
    self.duration = try GoDuration.parse(text)
    self.description = text
    if self.duration == .zero {
      throw DurationParseError("\"\(text)\" is zero; a timeout must be more than 0, such as \"10s\" or \"500ms\"")
    }
  }

  /// The `transform` of every duration option.
  static func parse(_ text: String) throws -> DurationFlag {
    try DurationFlag(parsing: text)
  }

  /// How every duration flag's help ends.
  static let helpForm = "a duration such as 10s, 1m30s or 500ms, as in the configuration; a bare number or 0 is refused"
}

/// Runs `body` with a client for the configuration; exit 3 when etcd is unreachable.
func withAgentClient<T: Sendable>(_ configuration: AgentConfiguration, logger: Logger, timeout: Duration?,
                                  _ body: (EtcdClient) async throws -> T) async throws -> T {
  var clientConfiguration: EtcdConfiguration
  do {
    clientConfiguration = try configuration.etcd.clientConfiguration()
  } catch {
    FileHandle.standardError.write(Data("etcsync: \(error)\n".utf8))
    throw ExitCode(2)
  }
  if let timeout { clientConfiguration.dialTimeout = timeout }
  return try await withEtcdClient(clientConfiguration, logger: logger) { client in
    do {
      try await client.connect()
    } catch {
      FileHandle.standardError.write(Data("etcsync: etcd unreachable at \(configuration.etcd.endpoints.joined(separator: ", ")): \(error)\n".utf8))
      throw ExitCode(3)
    }
    return try await body(client)
  }
}
