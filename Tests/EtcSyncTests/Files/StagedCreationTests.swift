import EtcSync
import EtcdTestSupport
import Foundation
import Templates
import Glibc
import Testing

@testable import EtcSync

/// A tree's new files with no owner to set are created with their final mode where that needs
/// no `fchmod` (docs/writing.md). Whatever was skipped, each file ends with exactly the mode
/// and owner wanted: checked with `lstat` against the configured or inherited attributes, in a
/// plain directory, a set-group-ID one owned by another group, and one whose default ACL
/// would have set other permissions.
@Suite("Staged files' mode and owner", .enabled(if: geteuid() == 0))
struct StagedCreationTests {
  static let nobody: gid_t = 65534

  /// Files with modes the creation can give (0644, 0600, 0750) and modes it cannot (a group
  /// write, set-user-ID, world-writable), a configured group, and one inheriting the mode and
  /// owner of the file it replaces.
  static func files() -> [ExactString: DesiredFile] {
    var files: [ExactString: DesiredFile] = [:]
    for (index, mode) in ([0o644, 0o600, 0o750, 0o664, 0o4755, 0o666, 0o640] as [mode_t]).enumerated() {
      files[ExactString("d/m\(index)")] = DesiredFile(bytes: Array("m\(index)".utf8), attributes: FileAttributes(mode: mode))
    }
    files["d/grouped"] = DesiredFile(bytes: Array("g".utf8), attributes: FileAttributes(mode: 0o640, groupID: Self.nobody))
    files["d/inherits"] = DesiredFile(bytes: Array("new".utf8))
    files["d/inherits-root"] = DesiredFile(bytes: Array("new".utf8))
    return files
  }

