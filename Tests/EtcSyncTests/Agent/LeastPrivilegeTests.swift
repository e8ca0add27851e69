import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Testing

/// Read rights on exactly the mapped prefixes suffice (issue 13 §2): the daemon watches each
/// mapped range on its own, and still renders whole revisions. Against a real etcd with
/// authentication on.
@Suite("Agent: least privilege")
struct LeastPrivilegeTests {
  static let template = """
    {{ range gets "/cfg/common/*" }}common/{{ base .Key }}={{ .Value }} {{ end }}\
    {{ range gets "/cfg/hosts/web-01/*" }}host/{{ base .Key }}={{ .Value }} {{ end }}

    """

  /// An etcd with auth on: `root`, and `web-01`, whose role reads `/cfg/common/` and
  /// `/cfg/hosts/web-01/` and nothing else (not `/cfg/hosts/web-00/`, between them).
  struct Cluster {
    let server: EtcdServer
    let root: RunningClient
    let host: RunningClient
    let proxy: EtcdGRPCProxy?

    /// With `throughProxy`, `host` talks to etcd through an `etcd grpc-proxy`, which forwards
    /// its token (auth through the proxy).
    static func start(throughProxy: Bool = false) async throws -> Cluster {
      let server = try await EtcdServer.start()
      let admin = try RunningClient(server.configuration())
      defer { admin.stop() }
      _ = try await admin.client.txn(if: [], then: [
        .put("/cfg/common/v", "0"), .put("/cfg/hosts/web-01/v", "0"), .put("/cfg/hosts/web-00/secret", "not for web-01"),
      ])
      try await admin.client.enableAuthentication(rootPassword: "rootpw", users: [
        TestUser("web-01", password: "hostpw", grants: [(.read, .prefix("/cfg/common/")), (.read, .prefix("/cfg/hosts/web-01/"))]),
      ])
      var rootConfiguration = server.configuration()
      rootConfiguration.credentials = .init(username: "root", password: "rootpw")
      let proxy = throughProxy ? try await EtcdGRPCProxy.start(inFrontOf: [server]) : nil
      var hostConfiguration = proxy?.configuration() ?? server.configuration()
      hostConfiguration.credentials = .init(username: "web-01", password: "hostpw")
      return Cluster(server: server, root: try RunningClient(rootConfiguration), host: try RunningClient(hostConfiguration),
                     proxy: proxy)
    }

    func stop() {
      self.host.stop()
      self.root.stop()
      self.proxy?.stop()
      self.server.destroy()
    }
  }

  static func mappings(_ dir: TemporaryDirectory) -> [Mapping] {
    [
      Mapping(name: "both", kind: .template, prefixes: ["/cfg/common/", "/cfg/hosts/web-01/"], template: dir("both.tmpl"),
              dest: dir("both"), reload: ["sh", "-c", "cat '\(dir("both"))' >> '\(dir("renders.log"))'"]),
      Mapping(name: "host", kind: .tree, prefixes: ["/cfg/hosts/web-01/"], dest: dir("host")),
    ]
  }

  /// What the template renders from etcd at `revision`, read as root (the oracle).
  static func expected(_ cluster: Cluster, at revision: Int64) async throws -> String {
    var text = ""
    for (prefix, label) in [("/cfg/common/", "common"), ("/cfg/hosts/web-01/", "host")] {
      let kvs = try await cluster.root.client.get(.prefix(prefix), options: GetOptions(revision: revision)).kvs
      for kv in kvs {
        text += "\(label)/\(String(decoding: kv.key.dropFirst(prefix.utf8.count), as: UTF8.self))=\(String(decoding: kv.value, as: UTF8.self)) "
      }
    }
    return text + "\n"
  }

