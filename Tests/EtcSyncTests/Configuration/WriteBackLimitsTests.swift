import EtcSync
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
}
