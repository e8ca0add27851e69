import EtcSync
import Foundation
import Logging
import Testing

@Suite("Parsing every key and the defaults")
struct ParsingTests {
  static let everyKey = """
    etcd:
      endpoints: [https://10.0.0.1:2379, "https://10.0.0.2:2379"]
      dialTimeout: 3s
      requestTimeout: 10s
      keepaliveTime: 20s
      keepaliveTimeout: 7s
      tls:
        ca: /etc/etcsync/ca.pem
        cert: /etc/etcsync/client.pem
        key: /etc/etcsync/client-key.pem
        serverName: etcd.internal
      auth: {user: etcsync, passwordFile: /etc/etcsync/password}
    presence: {prefix: /fleet/agents, name: web-01, ttl: 15s}
    metrics: {listen: "0.0.0.0:9100"}
    state: {dir: /var/lib/etcsync-test/}
    wait: {min: 100ms, max: 1s}
    log: {format: json, level: debug}
    commandTimeout: 45s
    mappings:
      - name: nginx-upstreams
        kind: template
        prefixes: [/services/web/, /services/api/]
        template: /etc/etcsync/templates/upstreams.conf.tmpl
        dest: /etc/nginx/conf.d/upstreams.conf
        mode: "0640"
        owner: root
        group: "33"
        dirMode: "0750"
        createDirs: false
        check: [nginx, -t, -c, "{{.src}}"]
        reload: [systemctl, reload, nginx]
        commandTimeout: 5s
        wait: {min: 200ms, max: 2s}
      - name: app-settings
        kind: tree
        prefix: /apps/billing/config/
        dest: /srv/billing/config
        swap: in-place
        writeBack: true
        conflict: local-wins
        deletes: true
      - name: motd
        kind: file
        key: /hosts/web-01/motd
        dest: /etc/motd
        writeBack: true
      - name: billing-env
        kind: format
        format: env
        prefix: /apps/billing/env/
        dest: /srv/billing/billing.env
    """

