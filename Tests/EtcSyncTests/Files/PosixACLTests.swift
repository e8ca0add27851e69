import Foundation
import Glibc
import Testing

@testable import EtcSync

/// POSIX access ACLs: the parser of the `system.posix_acl_access` attribute, and the trusted
/// path rule that counts a named user or group an ACL lets write as "other users". The
/// file-system tests set real ACLs with `setfacl` (Debian's `acl` package) on the test's temp
/// directory; `nobody` (65534) is the other user.
@Suite("POSIX ACLs")
struct PosixACLTests {
  /// `0200 0000` then (tag, perm, id) little-endian.
  static func bytes(_ entries: [(UInt16, UInt16, UInt32)], version: UInt32 = 2) -> [UInt8] {
    var bytes = withUnsafeBytes(of: version.littleEndian, Array.init)
    for (tag, perm, id) in entries {
      bytes += withUnsafeBytes(of: tag.littleEndian, Array.init)
      bytes += withUnsafeBytes(of: perm.littleEndian, Array.init)
      bytes += withUnsafeBytes(of: id.littleEndian, Array.init)
    }
    return bytes
  }

  static let undefined = UInt32.max

  /// `user::rwx user:nobody:<perm> group::r-x mask::<mask> other::r-x`.
  static func namedUser(_ perm: UInt16, mask: UInt16) -> [UInt8] {
    bytes([(0x01, 7, undefined), (0x02, perm, 65534), (0x04, 5, undefined), (0x10, mask, undefined), (0x20, 5, undefined)])
  }

