import EtcSync
import Foundation
import Logging
import Testing

@Suite("Precedence: flags > environment > file > defaults")
struct OverrideTests {
  static let file = """
    etcd:
      endpoints: [http://file:2379]
      tls: {ca: /file/ca.pem, cert: /file/cert.pem, key: /file/key.pem}
      auth: {user: file-user, passwordFile: /file/password}
    log: {format: text, level: notice}
    state: {dir: /file/state}
    """

  /// One setting through each source: its variable, a flag value, and how to read it back.
  struct Setting: Sendable, CustomStringConvertible {
    var variable: String
    var environmentValue: String
    var flags: ConfigurationOverrides
    var read: @Sendable (AgentConfiguration) -> String?
    var fileValue: String
    var environmentResult: String
    var flagResult: String
    var description: String { self.variable }
  }

  static let settings: [Setting] = [
    Setting(
      variable: "ETCSYNC_ENDPOINTS", environmentValue: "http://env-1:2379, http://env-2:2379",
      flags: ConfigurationOverrides(endpoints: ["http://flag:2379"]),
      read: { $0.etcd.endpoints.joined(separator: ",") }, fileValue: "http://file:2379",
      environmentResult: "http://env-1:2379,http://env-2:2379", flagResult: "http://flag:2379"),
    Setting(
      variable: "ETCSYNC_USER", environmentValue: "env-user", flags: ConfigurationOverrides(user: "flag-user"),
      read: { $0.etcd.auth?.user }, fileValue: "file-user", environmentResult: "env-user", flagResult: "flag-user"),
    Setting(
      variable: "ETCSYNC_PASSWORD_FILE", environmentValue: "/env/password",
      flags: ConfigurationOverrides(passwordFile: "/flag/password"), read: { $0.etcd.auth?.passwordFile },
      fileValue: "/file/password", environmentResult: "/env/password", flagResult: "/flag/password"),
    Setting(
      variable: "ETCSYNC_CA_FILE", environmentValue: "/env/ca.pem", flags: ConfigurationOverrides(caFile: "/flag/ca.pem"),
      read: { $0.etcd.tls?.ca }, fileValue: "/file/ca.pem", environmentResult: "/env/ca.pem", flagResult: "/flag/ca.pem"),
    Setting(
      variable: "ETCSYNC_CERT_FILE", environmentValue: "/env/cert.pem",
      flags: ConfigurationOverrides(certFile: "/flag/cert.pem"), read: { $0.etcd.tls?.cert },
      fileValue: "/file/cert.pem", environmentResult: "/env/cert.pem", flagResult: "/flag/cert.pem"),
    Setting(
      variable: "ETCSYNC_KEY_FILE", environmentValue: "/env/key.pem", flags: ConfigurationOverrides(keyFile: "/flag/key.pem"),
      read: { $0.etcd.tls?.key }, fileValue: "/file/key.pem", environmentResult: "/env/key.pem", flagResult: "/flag/key.pem"),
    Setting(
      variable: "ETCSYNC_LOG_FORMAT", environmentValue: "JSON", flags: ConfigurationOverrides(logFormat: .text),
      read: { $0.log.format.rawValue }, fileValue: "text", environmentResult: "json", flagResult: "text"),
    Setting(
      variable: "ETCSYNC_LOG_LEVEL", environmentValue: "warn", flags: ConfigurationOverrides(logLevel: .trace),
      read: { $0.log.level.rawValue }, fileValue: "notice", environmentResult: "warning", flagResult: "trace"),
    Setting(
      variable: "ETCSYNC_STATE_DIR", environmentValue: "/env/state/", flags: ConfigurationOverrides(stateDir: "/flag/state"),
      read: { $0.state.dir }, fileValue: "/file/state", environmentResult: "/env/state", flagResult: "/flag/state"),
  ]

  @Test("the file wins over the defaults, the environment over the file, flags over both", arguments: Self.settings)
  func precedence(setting: Setting) throws {
    let environment = [setting.variable: setting.environmentValue]
    #expect(setting.read(try loadConfiguration(Self.file)) == setting.fileValue)
    #expect(setting.read(try loadConfiguration(Self.file, environment: environment)) == setting.environmentResult)
    #expect(setting.read(try loadConfiguration(Self.file, overrides: setting.flags)) == setting.flagResult)
    let both = try loadConfiguration(Self.file, environment: environment, overrides: setting.flags)
    #expect(setting.read(both) == setting.flagResult)
  }

  @Test("empty variables and unrelated ones change nothing")
  func emptyVariables() throws {
    let environment = ["ETCSYNC_ENDPOINTS": " ", "ETCSYNC_USER": "", "ETCSYNC_LOG_LEVEL": "", "PATH": "/bin"]
    #expect(try loadConfiguration(Self.file, environment: environment) == loadConfiguration(Self.file))
  }

