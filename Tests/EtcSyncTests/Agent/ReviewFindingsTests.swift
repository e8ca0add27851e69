import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Logging
import Testing

/// What the adversarial review of the hardening found: a file mapping (or a small tree)
/// whose files all vanished while the agent was stopped deleted its keys at the next start; a
/// tree holding local files that could not be pushed reported success; the published revision
/// moved on while a mapping failed.
@Suite("Agent: review findings")
struct ReviewFindingsTests {
  static func agent(_ h: AgentHarness, _ mappings: [Mapping]) throws -> Agent {
    let configuration = AgentConfiguration(mappings: mappings, state: StateSettings(dir: h.dir("state")),
                                           commandTimeout: .seconds(10))
    return try Agent(configuration: configuration, client: h.client, logger: h.logger)
  }

  @Test("a write-back file that vanished while the agent was stopped does not delete its key (deletes: true)",
        arguments: [Mapping.Kind.file, .tree])
  func vanishedAtStart(kind: Mapping.Kind) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/wb/only", "precious")
    let mapping = kind == .file
      ? Mapping(name: "m", kind: .file, key: "/wb/only", dest: h.dir("dest/only"), writeBack: true, deletes: true)
      : Mapping(name: "m", kind: .tree, prefixes: ["/wb/"], dest: h.dir("dest"), swap: .inPlace, writeBack: true, deletes: true)
    let first = try await Self.agent(h, [mapping]).sync()[0]
    #expect(first.error == nil)
    #expect(Disk.read(h.dir("dest/only")) == "precious")
    // The volume is not mounted at the next boot: an empty directory where the file was.
    unlink(h.dir("dest/only"))
    let second = try? await Self.agent(h, [mapping]).sync()
    #expect(try await h.client.get("/wb/only").kvs.first?.valueString == "precious", "the key survives")
    if let result = second?.first { #expect(result.failed) }
  }

  @Test("a tree that keeps a local file it could not push reports held, and the rest syncs")
  func heldTree() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/wb/a", "1")
    try await h.put("/wb/b", "1")
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/wb/"], dest: h.dir("dest"), swap: .inPlace,
                          writeBack: true)
    let agent = try Self.agent(h, [mapping])
    let daemon = Daemon(agent)
    #expect(await eventually { Disk.read(h.dir("dest/a")) == "1" && Disk.read(h.dir("dest/b")) == "1" })
    // A local edit that cannot be pushed: the file gets a second hard link, then new bytes
    // written in place.
    #expect(link(h.dir("dest/a"), h.dir("elsewhere")) == 0)
    let handle = try #require(FileHandle(forWritingAtPath: h.dir("dest/a")))
    try handle.truncate(atOffset: 0)
    try handle.write(contentsOf: Data("local".utf8))
    try handle.close()
    #expect(await eventually { await agent.progress.errors["tree"] == MappingFailure.held.rawValue },
            "the mapping says it holds a file etcd does not")
    try await h.put("/wb/b", "2")
    #expect(await eventually { Disk.read(h.dir("dest/b")) == "2" }, "the rest still syncs")
    #expect(try await h.client.get("/wb/a").kvs.first?.valueString == "1", "nothing was pushed")
    #expect(await daemon.stop() == nil)
  }

  @Test("the published revision does not pass a mapping that fails")
  func failingMappingHoldsRevision() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/ok", "1")
    let good = Mapping(name: "good", kind: .file, key: "/ok", dest: h.dir("good"))
    let bad = Mapping(name: "bad", kind: .file, key: "/missing", dest: h.dir("bad"))
    let agent = try Self.agent(h, [good, bad])
    let daemon = Daemon(agent)
    #expect(await eventually { Disk.read(h.dir("good")) == "1" })
    let revision = try await h.put("/ok", "2")
    #expect(await eventually { Disk.read(h.dir("good")) == "2" })
    try await Task.sleep(for: .milliseconds(300))
    #expect(await agent.progress.appliedRevision < revision, "published while mapping bad holds no file")
    let fixed = try await h.put("/missing", "here")
    #expect(await eventually { await agent.progress.appliedRevision >= fixed })
    #expect(Disk.read(h.dir("bad")) == "here")
    #expect(await daemon.stop() == nil)
  }
}
