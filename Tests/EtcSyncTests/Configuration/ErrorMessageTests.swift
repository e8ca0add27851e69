import EtcSync
import Testing

/// Exact error texts: file, line, column, field and what was expected.
@Suite("Error messages")
struct ErrorMessageTests {
  static let cases: [(yaml: String, description: String)] = [
    (
      """
      mappings:
        - name: a
          key: /a
          dest: /etc/a
        - name: b
          key: /b
          dest: /etc/b
          mode: "rw-r--r--"
      """,
      #"etcsync.yaml:8:11: mappings[1].mode: expected an octal file mode such as "0644", got "rw-r--r--""#
    ),
    (
      "mappings:\n  - name: a\n    key: /a\n    dest: /etc/a\n    reloadd: [x]\n",
      #"etcsync.yaml:5:5: mappings[0].reloadd: unknown key; did you mean "reload"?"#
    ),
    (
      "wait:\n  min: 5s\n  max: 2s\n",
      "etcsync.yaml:3:8: wait.max: max (2s) must not be less than min (5s)"
    ),
    (
      "mappings:\n  - {name: a, key: /a, dest: /a}\n  - {name: b, key: /b, dest: /b, wait: {min: 200}}\n",
      #"etcsync.yaml:3:46: mappings[1].wait.min: expected a duration such as "200ms" or "2s": "200" has no unit; write it with one, such as "200s" or "200ms""#
    ),
    (
      "mappings:\n  - key: /a\n    dest: /a\n",
      #"etcsync.yaml:2:5: mappings[0].name: missing; every mapping needs a unique name such as "nginx-upstreams""#
    ),
    (
      "etcd:\n  endpoints: [ftp://x]\n",
      #"etcsync.yaml:2:15: etcd.endpoints[0]: expected an endpoint such as "https://10.0.0.1:2379", got "ftp://x": the scheme must be http:// or https://"#
    ),
    (
      "mappings: {name: a}\n",
      "etcsync.yaml:1:11: mappings: expected a list of mappings, got a mapping"
    ),
    (
      "- a\n",
      "etcsync.yaml:1:1: expected a mapping with the keys etcd, mappings, presence, metrics, state, wait, log, commandTimeout, keyPrefix, driftCheckInterval, exec, got a list"
    ),
    (
      "mappings:\n  - {name: a, prefix: /a/, template: /t, dest: /a, reload: systemctl reload nginx}\n",
      #"etcsync.yaml:2:60: mappings[0].reload: expected a list of arguments such as [systemctl, reload, nginx], got "systemctl reload nginx"; commands do not run through a shell; write [sh, -c, "..."] to use one"#
    ),
    (
      "mappings:\n  - {name: a, key: /a, dest: /a, createDirs: yes}\n",
      #"etcsync.yaml:2:46: mappings[0].createDirs: expected true or false, got "yes""#
    ),
    (
      "mappings:\n  - {name: a, kind: tre, prefix: /a/, dest: /a}\n",
      #"etcsync.yaml:2:21: mappings[0].kind: expected one of "template", "tree", "file", "format", got "tre"; did you mean "tree"?"#
    ),
    (
      "commandTimeout: 5\n",
      #"etcsync.yaml:1:17: commandTimeout: expected a duration such as "200ms" or "2s": "5" has no unit; write it with one, such as "5s" or "5ms""#
    ),
    (
      "commandTimeout: 0s\n",
      #"etcsync.yaml:1:17: commandTimeout: expected a duration above 0s such as "5s", got "0s""#
    ),
    (
      "presence: {ttl: 1s}\n",
      #"etcsync.yaml:1:17: presence.ttl: expected a TTL of at least 2s, got "1s""#
    ),
    (
      "presence: {ttl: 2500ms}\n",
      #"etcsync.yaml:1:17: presence.ttl: expected a whole number of seconds (etcd leases count in seconds), got "2500ms""#
    ),
    (
      "metrics: {listen: localhost}\n",
      #"etcsync.yaml:1:19: metrics.listen: expected host:port such as "127.0.0.1:9464", got "localhost"; a port is missing; write host:port such as 127.0.0.1:9464"#
    ),
    (
      "state: {dir: var/lib/etcsync}\n",
      #"etcsync.yaml:1:14: state.dir: expected an absolute path such as "/var/lib/etcsync", got "var/lib/etcsync""#
    ),
    (
      "log: {format: xml}\n",
      #"etcsync.yaml:1:15: log.format: expected one of "text", "json", got "xml""#
    ),
    (
      "log: {level: verbose}\n",
      #"etcsync.yaml:1:14: log.level: expected one of "trace", "debug", "info", "notice", "warning", "error", "critical", got "verbose""#
    ),
    (
      "log: {}\nlog: {}\n",
      #"etcsync.yaml:1:1: duplicate key "log" in one mapping; each key may appear once"#
    ),
    (
      "etcd:\n  auth: {user: root}\n",
      "etcsync.yaml:2:16: etcd.auth.user: a user needs a password file: set etcd.auth.passwordFile, ETCSYNC_PASSWORD_FILE or --password-file"
    ),
    (
      "etcd:\n  tls: {cert: /c.pem}\n",
      "etcsync.yaml:2:15: etcd.tls.cert: a client certificate needs its key: set etcd.tls.key, ETCSYNC_KEY_FILE or --key-file"
    ),
  ]

  @Test("each problem is described exactly", arguments: Self.cases)
  func exactDescription(yaml: String, description: String) {
    #expect(loadConfigurationError(yaml)?.description == description)
  }

  @Test("the error's parts are set")
  func parts() throws {
    let error = try #require(loadConfigurationError("mappings:\n  - {name: a, key: /a, dest: /a, mode: \"999\"}\n"))
    #expect(error.file == "etcsync.yaml")
    #expect(error.line == 2)
    #expect(error.column == 40)
    #expect(error.field == "mappings[0].mode")
    #expect(error.message == #"expected an octal file mode such as "0644", got "999""#)
    #expect(error.code == .invalidValue)
  }

  @Test(
    "YAML syntax errors keep libyaml's line and column",
    arguments: [
      ("etcd:\n  endpoints: [a\nlog: {}\n", 3, 4),
      ("etcd:\n\tendpoints: [a]\n", 2, 1),
      ("mappings:\n  - name: a\n   key: b\n", 3, 4),
    ])
  func syntax(yaml: String, line: Int, column: Int) throws {
    let error = try #require(loadConfigurationError(yaml))
    #expect(error.code == .syntax)
    #expect(error.file == "etcsync.yaml")
    #expect(error.line == line)
    #expect(error.column == column)
    #expect(error.field == nil)
    #expect(error.message.hasPrefix("invalid YAML: "))
  }

  @Test(
    "descriptions leave out what is unknown",
    arguments: [
      (ConfigurationError(.invalidValue, field: "ETCSYNC_LOG_LEVEL", message: "m"), "ETCSYNC_LOG_LEVEL: m"),
      (ConfigurationError(.fileAccess, file: "a.yaml", message: "m"), "a.yaml: m"),
      (ConfigurationError(.syntax, file: "a.yaml", line: 3, message: "m"), "a.yaml:3: m"),
      (ConfigurationError(.syntax, file: "a.yaml", line: 3, column: 4, field: "f", message: "m"), "a.yaml:3:4: f: m"),
      (ConfigurationError(.syntax, message: "m"), "m"),
    ])
  func descriptionParts(error: ConfigurationError, description: String) {
    #expect(error.description == description)
  }
}
