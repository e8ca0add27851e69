import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Logging
import Templates
import Testing

/// A write-back mapping's watched directory is recorded in the state file: a start that
/// finds another directory there (an unmounted volume's empty mount point at boot, a replaced
/// directory) stops the mapping with `destination_replaced` and writes nothing into it, until
/// the operator accepts it with `--accept-destination`. Real directories, a real etcd.
@Suite("Agent: the recorded write-back destination")
struct DestinationRecordTests {
  static func agent(_ h: AgentHarness, _ dest: String, accept: Set<String> = []) throws -> Agent {
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/wb/"], dest: dest, writeBack: true, deletes: false)
    var configuration = AgentConfiguration(mappings: [mapping], state: StateSettings(dir: h.dir("state")), commandTimeout: .seconds(10))
    configuration.acceptDestinations = accept
    return try Agent(configuration: configuration, client: h.client, logger: h.logger)
  }

  static func inode(_ path: String) -> UInt64 {
    var info = stat()
    return lstat(path, &info) == 0 ? UInt64(info.st_ino) : 0
  }

  static func recorded(_ h: AgentHarness) -> DestinationRecord? {
    StateFile(path: h.dir("state") + "/state.json").load().destinations["tree"]
  }

  @Test("a directory replaced between two runs is refused at the second start, its files untouched; --accept-destination takes it")
  func replacedBetweenRuns() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("dest")
    try await h.put("/wb/a", "v-a")
    let first = try await Self.agent(h, dest).sync()
    #expect(first[mapping: "tree"]?.error == nil)
    #expect(Disk.read(dest + "/a") == "v-a")
    #expect(Self.recorded(h)?.inode == Self.inode(dest))
    // The directory is replaced while the agent is stopped (another inode, as an empty
    // mount point is), and a secret arrives in etcd.
    #expect(rename(dest, h.dir("dest.old")) == 0)
    try Disk.write(dest + "/local", "someone else's file")
    try await h.put("/wb/secret", "s3cret")
    let second = try await Self.agent(h, dest).sync()
    #expect(second[mapping: "tree"]?.failureCode == .destinationReplaced, "\(second[mapping: "tree"]?.error ?? "-")")
    #expect(second[mapping: "tree"]?.error?.contains("etcsync run --accept-destination tree") == true)
    #expect(second[mapping: "tree"]?.failure?.subject == .file(ExactString(dest)))
    #expect(second[mapping: "tree"]?.retryable == true, "looked at again with the retry backoff")
    #expect(Disk.names(dest) == ["local"], "nothing written into the new directory")
    #expect(Disk.read(dest + "/local") == "someone else's file")
    #expect(try await h.client.get(.prefix("/wb/")).kvs.count == 2, "nothing pushed from it")
    #expect(h.messages(atLeast: .error).contains("write-back destination replaced; the mapping is stopped, its files are untouched"))
    // Refused again at every start: the record stays the old directory's.
    #expect(try await Self.agent(h, dest).sync()[mapping: "tree"]?.failureCode == .destinationReplaced)
    #expect(Self.recorded(h)?.inode == Self.inode(h.dir("dest.old")))
    // The operator accepts it: the mapping runs, the record is the new directory's.
    let accepted = try await Self.agent(h, dest, accept: ["tree"]).sync()
    #expect(accepted[mapping: "tree"]?.error == nil, "\(accepted[mapping: "tree"]?.error ?? "-")")
    #expect(Disk.read(dest + "/secret") == "s3cret")
    #expect(Self.recorded(h)?.inode == Self.inode(dest))
    #expect(h.messages(atLeast: .notice).contains("write-back destination accepted as it is now (--accept-destination)"))
    // And later starts without the flag go on.
    #expect(try await Self.agent(h, dest).sync()[mapping: "tree"]?.error == nil)
  }

  @Test("the same directory back (a remount) at the next start runs as before; a mapping whose dest changed records the new one")
  func sameDirectoryAndNewPath() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/wb/a", "v-a")
    let dest = h.dir("dest")
    _ = try await Self.agent(h, dest).sync()
    #expect(rename(dest, h.dir("away")) == 0)
    #expect(try await Self.agent(h, dest).sync()[mapping: "tree"]?.failureCode == .destinationReplaced)
    #expect(rename(h.dir("away"), dest) == 0)
    #expect(try await Self.agent(h, dest).sync()[mapping: "tree"]?.error == nil)
    // Another path in the configuration is another destination, not a replaced one.
    let other = h.dir("other")
    #expect(try await Self.agent(h, other).sync()[mapping: "tree"]?.error == nil)
    #expect(Disk.read(other + "/a") == "v-a")
    #expect(Self.recorded(h)?.path == other)
  }

  @Test("state files without the record (written before it was kept) still read; the record round-trips")
  func stateFormat() throws {
    let old = """
      {"version": 2, "mappings": {"tree": {"appliedRevision": 7, "files": [], "pendingReload": false, "local": [], "intended": []}}}
      """
    let state = try JSONDecoder().decode(SyncState.self, from: Data(old.utf8))
    #expect(state.mappings["tree"]?.appliedRevision == 7)
    #expect(state.destinations.isEmpty)
    var withRecord = state
    withRecord.destinations["tree"] = DestinationRecord(path: "/srv/wb", device: 2049, inode: 42)
    let encoded = try JSONEncoder().encode(withRecord)
    #expect(String(decoding: encoded, as: UTF8.self).contains("\"destinations\""))
    #expect(try JSONDecoder().decode(SyncState.self, from: encoded) == withRecord)
    #expect(withRecord.version == 2)
  }
}
