import EtcSync
import Foundation
import Glibc
import Testing

@Suite("Atomic writer")
struct AtomicWriterTests {
  static func file(_ text: String, mode: mode_t? = nil, user: uid_t? = nil, group: gid_t? = nil)
    -> DesiredFile
  {
    DesiredFile(
      bytes: Array(text.utf8), attributes: FileAttributes(mode: mode, userID: user, groupID: group))
  }

  @Test("writes a new file and creates its directories")
  func createsFile() async throws {
    let dir = TemporaryDirectory()
    let writer = AtomicWriter(root: dir("root"), options: .init(directoryMode: 0o750))
    let outcome = try await writer.write(Self.file("hello"), to: "a/b/c.conf")
    #expect(outcome == .created)
    #expect(Disk.read(dir("root/a/b/c.conf")) == "hello")
    #expect(Disk.lstat(dir("root/a/b/c.conf"))?.st_mode == S_IFREG | 0o644)
    #expect(Disk.lstat(dir("root/a/b"))?.st_mode == S_IFDIR | 0o750)
    #expect(Disk.temporaryFiles(dir.path).isEmpty)
  }

  @Test("binary bytes survive exactly")
  func binaryBytes() async throws {
    let dir = TemporaryDirectory()
    let bytes: [UInt8] = (0...255).map(UInt8.init) + [0, 0, 0xFF]
    try await AtomicWriter(root: dir.path).write(DesiredFile(bytes: bytes), to: "bin")
    #expect(FileManager.default.contents(atPath: dir("bin")).map(Array.init) == bytes)
  }

  @Test("unchanged bytes and metadata: no write, same inode and mtime")
  func unchangedIsSkipped() async throws {
    let dir = TemporaryDirectory()
    let writer = AtomicWriter(root: dir.path)
    try await writer.write(Self.file("same", mode: 0o640), to: "f")
    let before = try #require(Disk.lstat(dir("f")))
    try await Task.sleep(for: .milliseconds(20))
    #expect(try await writer.write(Self.file("same", mode: 0o640), to: "f") == .unchanged)
    #expect(try writer.needsWrite(Self.file("same", mode: 0o640), to: "f") == false)
    let after = try #require(Disk.lstat(dir("f")))
    #expect(after.st_ino == before.st_ino)
    #expect(after.st_mtim.tv_sec == before.st_mtim.tv_sec)
    #expect(after.st_mtim.tv_nsec == before.st_mtim.tv_nsec)
  }

  @Test("knownChanged skips the read-back: the file is replaced without comparing")
  func knownChangedSkipsComparison() async throws {
    let dir = TemporaryDirectory()
    let writer = AtomicWriter(root: dir.path)
    try await writer.write(Self.file("v1"), to: "f")
    let before = try #require(Disk.lstat(dir("f")))
    #expect(try await writer.write(Self.file("v1"), to: "f") == .unchanged)
    // The caller vouches that the bytes changed: no comparison, a new inode in place.
    #expect(try await writer.write(Self.file("v1"), to: "f", knownChanged: true) == .replaced)
    #expect(Disk.lstat(dir("f"))?.st_ino != before.st_ino)
    #expect(try await writer.write(Self.file("v2"), to: "f", knownChanged: true) == .replaced)
    #expect(Disk.read(dir("f")) == "v2")
    #expect(Disk.temporaryFiles(dir.path).isEmpty)
  }

  @Test("same bytes with another mode are rewritten")
  func metadataChangeIsWritten() async throws {
    let dir = TemporaryDirectory()
    let writer = AtomicWriter(root: dir.path)
    try await writer.write(Self.file("same", mode: 0o640), to: "f")
    #expect(try writer.needsWrite(Self.file("same", mode: 0o600), to: "f"))
    #expect(try await writer.write(Self.file("same", mode: 0o600), to: "f") == .replaced)
    #expect(Disk.lstat(dir("f"))?.st_mode == S_IFREG | 0o600)
  }

