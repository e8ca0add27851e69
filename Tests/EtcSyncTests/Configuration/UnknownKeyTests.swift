import EtcSync
import Testing

@Suite("Unknown keys")
struct UnknownKeyTests {
  @Test(
    "a near miss is named with a suggestion",
    arguments: [
      ("etcd: {endpoint: [a]}", "etcd.endpoint", "endpoints"),
      ("etcd: {dial_timeout: 1s}", "etcd.dial_timeout", "dialTimeout"),
      ("etcd: {tls: {certFile: /c}}", "etcd.tls.certFile", "cert"),
      ("etcd: {auth: {password_file: /p}}", "etcd.auth.password_file", "passwordFile"),
      ("mapping: []", "mapping", "mappings"),
      ("presense: {}", "presense", "presence"),
      ("metrics: {listne: \":1\"}", "metrics.listne", "listen"),
      ("log: {levle: info}", "log.levle", "level"),
      ("command_timeout: 1s", "command_timeout", "commandTimeout"),
      ("mappings: [{name: a, key: /a, dest: /a, reloadd: [x]}]", "mappings[0].reloadd", "reload"),
      ("mappings: [{name: a, key: /a, dest: /a, writeback: true}]", "mappings[0].writeback", "writeBack"),
      ("mappings: [{name: a, key: /a, dest: /a, write-back: true}]", "mappings[0].write-back", "writeBack"),
      ("mappings: [{name: a, key: /a, dest: /a, Mode: \"0644\"}]", "mappings[0].Mode", "mode"),
      ("mappings: [{name: a, key: /a, dest: /a, wait: {minimum: 1s}}]", "mappings[0].wait.minimum", "min"),
      ("mappings: [{name: a, key: /a, dest: /a, src: /t}]", "mappings[0].src", "template"),
      ("mappings: [{name: a, key: /a, dest: /a, reload_cmd: [x]}]", "mappings[0].reload_cmd", "reload"),
      ("mappings: [{name: a, key: /a, dest: /a, check_cmd: [x]}]", "mappings[0].check_cmd", "check"),
      ("mappings: [{name: a, key: /a, destination: /a}]", "mappings[0].destination", "dest"),
      ("mappings: [{name: a, key: /a, dest: /a, uid: 0}]", "mappings[0].uid", "owner"),
      ("mappings: [{name: a, key: /a, dest: /a, perms: \"0644\"}]", "mappings[0].perms", "mode"),
      ("mappings: [{name: a, type: file, key: /a, dest: /a}]", "mappings[0].type", "kind"),
    ])
  func suggestion(yaml: String, field: String, suggestion: String) throws {
    let error = try #require(loadConfigurationError(yaml))
    #expect(error.code == .unknownKey)
    #expect(error.field == field)
    #expect(error.message == "unknown key; did you mean \"\(suggestion)\"?")
  }

  @Test("without a near miss, the known keys are listed")
  func listing() throws {
    let error = try #require(loadConfigurationError("log: {colour: true}"))
    #expect(error.description == "etcsync.yaml:1:7: log.colour: unknown key; expected one of: format, level")
  }

  @Test("top-level x- keys are free for anchors; elsewhere they are unknown")
  func extensions() throws {
    _ = try loadConfiguration("x-anything: {a: 1}\nx-list: [1, 2]\n")
    let error = try #require(loadConfigurationError("log: {x-note: 1}"))
    #expect(error.field == "log.x-note")
  }

  @Test("a key that is not a name is refused")
  func complexKey() throws {
    let error = try #require(loadConfigurationError("? [a, b]\n: 1\n"))
    #expect(error.message == "expected a key name, got a list")
  }

  @Test("an unknown key brought in by a merge is reported where it is written")
  func mergedUnknownKey() throws {
    let yaml = "x-d: &d\n  kind: tree\n  reloadd: [x]\nmappings:\n  - <<: *d\n    name: a\n    prefix: /a/\n    dest: /a\n"
    let error = try #require(loadConfigurationError(yaml))
    #expect(error.field == "mappings[0].reloadd")
    #expect(error.line == 3)
    #expect(error.column == 3)
  }
}
