import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Testing

/// The daemon with its client talking only to etcd's gRPC proxy (issue 13 §1): the proxy
/// numbers watches itself, answers creates out of order and caches reads. Before the watch
/// hub mapped the proxy's watch IDs, the initial sync worked and no change ever followed.
@Suite("Agent through etcd's gRPC proxy", .timeLimit(.minutes(3))) struct AgentThroughProxyTests {
  /// The tree and template files equal etcd's content at `revision`, read directly from the
  /// server (not through the proxy's cache): the oracle.
  static func matchesEtcd(_ h: AgentHarness, _ direct: EtcdClient, at revision: Int64) async throws -> Bool {
    let kvs = try await direct.get(.prefix("/px/"), options: GetOptions(revision: revision)).kvs
    let names = kvs.map { String(decoding: $0.key.dropFirst(4), as: UTF8.self) }
    let list = kvs.map { "\(String(decoding: $0.key, as: UTF8.self))=\(String(decoding: $0.value, as: UTF8.self))\n" }.joined()
    guard Bytes.read(h.dir("list")) == Array(list.utf8) else { return false }
    guard Disk.names(h.dir("tree")).filter({ !$0.hasPrefix("..") }) == names.sorted() else { return false }
    return zip(names, kvs).allSatisfy { Bytes.read(h.dir("tree/\($0.0)")) == $0.1.value }
  }

  @Test("initial sync, puts, deletes, a two-key Txn and a proxy restart all reach the files")
  func followsChanges() async throws {
    let h = try await AgentHarness.start(throughProxy: true)
    defer { h.stop() }
    let direct = try RunningClient(h.server.configuration())
    defer { direct.stop() }
    try Disk.write(h.dir("t.tmpl"), "{{ range gets \"/px/*\" }}{{ .Key }}={{ .Value }}\n{{ end }}")
    let mappings = [
      Mapping(name: "tree", kind: .tree, prefixes: ["/px/"], dest: h.dir("tree")),
      Mapping(name: "tpl", kind: .template, prefixes: ["/px/"], template: h.dir("t.tmpl"), dest: h.dir("list")),
    ]
    for i in 0..<20 { try await h.put("/px/k\(i)", "v\(i)") }
    let agent = try h.agent(h.configuration(mappings))
    let daemon = Daemon(agent)
    #expect(await eventually { await agent.history.count >= 2 })
    #expect(try await Self.matchesEtcd(h, direct.client, at: await agent.appliedRevision))
    // `appliedRevision` is what the agent has absorbed; the files follow once applied.
    func converged(through revision: Int64) async throws -> Bool {
      let applied = await agent.appliedRevision
      guard applied >= revision else { return false }
      return try await Self.matchesEtcd(h, direct.client, at: applied)
    }

    // Changes through the proxy: puts, a delete, and one Txn writing two keys at one revision.
    try await h.put("/px/k1", "changed")
    try await h.delete("/px/k2")
    let txn = try await h.client.txn(if: [], then: [.put("/px/a", "1"), .put("/px/b", "2")])
    #expect(try await eventually { try await converged(through: txn.header.revision) })

    // The proxy dies; changes made meanwhile, directly on etcd, arrive once it is back.
    let proxy = try #require(h.proxy)
    proxy.stop()
    try await direct.client.put("/px/k3", "while the proxy was down")
    let last = try await direct.client.delete("/px/k4").header.revision
    try await proxy.restart()
    #expect(try await eventually(within: .seconds(60)) { try await converged(through: last) })
    #expect(Bytes.read(h.dir("tree/k3")) == Array("while the proxy was down".utf8))
    #expect(h.client.watchProtocolViolations == 0)
    #expect(await daemon.stop() == nil)
  }
}
