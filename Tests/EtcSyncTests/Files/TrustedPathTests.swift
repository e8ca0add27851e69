import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Testing

@testable import EtcSync

/// The destination's path: every directory and symlink from `/` down to the mapping root is
/// root's or the agent's, and none can be replaced by another user. Runs as root, with
/// `nobody` (65534) as the other user.
@Suite("Trusted destination paths", .enabled(if: geteuid() == 0))
struct TrustedPathTests {
  static let nobody: uid_t = 65534

  /// A temporary directory (root's, under the sticky /tmp) with a `victim` directory that no
  /// write may reach.
  static func setUp() throws -> TemporaryDirectory {
    let dir = TemporaryDirectory("etcsync-trust")
    try FileManager.default.createDirectory(atPath: dir("victim"), withIntermediateDirectories: true)
    return dir
  }

  static func makeDirectory(_ path: String, mode: mode_t, owner: uid_t = 0) {
    mkdir(path, 0o700)
    chmod(path, mode)
    chown(path, owner, owner == 0 ? 0 : owner)
  }

  @Test("a root under a directory owned by another user is refused, naming the path and the owner; nothing is created")
  func ownedByOther() async throws {
    let dir = try Self.setUp()
    Self.makeDirectory(dir("home"), mode: 0o755, owner: Self.nobody)
    let writer = AtomicWriter(root: dir("home/app"))
    let error = await #expect(throws: FileError.self) { try await writer.write(DesiredFile(bytes: Array("x".utf8)), to: "a.conf") }
    #expect(error?.code == .untrustedPath)
    #expect(error?.path == dir("home"))
    #expect(error?.description.contains("uid 65534") == true, "\(error.map { "\($0)" } ?? "")")
    #expect(!Disk.exists(dir("home/app")))
    // The root itself owned by another user is refused too.
    Self.makeDirectory(dir("theirs"), mode: 0o755, owner: Self.nobody)
    let own = await #expect(throws: FileError.self) { try await AtomicWriter(root: dir("theirs")).write(DesiredFile(bytes: [1]), to: "a") }
    #expect(own?.code == .untrustedPath && own?.path == dir("theirs"))
    #expect(Disk.names(dir("theirs")).isEmpty)
  }

  @Test("a root swapped for a symlink by a user who can write its parent is refused; the target is untouched",
        arguments: [0o777 as mode_t, 0o1777])
  func symlinkSwap(parentMode: mode_t) async throws {
    let dir = try Self.setUp()
    // The parent is writable by everyone; sticky or not, the symlink is the other user's.
    Self.makeDirectory(dir("shared"), mode: parentMode)
    try Disk.symlink(dir("victim"), at: dir("shared/app"))
    lchown(dir("shared/app"), Self.nobody, Self.nobody)
    let writer = AtomicWriter(root: dir("shared/app"))
    let error = await #expect(throws: FileError.self) { try await writer.write(DesiredFile(bytes: Array("x".utf8)), to: "a.conf") }
    #expect(error?.code == .untrustedPath)
    #expect(error?.description.contains(parentMode == 0o777 ? "is writable by other users" : "sticky directory") == true, "\(error.map { "\($0)" } ?? "")")
    #expect(Disk.names(dir("victim")).isEmpty)
  }

  @Test("in a sticky directory, a root that is root's own is used; a world-writable non-sticky parent is refused even for root's own directory")
  func stickyRule() async throws {
    let dir = try Self.setUp()
    Self.makeDirectory(dir("sticky"), mode: 0o1777)
    let writer = AtomicWriter(root: dir("sticky/app"))
    try await writer.write(DesiredFile(bytes: Array("x".utf8)), to: "a.conf")
    #expect(Disk.read(dir("sticky/app/a.conf")) == "x")
    Self.makeDirectory(dir("open"), mode: 0o777)
    Self.makeDirectory(dir("open/app"), mode: 0o755)
    let error = await #expect(throws: FileError.self) { try await AtomicWriter(root: dir("open/app")).write(DesiredFile(bytes: [1]), to: "a") }
    #expect(error?.code == .untrustedPath && error?.path == dir("open"))
    // Group-writable by a group other than root's counts as writable by others.
    Self.makeDirectory(dir("group"), mode: 0o775)
    chown(dir("group"), 0, 65534)
    #expect(TrustedPath.problem(dir("group/app"))?.path == dir("group"))
  }

  @Test("symlinks an operator set up (root's, in root's directories) are followed")
  func operatorSymlink() async throws {
    let dir = try Self.setUp()
    Self.makeDirectory(dir("real"), mode: 0o755)
    try Disk.symlink("real", at: dir("link"))
    try Disk.symlink(dir("link") + "/../real/nested", at: dir("real/alias"))
    try await AtomicWriter(root: dir("link/alias")).write(DesiredFile(bytes: Array("x".utf8)), to: "a.conf")
    #expect(Disk.read(dir("real/nested/a.conf")) == "x")
    // A symlink loop ends with an error, not a hang.
    try Disk.symlink(dir("loop"), at: dir("loop"))
    let loop = await #expect(throws: FileError.self) { try await AtomicWriter(root: dir("loop/x")).write(DesiredFile(bytes: [1]), to: "a") }
    #expect(loop?.errno == ELOOP)
  }

  @Test("the agent refuses the mapping (others still sync) and `check` names the destination's problem")
  func agentAndCheck() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    Self.makeDirectory(h.dir("home"), mode: 0o755, owner: Self.nobody)
    try FileManager.default.createDirectory(atPath: h.dir("victim"), withIntermediateDirectories: true)
    try Disk.symlink(h.dir("victim"), at: h.dir("home/tree"))
    lchown(h.dir("home/tree"), Self.nobody, Self.nobody)
    let yaml = """
      state: {dir: \(h.stateDirectory)}
      mappings:
        - {name: bad, kind: tree, prefix: /t/, dest: \(h.dir("home/tree"))}
        - {name: good, kind: tree, prefix: /t/, dest: \(h.dir("good"))}
      """
    try await h.put("/t/a", "1")
    let configuration = try AgentConfiguration.load(yaml: yaml)
    let results = try await h.agent(configuration).sync()
    #expect(results[mapping: "bad"]?.error?.contains("uid 65534") == true, "\(results)")
    #expect(Disk.read(h.dir("good/a")) == "1")
    #expect(Disk.names(h.dir("victim")).isEmpty)
    let error = #expect(throws: ConfigurationError.self) {
      try AgentConfiguration.load(yaml: yaml, environment: ["PATH": "/usr/bin:/bin"], checkFiles: true)
    }
    #expect(error?.field == "mappings[0].dest")
    #expect(error?.message.contains("\"\(h.dir("home"))\" is owned by uid 65534") == true, "\(error.map { "\($0)" } ?? "")")
  }
}