  @Test("the existing mode and owner are kept when none is configured")
  func existingMetadataIsKept() async throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("f"), "old", mode: 0o600)
    let nobody = try FileAttributes.userID("nobody")
    let nogroup = try FileAttributes.groupID("nogroup")
    #expect(chown(dir("f"), nobody, nogroup) == 0)
    #expect(try await AtomicWriter(root: dir.path).write(Self.file("new"), to: "f") == .replaced)
    let info = try #require(Disk.lstat(dir("f")))
    #expect(info.st_mode == S_IFREG | 0o600)
    #expect(info.st_uid == nobody && info.st_gid == nogroup)
    #expect(Disk.read(dir("f")) == "new")
  }

  @Test("configured owner by name, and mode with set-ID bits, are applied before the rename")
  func configuredOwnerAndMode() async throws {
    let dir = TemporaryDirectory()
    let attributes = try FileAttributes.resolve(mode: 0o2750, owner: "nobody", group: "nogroup")
    #expect(attributes == FileAttributes(mode: 0o2750, userID: 65534, groupID: 65534))
    #expect(try FileAttributes.resolve(mode: nil, owner: "123", group: "456")
      == FileAttributes(userID: 123, groupID: 456))
    let observed = ObservedMetadata()
    let writer = AtomicWriter(root: dir.path) { step, path in
      if step == .afterTempWrite { observed.record(Disk.lstat(path)) }
      return .proceed
    }
    try await writer.write(DesiredFile(bytes: Array("x".utf8), attributes: attributes), to: "f")
    for info in [observed.value, Disk.lstat(dir("f"))] {
      #expect(info?.st_mode == S_IFREG | 0o2750)
      #expect(info?.st_uid == 65534 && info?.st_gid == 65534)
    }
  }

  @Test("unknown user and group names are clear errors")
  func unknownOwner() {
    #expect { try FileAttributes.userID("no-such-user-etcsync") } throws: {
      ($0 as? FileError)?.code == .unknownUser
    }
    #expect { try FileAttributes.groupID("no-such-group-etcsync") } throws: {
      ($0 as? FileError)?.code == .unknownGroup
    }
  }

  @Test("a failing check leaves the old file and no temp file")
  func failingCheck() async throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("f"), "old")
    let seen = ObservedMetadata()
    let error = await #expect(throws: FileError.self) {
      try await AtomicWriter(root: dir.path).write(Self.file("new"), to: "f") { staged in
        seen.record(Disk.lstat(staged), text: Disk.read(staged))
        struct Rejected: Error {}
        throw Rejected()
      }
    }
    #expect(error?.code == .checkFailed)
    #expect(seen.text == "new")
    #expect(Disk.read(dir("f")) == "old")
    #expect(Disk.temporaryFiles(dir.path).isEmpty)
  }

  @Test("hooks see the target untouched until the rename")
  func stepOrder() async throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("f"), "old")
    let log = StepLog()
    let writer = AtomicWriter(root: dir.path) { step, path in
      log.append("\(step.rawValue):\(Disk.read(dir("f")) ?? "-"):\(Disk.read(path) ?? "-")")
      return .proceed
    }
    try await writer.write(Self.file("new"), to: "f") { _ in log.append("check") }
    #expect(log.entries == [
      "afterTempWrite:old:new", "afterFsync:old:new", "check", "afterRename:new:new",
    ])
  }

  @Test("an abandoned write leaves the old file and a temp file the cleanup removes")
  func simulatedCrash() async throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("d/f"), "old")
    let writer = AtomicWriter(root: dir.path) { step, _ in step == .afterFsync ? .abandon : .proceed }
    let error = await #expect(throws: FileError.self) {
      try await writer.write(Self.file("new"), to: "d/f")
    }
    #expect(error?.code == .interrupted)
    #expect(Disk.read(dir("d/f")) == "old")
    #expect(Disk.temporaryFiles(dir.path).count == 1)
    let report = try TemporaryFileCleanup.clean(root: dir.path)
    #expect(report.removedFiles.count == 1)
    #expect(Disk.temporaryFiles(dir.path).isEmpty)
    #expect(Disk.read(dir("d/f")) == "old")
  }

  @Test("without createDirectories a missing directory is an error")
  func noCreate() async throws {
    let dir = TemporaryDirectory()
    let writer = AtomicWriter(root: dir.path, options: .init(createDirectories: false))
    let error = await #expect(throws: FileError.self) {
      try await writer.write(Self.file("x"), to: "missing/f")
    }
    #expect(error?.code == .openDirectory)
    #expect(error?.errno == ENOENT)
    #expect(error?.description.contains("No such file or directory (ENOENT)") == true)
  }

  @Test("invalid relative paths and directory targets are refused")
  func invalidTargets() async throws {
    let dir = TemporaryDirectory()
    let writer = AtomicWriter(root: dir.path)
    for path in ["../x", "/abs", "a//b", "a/./b", ""] {
      let error = await #expect(throws: FileError.self) { try await writer.write(Self.file("x"), to: path) }
      #expect(error?.code == .invalidPath)
    }
    try FileManager.default.createDirectory(atPath: dir("isdir"), withIntermediateDirectories: true)
    let error = await #expect(throws: FileError.self) { try await writer.write(Self.file("x"), to: "isdir") }
    #expect(error?.code == .isADirectory)
  }

  @Test("delete removes the file and the directories it left empty")
  func delete() async throws {
    let dir = TemporaryDirectory()
    let writer = AtomicWriter(root: dir("root"))
    try await writer.write(Self.file("1"), to: "a/b/c/one")
    try await writer.write(Self.file("2"), to: "a/two")
    #expect(try writer.delete(relativePath: "a/b/c/one") == .deleted)
    #expect(!Disk.exists(dir("root/a/b")))
    #expect(Disk.read(dir("root/a/two")) == "2")
    #expect(try writer.delete(relativePath: "a/b/c/one") == .absent)
    #expect(try writer.delete(relativePath: "a/two") == .deleted)
    #expect(Disk.exists(dir("root")))
    #expect(Disk.names(dir("root")).isEmpty)
    try await writer.write(Self.file("x"), to: "keep/f")
    let error = #expect(throws: FileError.self) { try writer.delete(relativePath: "keep") }
    #expect(error?.code == .isADirectory)
  }

  @Test("forFile splits a destination into its directory (the root) and its name")
  func forFile() async throws {
    let dir = TemporaryDirectory()
    let (writer, name) = AtomicWriter.forFile(dir("etc/app.conf"))
    #expect(writer.root == dir("etc") && name == "app.conf")
    try await writer.write(Self.file("x"), to: name)
    #expect(Disk.read(dir("etc/app.conf")) == "x")
    #expect(AtomicWriter.forFile("/top").writer.root == "/")
  }

  @Test("contents reads the current file, nil when absent")
  func contents() async throws {
    let dir = TemporaryDirectory()
    let writer = AtomicWriter(root: dir.path)
    #expect(try writer.contents(of: "nope/f") == nil)
    try await writer.write(Self.file("abc"), to: "x/f")
    #expect(try writer.contents(of: "x/f") == Array("abc".utf8))
  }
}

/// Records a `stat` (and text) seen from inside a hook or check.
final class ObservedMetadata: @unchecked Sendable {
  private let lock = NSLock()
  private var info: stat?
  private var seenText: String?

  func record(_ info: stat?, text: String? = nil) {
    lock.withLock {
      self.info = info
      self.seenText = text
    }
  }

  var value: stat? { lock.withLock { info } }
  var text: String? { lock.withLock { seenText } }
}

/// An ordered log of strings, appended from hooks.
final class StepLog: @unchecked Sendable {
  private let lock = NSLock()
  private var items: [String] = []

  func append(_ entry: String) { lock.withLock { items.append(entry) } }
  var entries: [String] { lock.withLock { items } }
}