  @Test("the attribute's bytes are parsed; a named user or group with write through the mask is another writer")
  func parse() throws {
    let acl = try #require(PosixACL(bytes: Self.namedUser(7, mask: 7)))
    #expect(acl.entries.count == 5)
    #expect(acl.entries[1] == PosixACL.Entry(tag: .user, permissions: 7, id: 65534))
    #expect(acl.otherWriters(owner: 0, groupOwner: 0, trustedUser: 0) == ["uid 65534"])
    // The mask takes write away: nobody may only read.
    #expect(try #require(PosixACL(bytes: Self.namedUser(7, mask: 5))).otherWriters(owner: 0, groupOwner: 0, trustedUser: 0).isEmpty)
    // A named entry without write, or for the owner or the agent's own user, is no other writer.
    #expect(try #require(PosixACL(bytes: Self.namedUser(5, mask: 7))).otherWriters(owner: 0, groupOwner: 0, trustedUser: 0).isEmpty)
    #expect(acl.otherWriters(owner: 65534, groupOwner: 0, trustedUser: 0).isEmpty)
    #expect(acl.otherWriters(owner: 0, groupOwner: 0, trustedUser: 65534).isEmpty)
    // A named group, and the owning group's own entry when it is not root's.
    let group = try #require(PosixACL(bytes: Self.bytes([(0x01, 7, Self.undefined), (0x04, 7, Self.undefined), (0x08, 6, 100),
                                                         (0x10, 7, Self.undefined), (0x20, 5, Self.undefined)])))
    #expect(group.otherWriters(owner: 0, groupOwner: 0, trustedUser: 0) == ["gid 100"])
    #expect(group.otherWriters(owner: 0, groupOwner: 50, trustedUser: 0) == ["gid 50", "gid 100"])
    // Named group root is trusted as the mode rule trusts group root.
    let rootGroup = try #require(PosixACL(bytes: Self.bytes([(0x08, 7, 0), (0x10, 7, Self.undefined)])))
    #expect(rootGroup.otherWriters(owner: 0, groupOwner: 0, trustedUser: 0).isEmpty)
  }

  @Test("malformed attributes are not ACLs", arguments: [
    [], [2, 0, 0], [1, 0, 0, 0], [2, 0, 0, 0, 1, 0, 7, 0], [2, 0, 0, 0, 0x40, 0, 7, 0, 0, 0, 0, 0],
  ] as [[UInt8]])
  func malformed(bytes: [UInt8]) {
    #expect(PosixACL(bytes: bytes) == nil)
  }

  @Test("an empty header is an ACL with no entries")
  func headerOnly() throws {
    #expect(try #require(PosixACL(bytes: [2, 0, 0, 0])).entries.isEmpty)
  }

  /// Runs `setfacl argv`; cancels the test when the file system keeps no ACLs.
  static func setfacl(_ argv: [String]) throws {
    let result = runTool(["setfacl"] + argv)
    if result.status != 0 {
      if result.output.contains("Operation not supported") {
        print("PosixACLTests: skipped, the test directory's file system keeps no POSIX ACLs: \(result.output)")
        try Test.cancel("the test directory's file system keeps no POSIX ACLs")
      }
      Issue.record("setfacl \(argv) failed (install Debian's acl package: scripts/install-deps): \(result.output)")
      throw CancellationError()
    }
  }

  @Test("a directory on the way whose ACL lets another user write is refused, naming the ACL; a mask without write passes",
        .enabled(if: geteuid() == 0))
  func trustedPath() async throws {
    let dir = TemporaryDirectory("etcsync-acl")
    let shared = dir("shared")
    mkdir(shared, 0o755)
    #expect(TrustedPath.problem(shared + "/app") == nil)
    try Self.setfacl(["-m", "u:65534:rwx", shared])
    // The mode bits alone (drwxrwxr-x root root) do not show it.
    let problem = try #require(TrustedPath.problem(shared + "/app"))
    #expect(problem.code == .untrustedPath && problem.path == shared)
    #expect(problem.message.contains("ACL write for uid 65534"), "\(problem.message)")
    let writer = AtomicWriter(root: shared + "/app")
    let error = await #expect(throws: FileError.self) { try await writer.write(DesiredFile(bytes: Array("x".utf8)), to: "a.conf") }
    #expect(error?.code == .untrustedPath)
    #expect(Disk.names(shared).isEmpty, "nothing created in it")
    // The mask takes the write away: no other writer.
    try Self.setfacl(["-m", "m::r-x", shared])
    #expect(TrustedPath.problem(shared + "/app") == nil)
    // A named group may write.
    try Self.setfacl(["-b", "-m", "g:65534:rwx", shared])
    #expect(TrustedPath.problem(shared + "/app")?.message.contains("ACL write for gid 65534") == true)
    // Read-only entries are harmless; the walk goes on.
    try Self.setfacl(["-b", "-m", "u:65534:r-x,g:65534:r-x", shared])
    #expect(TrustedPath.problem(shared + "/app") == nil)
    try await writer.write(DesiredFile(bytes: Array("x".utf8)), to: "a.conf")
    #expect(Disk.read(shared + "/app/a.conf") == "x")
    // The owning group's entry decides, not the group bits (which show the mask).
    try Self.setfacl(["-b", "-m", "u:65534:r-x", shared])
    chown(shared, 0, 65534)
    #expect(TrustedPath.problem(shared + "/app") == nil, "group::r-x with mask rwx is not group-writable")
    try Self.setfacl(["-m", "g::rwx", shared])
    #expect(TrustedPath.problem(shared + "/app")?.message.contains("ACL write for gid 65534") == true)
  }

  @Test("check warns about a write-back file an ACL lets another user write", .enabled(if: geteuid() == 0))
  func writeBackWarning() throws {
    let dir = TemporaryDirectory("etcsync-acl")
    try Disk.write(dir("tree/f"), "x")
    chmod(dir("tree"), 0o755)
    let configuration = AgentConfiguration(mappings: [Mapping(name: "t", kind: .tree, prefixes: ["/a/"], dest: dir("tree"), writeBack: true)])
    #expect(configuration.writeBackWarnings().isEmpty)
    try Self.setfacl(["-m", "u:65534:rw-", dir("tree/f")])
    let warnings = configuration.writeBackWarnings()
    #expect(warnings.first?.contains("\"\(dir("tree/f"))\" is writable by uid 65534 (POSIX ACL)") == true, "\(warnings)")
  }
}