  @Test("read rights on two non-adjacent prefixes suffice, and a Txn over both is rendered whole or not at all",
        arguments: [false, true])
  func twoPrefixes(throughProxy: Bool) async throws {
    let cluster = try await Cluster.start(throughProxy: throughProxy)
    defer { cluster.stop() }
    let dir = TemporaryDirectory("etcsync-least")
    try Disk.write(dir("both.tmpl"), Self.template)
    let (logger, logs) = RecordingLogHandler.logger()
    let configuration = AgentConfiguration(mappings: Self.mappings(dir), state: StateSettings(dir: dir("state")))
    #expect(configuration.etcd.watch == .ranges, "the default")
    let agent = try Agent(configuration: configuration, client: cluster.host.client, logger: logger)
    let daemon = Daemon(agent)
    #expect(await eventually { Disk.read(dir("both")) == "common/v=0 host/v=0 \n" })

    // Txns that write both prefixes at one revision, and now and then one prefix alone (its
    // watcher is then ahead and the other range is confirmed by a read).
    for round in 1...40 {
      var ops: [Op] = [.put("/cfg/common/v", "\(round)"), .put("/cfg/hosts/web-01/v", "\(round)")]
      if round % 3 == 0 { ops = [.put("/cfg/common/only", "\(round)")] + ops }
      _ = try await cluster.root.client.txn(if: [], then: ops)
      if round % 4 == 0 { try await cluster.root.client.put("/cfg/hosts/web-01/alone", "\(round)") }
      if round % 5 == 0 { try await cluster.root.client.put("/cfg/hosts/web-00/secret", "still not \(round)") }
    }
    let last = try await cluster.root.client.get(.key("/cfg/hosts/web-01/v")).header.revision
    let expected = try await Self.expected(cluster, at: last)
    #expect(await eventually { Disk.read(dir("both")) == expected }, "both: \(Disk.read(dir("both")) ?? "-")")
    #expect(await eventually { await agent.appliedRevision >= last - 1 })
    // The tree equals etcd's prefix at the applied revision, byte for byte.
    let applied = await agent.appliedRevision
    let tree = try await cluster.root.client.get(.prefix("/cfg/hosts/web-01/"), options: GetOptions(revision: applied)).kvs
    for kv in tree {
      let name = String(decoding: kv.key.dropFirst("/cfg/hosts/web-01/".utf8.count), as: UTF8.self)
      #expect(Bytes.read(dir("host/\(name)")) == kv.value, "host/\(name)")
    }
    #expect(Disk.names(dir("host")).filter { !$0.hasPrefix("..") }.count == tree.count)
    #expect(!daemon.hasEnded)
    #expect(await daemon.stop() == nil)
    #expect(!logs.all.contains { $0.1 == "watch ended" })
    // Every render the reload saw holds one revision: the two `v`s are always equal.
    let renders = (Disk.read(dir("renders.log")) ?? "").split(separator: "\n")
    #expect(renders.count >= 2)
    for render in renders {
      let fields = Dictionary(render.split(separator: " ").map { field in
        let parts = field.split(separator: "=", maxSplits: 1)
        return (String(parts[0]), String(parts.count > 1 ? parts[1] : ""))
      }, uniquingKeysWith: { $1 })
      #expect(fields["common/v"] != nil && fields["common/v"] == fields["host/v"], "a render mixed two revisions: \(render)")
      #expect(!render.contains("not for"), "a key outside the grant reached a file")
    }
  }

  @Test("etcd.watch: covering needs read rights on the covering range: without them, run() ends with permission denied")
  func coveringNeedsTheRange() async throws {
    let cluster = try await Cluster.start()
    defer { cluster.stop() }
    let dir = TemporaryDirectory("etcsync-least")
    try Disk.write(dir("both.tmpl"), Self.template)
    let (logger, _) = RecordingLogHandler.logger()
    var configuration = AgentConfiguration(mappings: Self.mappings(dir), state: StateSettings(dir: dir("state")))
    configuration.etcd.watch = .covering
    let agent = try Agent(configuration: configuration, client: cluster.host.client, logger: logger)
    let daemon = Daemon(agent)
    #expect(await eventually(within: .seconds(60)) { daemon.hasEnded })
    let error = await daemon.stop()
    #expect((error as? EtcdError)?.code == .permissionDenied, "\(String(describing: error))")
    // The first sync (per-range reads) was allowed and wrote its files.
    #expect(Disk.read(dir("both")) == "common/v=0 host/v=0 \n")
  }
}