  @Test(
    "bad values in the environment name the variable",
    arguments: [
      ("ETCSYNC_LOG_LEVEL", "loud", "ETCSYNC_LOG_LEVEL: expected one of trace, debug, info, notice, warning, error, critical, got \"loud\""),
      ("ETCSYNC_LOG_FORMAT", "xml", "ETCSYNC_LOG_FORMAT: expected \"text\" or \"json\", got \"xml\""),
      ("ETCSYNC_ENDPOINTS", "http://a:2379,ftp://b", "ETCSYNC_ENDPOINTS: expected endpoints such as \"https://10.0.0.1:2379\", got \"ftp://b\": the scheme must be http:// or https://"),
      ("ETCSYNC_ENDPOINTS", "a:99999", "ETCSYNC_ENDPOINTS: expected endpoints such as \"https://10.0.0.1:2379\", got \"a:99999\": \"99999\" is not a port number (1-65535)"),
      ("ETCSYNC_STATE_DIR", "/../..", "ETCSYNC_STATE_DIR: expected a directory path, got \"/../..\""),
    ])
  func environmentErrors(variable: String, value: String, description: String) throws {
    let error = try #require(loadConfigurationError("", environment: [variable: value]))
    #expect(error.description == description)
    #expect(error.file == nil && error.line == nil)
    #expect(error.field == variable)
  }

  @Test("bad flag values name the flag")
  func flagErrors() throws {
    let endpoints = try #require(loadConfigurationError("", overrides: ConfigurationOverrides(endpoints: [])))
    #expect(endpoints.description == "--endpoints: expected at least one endpoint")
    let user = try #require(loadConfigurationError("", overrides: ConfigurationOverrides(user: "")))
    #expect(user.description == "--user: expected a non-empty value")
  }

  @Test("a user from the file pairs with a password file from the environment")
  func authFromTwoSources() throws {
    let configuration = try loadConfiguration(
      "etcd: {auth: {user: app}}", environment: ["ETCSYNC_PASSWORD_FILE": "/run/secrets/etcd"])
    #expect(configuration.etcd.auth == AuthSettings(user: "app", passwordFile: "/run/secrets/etcd"))
  }

  @Test("an unpaired user or password file names where it came from")
  func unpairedAuth() throws {
    let fromEnvironment = try #require(loadConfigurationError("", environment: ["ETCSYNC_USER": "app"]))
    #expect(
      fromEnvironment.description
        == "ETCSYNC_USER: a user needs a password file: set etcd.auth.passwordFile, ETCSYNC_PASSWORD_FILE or --password-file")
    let fromFlag = try #require(loadConfigurationError("", overrides: ConfigurationOverrides(passwordFile: "/p")))
    #expect(fromFlag.description == "--password-file: a password file needs a user: set etcd.auth.user, ETCSYNC_USER or --user")
  }

  @Test("TLS files from the environment turn TLS on; an unpaired certificate is named")
  func tlsFromEnvironment() throws {
    let configuration = try loadConfiguration("", environment: ["ETCSYNC_CA_FILE": "/ca.pem"])
    #expect(configuration.etcd.tls == TLSSettings(ca: "/ca.pem"))
    let error = try #require(loadConfigurationError("", environment: ["ETCSYNC_CERT_FILE": "/c.pem"]))
    #expect(error.field == "ETCSYNC_CERT_FILE")
    #expect(error.message.hasPrefix("a client certificate needs its key"))
  }

  @Test("a relative state directory flag is made absolute")
  func relativeStateDir() throws {
    let configuration = try loadConfiguration("", overrides: ConfigurationOverrides(stateDir: "./state/../state2"))
    #expect(configuration.state.dir.hasPrefix("/"))
    #expect(configuration.state.dir.hasSuffix("/state2"))
    #expect(!configuration.state.dir.contains(".."))
  }

  @Test("relative paths from variables and flags are taken from the current directory")
  func relativeOverridePaths() throws {
    let here = FileManager.default.currentDirectoryPath
    let configuration = try loadConfiguration(
      "", environment: ["ETCSYNC_CA_FILE": "tls/ca.pem"],
      overrides: ConfigurationOverrides(user: "u", passwordFile: "secret"))
    #expect(configuration.etcd.tls?.ca == here + "/tls/ca.pem")
    #expect(configuration.etcd.auth?.passwordFile == here + "/secret")
  }

  @Test("the environment is read into overrides")
  func readEnvironment() throws {
    let overrides = try ConfigurationOverrides(environment: [
      "ETCSYNC_ENDPOINTS": "a:1,,b:2 ", "ETCSYNC_USER": " u ", "ETCSYNC_PASSWORD_FILE": "/p",
      "ETCSYNC_CA_FILE": "/ca", "ETCSYNC_CERT_FILE": "/c", "ETCSYNC_KEY_FILE": "/k",
      "ETCSYNC_LOG_FORMAT": "json", "ETCSYNC_LOG_LEVEL": "Error", "ETCSYNC_STATE_DIR": "/s",
    ])
    #expect(
      overrides
        == ConfigurationOverrides(
          endpoints: ["a:1", "b:2"], user: "u", passwordFile: "/p", caFile: "/ca", certFile: "/c", keyFile: "/k",
          logFormat: .json, logLevel: .error, stateDir: "/s"))
  }

  @Test("flags alone can give the endpoints")
  func overrideEndpointsWithoutFile() throws {
    let configuration = try loadConfiguration("", overrides: ConfigurationOverrides(endpoints: ["https://a:2379"]))
    #expect(configuration.etcd.endpoints == ["https://a:2379"])
  }
}
