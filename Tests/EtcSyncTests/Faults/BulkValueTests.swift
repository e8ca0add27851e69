import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Testing

/// Big snapshots and awkward values: many keys, values of 1 MiB and binary values (NUL bytes,
/// invalid UTF-8) arrive byte-exact in a tree, at start and through the watch.
@Suite("Faults: 100k keys, 1 MiB values, binary values", .serialized)
struct BulkValueTests {
  static let keys = faultsLong ? 100_000 : 10_000

  static func binary(_ seed: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    return [0, 0xFF, 0xFE, 0xC3, UInt8(seed % 256)] + (0..<200).map { _ in UInt8.random(in: 0...255, using: &generator) }
  }

  @Test("a tree of many keys, 1 MiB values and binary values is byte-exact, at start and after changes")
  func bulk() async throws {
    let h = try await AgentHarness.start(etcdArguments: ["--quota-backend-bytes", "\(4 << 30)"])
    defer { h.stop() }
    var ops: [Op] = []
    func flush() async throws {
      if !ops.isEmpty { _ = try await h.client.txn(if: [], then: ops) }
      ops = []
    }
    for index in 0..<Self.keys {
      ops.append(.put("/bulk/many/\(index / 1000)/k\(index)", String(repeating: "v", count: 90) + "\(index)"))
      if ops.count == 128 { try await flush() }
    }
    try await flush()
    let mib = [UInt8](repeating: 0x6D, count: 1 << 20)
    for index in 0..<3 { try await h.put(Array("/bulk/big/\(index)".utf8), mib) }
    for index in 0..<50 { try await h.put(Array("/bulk/bin/\(index)".utf8), Self.binary(index)) }

    let mapping = Mapping(name: "bulk", kind: .tree, prefixes: ["/bulk/"], dest: h.dir("tree"))
    let agent = try h.agent(h.configuration([mapping]))
    let daemon = Daemon(agent)
    #expect(await eventually(within: .seconds(300)) { await agent.history.count >= 1 })
    #expect(await agent.history.first?.error == nil)
    try await Self.verify(h, agent)

    // Changes through the watch: a binary value, a 1 MiB value and a delete.
    // (One Txn: a swapped tree is rewritten whole for each batch, with an fsync per file.)
    let last = try await h.client.txn(if: [], then: [
      .put(key: Array("/bulk/bin/7".utf8), value: Self.binary(700)),
      .put(key: Array("/bulk/big/1".utf8), value: [UInt8](repeating: 0x4E, count: 1 << 20)),
      .delete(.key("/bulk/many/0/k5")),
    ]).header.revision
    #expect(await eventually(within: .seconds(120)) { await agent.appliedRevision >= last && Disk.read(h.dir("tree/many/0/k5")) == nil })
    try await Self.verify(h, agent)
    #expect(await daemon.stop() == nil)
  }

  /// Every file equals its key's value at the agent's revision, byte for byte, and nothing else is there.
  static func verify(_ h: AgentHarness, _ agent: Agent, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let revision = await agent.appliedRevision
    let snapshot = try await h.client.getAll(.prefix("/bulk/"), revision: revision)
    var mismatches: [String] = []
    for kv in snapshot.kvs {
      let path = h.dir("tree/") + String(decoding: kv.key.dropFirst(6), as: UTF8.self)
      if Bytes.read(path) != kv.value { mismatches.append(path) }
    }
    #expect(mismatches.isEmpty, "\(mismatches.count) files differ, first \(mismatches.prefix(3))", sourceLocation: sourceLocation)
    let files = Disk.allEntries(h.dir("tree/..data/")).filter { !$0.hasSuffix("/") }
    let regular = files.filter { path in
      var info = stat()
      return lstat(h.dir("tree/..data/") + path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG
    }
    #expect(regular.count == snapshot.kvs.count, "files \(regular.count), keys \(snapshot.kvs.count)", sourceLocation: sourceLocation)
    #expect(Disk.temporaryFiles(h.dir("tree")).isEmpty, sourceLocation: sourceLocation)
  }
}
