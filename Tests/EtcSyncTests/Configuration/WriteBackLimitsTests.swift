@testable import EtcSync
import Foundation
import Glibc
import Testing

/// `writeBackLimits:` in a mapping, and `etcsync check`'s warning about write-back
/// destinations other users can write.
@Suite("Configuration: write-back limits and checks")
struct WriteBackLimitsTests {
  static let tree = "name: a\nkind: tree\nprefix: /a/\ndest: /a\nwriteBack: true\n"

  @Test("the defaults, and every key")
  func keys() throws {
    let defaults = try loadConfiguration(yamlWithOneMapping(Self.tree)).mappings[0].writeBackLimits
    #expect(defaults == WriteBackLimits(deleteShare: 0.5, deleteFiles: 3, keysPerScan: 1000, bytesPerScan: 16 << 20, maxKeys: 10_000))
    let body = Self.tree + "writeBackLimits: {deleteShare: 25%, deleteFiles: 10, keysPerScan: 50, bytesPerScan: 2MiB, maxKeys: 500}"
    let limits = try loadConfiguration(yamlWithOneMapping(body)).mappings[0].writeBackLimits
    #expect(limits == WriteBackLimits(deleteShare: 0.25, deleteFiles: 10, keysPerScan: 50, bytesPerScan: 2 << 20, maxKeys: 500))
    let rates = try loadConfiguration(yamlWithOneMapping(Self.tree + "writeBackLimits: {maxBytes: 1GiB, keysPerMinute: 60, bytesPerMinute: 1MiB}"))
      .mappings[0].writeBackLimits
    #expect(rates == WriteBackLimits(maxBytes: 1 << 30, keysPerMinute: 60, bytesPerMinute: 1 << 20))
    #expect(defaults.maxBytes == 64 << 20 && defaults.keysPerMinute == 1200 && defaults.bytesPerMinute == 16 << 20)
    let fraction = try loadConfiguration(yamlWithOneMapping(Self.tree + "writeBackLimits: {deleteShare: 1, bytesPerScan: 4096}")).mappings[0]
    #expect(fraction.writeBackLimits.deleteShare == 1 && fraction.writeBackLimits.bytesPerScan == 4096)
  }

  @Test("mistakes point at the field", arguments: [
    ("writeBackLimits: {deleteShare: 150%}", "mappings[0].writeBackLimits.deleteShare"),
    ("writeBackLimits: {deleteShare: 0}", "mappings[0].writeBackLimits.deleteShare"),
    ("writeBackLimits: {keysPerScan: 0}", "mappings[0].writeBackLimits.keysPerScan"),
    ("writeBackLimits: {bytesPerScan: 16MB}", "mappings[0].writeBackLimits.bytesPerScan"),
    ("writeBackLimits: {maxKeys: many}", "mappings[0].writeBackLimits.maxKeys"),
    ("writeBackLimits: {maxkeys: 5}", "mappings[0].writeBackLimits.maxkeys"),
    ("writeBackLimits: {maxBytes: 0}", "mappings[0].writeBackLimits.maxBytes"),
    ("writeBackLimits: {keysPerMinute: 0}", "mappings[0].writeBackLimits.keysPerMinute"),
    ("writeBackLimits: {bytesPerMinute: lots}", "mappings[0].writeBackLimits.bytesPerMinute"),
    ("writeBackLimits: {bytesPerMinute: 100}", "mappings[0].writeBackLimits.bytesPerMinute"),
  ])
  func mistakes(line: String, field: String) throws {
    let error = try #require(loadConfigurationError(yamlWithOneMapping(Self.tree + line)))
    #expect(error.field == field, "\(error)")
    #expect(error.line != nil)
  }

  @Test("writeBackLimits needs writeBack: true")
  func needsWriteBack() throws {
    let error = try #require(loadConfigurationError(yamlWithOneMapping("name: a\nkind: tree\nprefix: /a/\ndest: /a\nwriteBackLimits: {maxKeys: 5}")))
    #expect(error.message == "only used with writeBack: true")
  }

  @Test("mass deletion: more than the share and at least deleteFiles")
  func massDeletionRule() {
    let limits = WriteBackLimits()
    #expect(!limits.isMassDeletion(vanished: 2, recorded: 3), "two of three is an edit")
    #expect(limits.isMassDeletion(vanished: 3, recorded: 3))
    #expect(!limits.isMassDeletion(vanished: 5, recorded: 10), "half is not more than half")
    #expect(limits.isMassDeletion(vanished: 6, recorded: 10))
    #expect(!WriteBackLimits(deleteShare: 1).isMassDeletion(vanished: 10, recorded: 10), "100% turns it off")
  }