  @Test("every key is read")
  func everyKey() throws {
    let configuration = try loadConfiguration(Self.everyKey)
    let etcd = configuration.etcd
    #expect(etcd.endpoints == ["https://10.0.0.1:2379", "https://10.0.0.2:2379"])
    #expect(etcd.dialTimeout == .seconds(3))
    #expect(etcd.requestTimeout == .seconds(10))
    #expect(etcd.keepaliveTime == .seconds(20))
    #expect(etcd.keepaliveTimeout == .seconds(7))
    #expect(
      etcd.tls
        == TLSSettings(
          ca: "/etc/etcsync/ca.pem", cert: "/etc/etcsync/client.pem", key: "/etc/etcsync/client-key.pem",
          serverName: "etcd.internal"))
    #expect(etcd.auth == AuthSettings(user: "etcsync", passwordFile: "/etc/etcsync/password"))
    #expect(configuration.presence == PresenceSettings(prefix: "/fleet/agents", name: "web-01", ttl: .seconds(15)))
    #expect(configuration.presence?.key == "/fleet/agents/web-01")
    #expect(configuration.presence?.ttlSeconds == 15)
    #expect(configuration.metrics == MetricsSettings(listen: "0.0.0.0:9100"))
    #expect(configuration.metrics?.host == "0.0.0.0")
    #expect(configuration.metrics?.port == 9100)
    #expect(configuration.state.dir == "/var/lib/etcsync-test")
    #expect(configuration.wait == WaitSettings(min: .milliseconds(100), max: .seconds(1)))
    #expect(configuration.log == LogSettings(format: .json, level: .debug))
    #expect(configuration.commandTimeout == .seconds(45))
    #expect(configuration.mappings.map(\.name) == ["nginx-upstreams", "app-settings", "motd", "billing-env"])
  }

  @Test("every mapping key is read")
  func everyMappingKey() throws {
    let mappings = try loadConfiguration(Self.everyKey).mappings
    #expect(
      mappings[0]
        == Mapping(
          name: "nginx-upstreams", kind: .template, prefixes: ["/services/web/", "/services/api/"],
          template: "/etc/etcsync/templates/upstreams.conf.tmpl", dest: "/etc/nginx/conf.d/upstreams.conf",
          mode: 0o640, owner: "root", group: "33", dirMode: 0o750, createDirs: false,
          check: ["nginx", "-t", "-c", "{{.src}}"], reload: ["systemctl", "reload", "nginx"],
          commandTimeout: .seconds(5), wait: WaitSettings(min: .milliseconds(200), max: .seconds(2))))
    #expect(
      mappings[1]
        == Mapping(
          name: "app-settings", kind: .tree, prefixes: ["/apps/billing/config/"], dest: "/srv/billing/config",
          swap: .inPlace, writeBack: true, conflict: .localWins, deletes: true))
    #expect(
      mappings[2]
        == Mapping(name: "motd", kind: .file, key: "/hosts/web-01/motd", dest: "/etc/motd", writeBack: true))
    #expect(
      mappings[3]
        == Mapping(
          name: "billing-env", kind: .format, prefixes: ["/apps/billing/env/"], dest: "/srv/billing/billing.env",
          format: .env))
  }

  @Test("an empty document gives the defaults", arguments: ["", "# only a comment\n", "{}", "---\n"])
  func emptyDocument(yaml: String) throws {
    let configuration = try loadConfiguration(yaml)
    #expect(configuration == AgentConfiguration())
    #expect(configuration.etcd.endpoints == ["http://127.0.0.1:2379"])
    #expect(configuration.etcd.dialTimeout == .seconds(5))
    #expect(configuration.etcd.requestTimeout == .seconds(30))
    #expect(configuration.etcd.keepaliveTime == .seconds(10))
    #expect(configuration.etcd.keepaliveTimeout == .seconds(5))
    #expect(configuration.etcd.tls == nil)
    #expect(configuration.etcd.auth == nil)
    #expect(configuration.presence == nil)
    #expect(configuration.metrics == nil)
    #expect(configuration.state.dir == "/var/lib/etcsync")
    #expect(configuration.wait == nil)
    #expect(configuration.log == LogSettings(format: .text, level: .info))
    #expect(configuration.commandTimeout == .seconds(30))
    #expect(configuration.mappings.isEmpty)
  }

  @Test("a mapping's optional keys have their defaults")
  func mappingDefaults() throws {
    let yaml = yamlWithOneMapping("name: app\nkind: tree\nprefix: /app/\ndest: /srv/app/")
    let mapping = try #require(try loadConfiguration(yaml).mappings.first)
    #expect(mapping == Mapping(name: "app", kind: .tree, prefixes: ["/app/"], dest: "/srv/app"))
    #expect(mapping.createDirs)
    #expect(mapping.swap == .symlink)
    #expect(!mapping.writeBack)
    #expect(mapping.conflict == .etcdWins)
    #expect(!mapping.deletes)
    #expect(mapping.mode == nil && mapping.dirMode == nil && mapping.owner == nil && mapping.group == nil)
    #expect(mapping.check == nil && mapping.reload == nil && mapping.commandTimeout == nil && mapping.wait == nil)
  }

  @Test("empty sections enable presence and metrics with their defaults")
  func emptySections() throws {
    let configuration = try loadConfiguration("presence: {}\nmetrics: {}\nlog: {}\n")
    let presence = try #require(configuration.presence)
    #expect(presence.prefix == "/etcsync/agents")
    #expect(!presence.name.isEmpty && !presence.name.contains("/"))
    #expect(presence.ttl == .seconds(10))
    #expect(configuration.metrics == MetricsSettings(listen: "127.0.0.1:9464"))
  }

  @Test("an empty value counts as absent")
  func nullIsAbsent() throws {
    let configuration = try loadConfiguration("presence:\nmetrics: ~\nwait: null\netcd:\n  tls:\n")
    #expect(configuration == AgentConfiguration())
  }

  @Test("endpoints may be one comma-separated string")
  func endpointString() throws {
    let configuration = try loadConfiguration("etcd: {endpoints: \"http://a:2379, http://b:2379\"}")
    #expect(configuration.etcd.endpoints == ["http://a:2379", "http://b:2379"])
  }

  @Test("an empty tls section turns TLS on with the system roots")
  func emptyTLS() throws {
    #expect(try loadConfiguration("etcd: {tls: {}}").etcd.tls == TLSSettings())
  }

  @Test(
    "wait forms",
    arguments: [
      ("{min: 1s}", WaitSettings(min: .seconds(1), max: .seconds(4))),
      ("{min: 200ms, max: 2s}", WaitSettings(min: .milliseconds(200), max: .seconds(2))),
      ("\"200ms:2s\"", WaitSettings(min: .milliseconds(200), max: .seconds(2))),
      ("500ms", WaitSettings(min: .milliseconds(500), max: .seconds(2))),
      ("{min: 0s, max: 0s}", WaitSettings(min: .zero, max: .zero)),
    ])
  func waitForms(yaml: String, expected: WaitSettings) throws {
    #expect(try loadConfiguration("wait: \(yaml)").wait == expected)
  }

  @Test(
    "log levels are read in any case, warn meaning warning",
    arguments: [
      ("trace", Logger.Level.trace), ("debug", .debug), ("info", .info), ("notice", .notice),
      ("warning", .warning), ("warn", .warning), ("WARNING", .warning), ("error", .error), ("critical", .critical),
    ])
  func logLevels(text: String, level: Logger.Level) throws {
    #expect(try loadConfiguration("log: {level: \(text)}").log.level == level)
  }

  @Test(
    "file modes are octal",
    arguments: [("\"0644\"", UInt16(0o644)), ("0644", 0o644), ("\"644\"", 0o644), ("\"0o600\"", 0o600),
                ("\"4755\"", 0o4755), ("\"07777\"", 0o7777), ("\"0\"", 0)])
  func fileModes(text: String, mode: UInt16) throws {
    let yaml = yamlWithOneMapping("name: a\nkey: /a\ndest: /tmp/a\nmode: \(text)")
    #expect(try loadConfiguration(yaml).mappings[0].mode == mode)
  }

  @Test("destinations are normalized", arguments: [("/srv/app/", "/srv/app"), ("//srv//app", "/srv/app")])
  func normalizedDest(text: String, dest: String) throws {
    let yaml = yamlWithOneMapping("name: a\nkey: /a\ndest: \(text)")
    #expect(try loadConfiguration(yaml).mappings[0].dest == dest)
  }

  @Test("merge keys share settings between mappings")
  func mergeKeys() throws {
    let yaml = """
      x-defaults: &defaults
        kind: tree
        mode: "0600"
        reload: [systemctl, reload, app]
      mappings:
        - <<: *defaults
          name: one
          prefix: /one/
          dest: /srv/one
        - <<: *defaults
          name: two
          prefix: /two/
          dest: /srv/two
          mode: "0644"
      """
    let mappings = try loadConfiguration(yaml).mappings
    #expect(mappings.map(\.kind) == [.tree, .tree])
    #expect(mappings.map(\.mode) == [0o600, 0o644])
    #expect(mappings.map(\.reload) == [["systemctl", "reload", "app"], ["systemctl", "reload", "app"]])
    let cleared = try loadConfiguration(yaml.replacingOccurrences(of: "mode: \"0644\"", with: "mode: ~"))
    #expect(cleared.mappings[1].mode == nil)
  }

  @Test("relative paths are resolved against the base directory")
  func relativePaths() throws {
    let yaml = """
      etcd:
        tls: {ca: tls/ca.pem}
        auth: {user: u, passwordFile: secret}
      mappings:
        - {name: a, prefix: /a/, template: templates/a.tmpl, dest: /tmp/a}
      """
    let configuration = try loadConfiguration(yaml, baseDirectory: "/etc/etcsync")
    #expect(configuration.etcd.tls?.ca == "/etc/etcsync/tls/ca.pem")
    #expect(configuration.etcd.auth?.passwordFile == "/etc/etcsync/secret")
    #expect(configuration.mappings[0].template == "/etc/etcsync/templates/a.tmpl")
  }

  @Test("the default path honours ETCSYNC_CONFIG")
  func defaultPath() {
    #expect(AgentConfiguration.defaultPath(environment: [:]) == "/etc/etcsync/etcsync.yaml")
    #expect(AgentConfiguration.defaultPath(environment: ["ETCSYNC_CONFIG": "/x.yaml"]) == "/x.yaml")
  }
}
