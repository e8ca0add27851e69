import EtcSync
import Testing

@Suite("Checks across fields")
struct ValidationTests {
  static func two(_ first: (kind: String, dest: String), _ second: (kind: String, dest: String)) -> String {
    func body(_ name: String, _ kind: String, _ dest: String) -> String {
      switch kind {
      case "tree": "{name: \(name), kind: tree, prefix: /\(name)/, dest: \"\(dest)\"}"
      default: "{name: \(name), key: /\(name), dest: \"\(dest)\"}"
      }
    }
    return "mappings:\n  - \(body("one", first.kind, first.dest))\n  - \(body("two", second.kind, second.dest))\n"
  }

  @Test(
    "overlapping destinations are refused",
    arguments: [
      (("file", "/etc/app.conf"), ("file", "/etc/app.conf"), #""/etc/app.conf" is also the destination of mappings[0] ("one"); destinations must not overlap"#),
      (("tree", "/srv/app"), ("file", "/srv/app/extra.conf"), #""/srv/app/extra.conf" lies inside "/srv/app", the destination of mappings[0] ("one"); destinations must not overlap"#),
      (("file", "/srv/app/x/y"), ("tree", "/srv/app"), #""/srv/app" contains "/srv/app/x/y", the destination of mappings[0] ("one"); destinations must not overlap"#),
      (("tree", "/srv/app"), ("tree", "/srv/app/"), #""/srv/app" is also the destination of mappings[0] ("one"); destinations must not overlap"#),
    ])
  func overlapping(first: (String, String), second: (String, String), message: String) throws {
    let error = try #require(loadConfigurationError(Self.two(first, second)))
    #expect(error.field == "mappings[1].dest")
    #expect(error.line == 3)
    #expect(error.message == message)
    #expect(error.code == .conflict)
  }

  @Test(
    "neighbouring destinations are fine",
    arguments: [
      (("file", "/etc/app/a.conf"), ("file", "/etc/app/b.conf")),
      (("tree", "/srv/app"), ("tree", "/srv/application")),
      (("tree", "/srv/app/one"), ("tree", "/srv/app/two")),
    ])
  func neighbours(first: (String, String), second: (String, String)) throws {
    #expect(try loadConfiguration(Self.two(first, second)).mappings.count == 2)
  }

  @Test("mapping names are unique")
  func uniqueNames() throws {
    let yaml = "mappings:\n  - {name: a, key: /a, dest: /a}\n  - {name: b, key: /b, dest: /b}\n  - {name: a, key: /c, dest: /c}\n"
    let error = try #require(loadConfigurationError(yaml))
    #expect(
      error.description
        == #"etcsync.yaml:4:12: mappings[2].name: "a" is also the name of mappings[0]; mapping names must be unique"#)
  }

  @Test("the state directory must not overlap a destination", arguments: ["/srv/app", "/srv", "/srv/app/state"])
  func stateDirectory(dir: String) throws {
    let yaml = "state: {dir: \(dir)}\nmappings:\n  - {name: a, kind: tree, prefix: /a/, dest: /srv/app}\n"
    let error = try #require(loadConfigurationError(yaml))
    #expect(error.field == "state.dir")
    #expect(error.line == 1)
    let fromFlag = try #require(
      loadConfigurationError("mappings:\n  - {name: a, kind: tree, prefix: /a/, dest: /srv/app}\n", overrides: .init(stateDir: dir)))
    #expect(fromFlag.field == "--state-dir")
  }

  @Test("endpoints may not mix http and https without TLS settings")
  func mixedSchemes() throws {
    let yaml = "etcd:\n  endpoints: [http://a:2379, https://b:2379]\n"
    let error = try #require(loadConfigurationError(yaml))
    #expect(
      error.description
        == "etcsync.yaml:2:14: etcd.endpoints: the endpoints mix http:// and https://; use one scheme for all members")
    #expect(try loadConfiguration(yaml + "  tls: {}\n").etcd.endpoints.count == 2)
  }

  @Test(
    "endpoint forms",
    arguments: ["http://127.0.0.1:2379", "https://etcd.example:2379/", "etcd-0:2379", "etcd-0", "[::1]:2379", "https://[fd00::1]:2379"])
  func endpointForms(endpoint: String) throws {
    #expect(try loadConfiguration("etcd: {endpoints: [\"\(endpoint)\"]}").etcd.endpoints == [endpoint])
  }

  @Test(
    "bad endpoints",
    arguments: [
      ("unix:///run/etcd.sock", "the scheme must be http:// or https://"),
      ("http://:2379", "the host is empty"),
      ("http://a:0", "\"0\" is not a port number (1-65535)"),
      ("::1:2379", "write an IPv6 address in brackets, such as [::1]:2379"),
      ("http://a:2379/v3", "an endpoint has no path; write scheme://host:port"),
    ])
  func badEndpoints(endpoint: String, reason: String) throws {
    let error = try #require(loadConfigurationError("etcd: {endpoints: [\"\(endpoint)\"]}"))
    #expect(error.field == "etcd.endpoints[0]")
    #expect(error.message == "expected an endpoint such as \"https://10.0.0.1:2379\", got \"\(endpoint)\": \(reason)")
  }

  @Test(
    "listen addresses",
    arguments: [("127.0.0.1:9464", "127.0.0.1", 9464), (":9464", "", 9464), ("[::1]:0", "::1", 0), ("localhost:80", "localhost", 80)])
  func listenAddresses(listen: String, host: String, port: Int) throws {
    let metrics = try #require(try loadConfiguration("metrics: {listen: \"\(listen)\"}").metrics)
    #expect(metrics.host == host)
    #expect(metrics.port == port)
  }

  @Test("presence names are one key segment")
  func presenceName() throws {
    let error = try #require(loadConfigurationError("presence: {name: a/b}"))
    #expect(error.message == "expected a name without \"/\" (one key segment), got \"a/b\"")
    let presence = try #require(try loadConfiguration("presence: {prefix: /agents/, name: x}").presence)
    #expect(presence.key == "/agents/x")
  }
}