  @Test("check warns about a write-back destination other users can write")
  func checkWarning() throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("tree/sub/f"), "x")
    let mapping = Mapping(name: "t", kind: .tree, prefixes: ["/a/"], dest: dir("tree"), writeBack: true)
    let readOnly = Mapping(name: "r", kind: .tree, prefixes: ["/b/"], dest: dir("tree"))
    let configuration = AgentConfiguration(mappings: [mapping, readOnly])
    chmod(dir("tree"), 0o755)
    chmod(dir("tree/sub"), 0o755)
    #expect(configuration.writeBackWarnings().isEmpty)
    chmod(dir("tree/sub"), 0o777)
    let warnings = configuration.writeBackWarnings()
    #expect(warnings.count == 1)
    #expect(warnings.first?.contains("mappings[0].dest: \"\(dir("tree/sub"))\" is writable by every user") == true, "\(warnings)")
    chmod(dir("tree/sub"), 0o755)
    #expect(chown(dir("tree/sub/f"), 12345, 12345) == 0)
    #expect(configuration.writeBackWarnings().first?.contains("its owner, uid 12345") == true)
  }

  /// The scanner pushes files of the mapping's `owner` (or root); check judges the same user,
  /// not the one running `check` (root here, which used to call the owner's own files
  /// "writable by its owner, uid 12345").
  @Test("check judges writers against the mapping's owner, as the scanner does", arguments: ["tree", "file"])
  func checkWarningUsesTheOwner(kind: String) throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("dest/sub/f"), "x")
    chmod(dir("dest"), 0o755)
    chmod(dir("dest/sub"), 0o755)
    let mapping = kind == "tree"
      ? Mapping(name: "t", kind: .tree, prefixes: ["/a/"], dest: dir("dest"), owner: "12345", writeBack: true)
      : Mapping(name: "f", kind: .file, key: "/a/f", dest: dir("dest/sub/f"), owner: "12345", writeBack: true)
    #expect(chown(dir("dest/sub/f"), 12345, 12345) == 0)
    #expect(AgentConfiguration(mappings: [mapping]).writeBackWarnings().isEmpty, "the owner's own file")
    #expect(chown(dir("dest/sub/f"), 23456, 23456) == 0)
    let warnings = AgentConfiguration(mappings: [mapping]).writeBackWarnings()
    #expect(warnings.count == 1)
    #expect(warnings.first?.contains("\"\(dir("dest/sub/f"))\" is writable by its owner, uid 23456") == true, "\(warnings)")
    #expect(warnings.first?.contains("writable by the agent's user (its owner \"12345\") only") == true, "\(warnings)")
    // Root's files are the agent's too, whoever the owner.
    #expect(chown(dir("dest/sub/f"), 0, 0) == 0)
    #expect(AgentConfiguration(mappings: [mapping]).writeBackWarnings().isEmpty)
  }

  /// An owner's primary group that others share (`nogroup`, which `nobody` has too) is not
  /// trusted: its other members could write the files.
  @Test("check trusts the owner's primary group only when it is the owner's alone",
        .enabled(if: getpwnam("nobody") != nil && getgrnam("nogroup") != nil))
  func checkWarningSharedGroup() throws {
    let nobody = getpwnam("nobody")!.pointee
    #expect(!AgentConfiguration.WriteBackUser.isPrivate(nobody.pw_gid, of: 0), "nobody's primary group is nogroup")
    let dir = TemporaryDirectory()
    try Disk.write(dir("dest/f"), "x")
    chmod(dir("dest"), 0o755)
    chmod(dir("dest/f"), 0o664)
    // Owned by nobody, group-writable by nogroup, which other system users (_apt, say) have as
    // their primary group too, or which `nobody` shares with no one (then trusted).
    #expect(chown(dir("dest/f"), nobody.pw_uid, nobody.pw_gid) == 0)
    let mapping = Mapping(name: "f", kind: .file, key: "/a/f", dest: dir("dest/f"), owner: "nobody", writeBack: true)
    guard !AgentConfiguration.WriteBackUser.isPrivate(nobody.pw_gid, of: nobody.pw_uid) else {
      #expect(AgentConfiguration(mappings: [mapping]).writeBackWarnings().isEmpty)
      return
    }
    let warnings = AgentConfiguration(mappings: [mapping]).writeBackWarnings()
    #expect(warnings.first?.contains("the group gid \(nobody.pw_gid)") == true, "\(warnings)")
  }

  /// A name on disk need not be UTF-8: the walk keeps names as bytes (it used to decode them
  /// with U+FFFD, lstat a path that does not exist, and skip the entry silently).
  @Test("check looks at tree entries whose names are not UTF-8, and names them escaped")
  func checkWarningSeesNonUTF8Names() throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("tree/f"), "x")
    chmod(dir("tree"), 0o755)
    let mapping = Mapping(name: "t", kind: .tree, prefixes: ["/a/"], dest: dir("tree"), writeBack: true)
    let configuration = AgentConfiguration(mappings: [mapping])
    #expect(configuration.writeBackWarnings().isEmpty)
    // tree/d\xff (a directory, world-writable), then tree/d\xff/g\xfe (a file of another user).
    let odd = Array(dir("tree").utf8) + Array("/d".utf8) + [0xFF]
    #expect(odd.map { CChar(bitPattern: $0) }.withUnsafeBufferPointer { buffer in
      mkdir(Array(buffer) + [0], 0o755)
    } == 0)
    #expect((odd.map { CChar(bitPattern: $0) } + [0]).withUnsafeBufferPointer { chmod($0.baseAddress!, 0o777) } == 0)
    var warnings = configuration.writeBackWarnings()
    #expect(warnings.count == 1)
    #expect(warnings.first?.contains("\"\(dir("tree"))/d\\xff\" is writable by every user (mode 777)") == true, "\(warnings)")
    #expect((odd.map { CChar(bitPattern: $0) } + [0]).withUnsafeBufferPointer { chmod($0.baseAddress!, 0o755) } == 0)
    #expect(configuration.writeBackWarnings().isEmpty)
    let file = odd + Array("/g".utf8) + [0xFE]
    let fd = (file.map { CChar(bitPattern: $0) } + [0]).withUnsafeBufferPointer { open($0.baseAddress!, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644) }
    #expect(fd >= 0)
    #expect(fchown(fd, 12345, 12345) == 0)
    close(fd)
    warnings = configuration.writeBackWarnings()
    #expect(warnings.first?.contains("\"\(dir("tree"))/d\\xff/g\\xfe\" is writable by its owner, uid 12345") == true, "\(warnings)")
  }
}