  /// The group the kernel gives a file created in `directory` now: the oracle for a file
  /// with no group of its own to keep.
  static func createdGroup(in directory: String) -> gid_t? {
    let probe = directory + "/.probe"
    let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0o600)
    guard fd >= 0 else { return nil }
    close(fd)
    defer { unlink(probe) }
    return Disk.lstat(probe)?.st_gid
  }

  /// Each file's mode, owner and group on disk are the wanted ones: its own mode (`inherits`:
  /// `inheritedMode`), root's, and its configured group, the replaced file's, or the one the
  /// kernel gives a new file in its directory.
  static func check(_ root: String, _ files: [ExactString: DesiredFile], inheritedMode: mode_t, inheritedGroup: gid_t?) {
    for (path, file) in files {
      guard let info = Disk.lstat(root + "/" + path.string) else { Issue.record("\(path) missing"); continue }
      let wantedMode = file.attributes.mode ?? (path == "d/inherits-root" && inheritedGroup != nil ? 0o644 : inheritedMode)
      #expect(info.st_mode & 0o7777 == wantedMode, "\(path): mode \(String(info.st_mode & 0o7777, radix: 8))")
      #expect(info.st_uid == 0, "\(path): uid \(info.st_uid)")
      let inherited = path == "d/inherits" ? inheritedGroup : path == "d/inherits-root" && inheritedGroup != nil ? 0 : nil
      let wantedGroup = file.attributes.groupID ?? inherited ?? Self.createdGroup(in: root + "/d")
      #expect(info.st_gid == wantedGroup, "\(path): gid \(info.st_gid), wanted \(wantedGroup.map { "\($0)" } ?? "?")")
    }
  }

  @Test("exactly the wanted mode and owner, in place and swapped, in a plain, set-group-ID or default-ACL directory",
        arguments: ["plain", "setgid", "acl"], [TreeWriter.Strategy.perFile, .atomicSwap])
  func attributes(directory: String, strategy: TreeWriter.Strategy) async throws {
    let dir = TemporaryDirectory()
    let root = dir("root")
    // A swapped tree makes its own directories; an in-place one writes into d.
    let directories = strategy == .perFile ? [root, root + "/d"] : [root]
    for path in directories { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }
    switch directory {
    case "setgid":
      for path in directories {
        try #require(chown(path, 0, Self.nobody) == 0 && chmod(path, 0o2755) == 0)
      }
    case "acl":
      // Narrower than the umask: a file created 0644 here gets 0600.
      for path in directories { try PosixACLTests.setfacl(["-d", "-m", "u::rwx,g::---,o::---", path]) }
    default: break
    }
    // The file a key replaces in place: its mode and owner are kept (root:nobody 0751).
    if strategy == .perFile {
      try Disk.write(root + "/d/inherits", "old")
      chown(root + "/d/inherits", 0, Self.nobody)
      chmod(root + "/d/inherits", 0o751)
      // root:root, in a directory whose new files get nobody's group when set-group-ID.
      try Disk.write(root + "/d/inherits-root", "old")
      chown(root + "/d/inherits-root", 0, 0)
      chmod(root + "/d/inherits-root", 0o644)
    }
    let writer = TreeWriter(root: root, strategy: strategy)
    let files = Self.files()
    _ = try await writer.apply(files, deleted: [], revision: 1)
    if strategy == .perFile {
      Self.check(root, files, inheritedMode: 0o751, inheritedGroup: Self.nobody)
    } else {
      // A swapped tree's first revision has nothing to inherit: its new file gets 0644.
      let live = root + "/" + (try FileManager.default.destinationOfSymbolicLink(atPath: root + "/..data"))
      Self.check(live, files, inheritedMode: FileAttributes.defaultMode, inheritedGroup: nil)
    }
    #expect(Disk.temporaryFiles(root).isEmpty)
  }

  @Test("the umask is read from /proc/self/status: the bits a file created 0777 lacks")
  func umaskRead() throws {
    let dir = TemporaryDirectory()
    try FileManager.default.createDirectory(atPath: dir("d"), withIntermediateDirectories: true)
    let fd = open(dir("d/probe"), O_WRONLY | O_CREAT | O_EXCL, 0o777)
    try #require(fd >= 0)
    close(fd)
    let mode = try #require(Disk.lstat(dir("d/probe"))).st_mode & 0o777
    #expect(ProcessUmask.value == ~mode & 0o777)
  }

  @Test("a staged file is created with its final mode only when no owner is to be set and nothing else decides")
  func creationDecision() throws {
    func creation(_ wanted: FileAttributes, existing: stat? = nil, acl: Bool = false, umask: mode_t? = 0o022) -> mode_t? {
      EffectiveAttributes(wanted, existing: existing).finalCreationMode(defaultACL: acl, umask: umask)
    }
    #expect(creation(FileAttributes(mode: 0o640)) == 0o640)
    #expect(creation(FileAttributes()) == 0o644)
    // An owner to set: never readable under its final mode by the group it is created with.
    #expect(creation(FileAttributes(mode: 0o640, groupID: Self.nobody)) == nil)
    #expect(creation(FileAttributes(mode: 0o640, userID: 0)) == nil)
    var existing = stat()
    existing.st_mode = S_IFREG | 0o644
    #expect(creation(FileAttributes(), existing: existing) == nil)
    // Group or other write, set-ID bits, a default ACL: fchmod decides.
    for mode: mode_t in [0o664, 0o646, 0o4755, 0o1755] {
      #expect(creation(FileAttributes(mode: mode)) == nil)
    }
    #expect(creation(FileAttributes(mode: 0o644), acl: true) == nil)
    // A umask that would clip the mode, or none known: fchmod decides.
    #expect(creation(FileAttributes(mode: 0o644), umask: 0o077) == nil)
    #expect(creation(FileAttributes(mode: 0o700), umask: 0o077) == 0o700)
    #expect(creation(FileAttributes(mode: 0o644), umask: nil) == nil)
    // Read-only for the owner too: written first, then made read-only.
    #expect(creation(FileAttributes(mode: 0o444)) == nil)
  }

  @Test("temporary names draw distinct random suffixes")
  func randomNames() {
    let names = (0..<2_000).map { _ in TemporaryName.make(for: "a.conf") }
    #expect(Set(names).count == names.count)
    #expect(names.allSatisfy { $0.hasPrefix(".a.conf.etcsync-tmp-") && $0.utf8.count == ".a.conf.etcsync-tmp-".utf8.count + 16 })
  }
}
