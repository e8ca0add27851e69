import EtcSync
import Foundation
import Glibc
import Templates
import Testing

/// Real file-system failures through mounts: a full tmpfs (ENOSPC), a read-only mount
/// (EROFS), and a bind-mounted target (EBUSY). Needs root with CAP_SYS_ADMIN (CI has it);
/// elsewhere the tests are skipped with the reason.
@Suite("File-system faults through mounts")
struct MountFaultTests {
  static func mount(_ argv: [String], _ what: String) throws {
    let result = runTool(["mount"] + argv)
    if result.status != 0 {
      try Test.cancel("cannot \(what) here (needs root and CAP_SYS_ADMIN): \(result.output)")
    }
  }

  static func unmount(_ path: String) { runTool(["umount", "-l", path]) }

  static func file(_ text: String) -> DesiredFile { DesiredFile(bytes: Array(text.utf8)) }

  @Test("ENOSPC: the old file stays intact and no temp file is left")
  func noSpace() async throws {
    let dir = TemporaryDirectory()
    try FileManager.default.createDirectory(atPath: dir("mnt"), withIntermediateDirectories: true)
    try Self.mount(["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir("mnt")], "mount a tmpfs")
    defer { Self.unmount(dir("mnt")) }
    let writer = AtomicWriter(root: dir("mnt"))
    try await writer.write(Self.file("old"), to: "conf/f")
    let big = DesiredFile(bytes: [UInt8](repeating: 0x61, count: 256 * 1024))
    let error = await #expect(throws: FileError.self) { try await writer.write(big, to: "conf/f") }
    #expect(error?.code == .write)
    #expect(error?.errno == ENOSPC)
    #expect(error?.description.contains("(ENOSPC)") == true)
    #expect(error?.description.contains(dir("mnt/conf")) == true)
    #expect(Disk.read(dir("mnt/conf/f")) == "old")
    #expect(Disk.temporaryFiles(dir("mnt")).isEmpty)
  }

  @Test("EROFS: a read-only mount is a clear error and the file stays")
  func readOnly() async throws {
    let dir = TemporaryDirectory()
    try FileManager.default.createDirectory(atPath: dir("mnt"), withIntermediateDirectories: true)
    try Self.mount(["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir("mnt")], "mount a tmpfs")
    defer { Self.unmount(dir("mnt")) }
    let writer = AtomicWriter(root: dir("mnt"))
    try await writer.write(Self.file("old"), to: "f")
    try Self.mount(["-o", "remount,ro", dir("mnt")], "remount read-only")
    let error = await #expect(throws: FileError.self) { try await writer.write(Self.file("new"), to: "f") }
    #expect(error?.errno == EROFS)
    #expect(error?.description.contains("(EROFS)") == true)
    let deleteError = #expect(throws: FileError.self) { try writer.delete(relativePath: "f") }
    #expect(deleteError?.errno == EROFS)
    #expect(Disk.read(dir("mnt/f")) == "old")
  }

  @Test("EBUSY: a bind-mounted target is never written in place")
  func bindMountedTarget() async throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("root/f"), "old")
    try Disk.write(dir("source"), "mounted")
    try Self.mount(["--bind", dir("source"), dir("root/f")], "bind-mount a file")
    defer { Self.unmount(dir("root/f")) }
    let error = await #expect(throws: FileError.self) {
      try await AtomicWriter(root: dir("root")).write(Self.file("new"), to: "f")
    }
    #expect(error?.code == .rename)
    #expect(error?.errno == EBUSY || error?.errno == EXDEV)
    #expect(error?.description.contains("never falls back to writing in place") == true)
    #expect(Disk.read(dir("root/f")) == "mounted")
    #expect(Disk.read(dir("source")) == "mounted")
    #expect(Disk.temporaryFiles(dir("root")).isEmpty)
    Self.unmount(dir("root/f"))
    #expect(Disk.read(dir("root/f")) == "old")
  }

  @Test("ENOSPC while staging a tree: the old tree stays current")
  func treeNoSpace() async throws {
    let dir = TemporaryDirectory()
    try FileManager.default.createDirectory(atPath: dir("mnt"), withIntermediateDirectories: true)
    try Self.mount(["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir("mnt")], "mount a tmpfs")
    defer { Self.unmount(dir("mnt")) }
    let swap = TreeSwap(root: dir("mnt"))
    try await swap.publish(["a": Self.file("v1"), "b/c": Self.file("v1")], revision: 1)
    let current = try swap.currentDirectory()
    let big = DesiredFile(bytes: [UInt8](repeating: 0x62, count: 256 * 1024))
    let error = await #expect(throws: FileError.self) {
      try await swap.publish(["a": Self.file("v2"), "b/c": big], revision: 2)
    }
    #expect(error?.errno == ENOSPC)
    #expect(try swap.currentDirectory() == current)
    #expect(Disk.read(dir("mnt/a")) == "v1")
    #expect(Disk.read(dir("mnt/b/c")) == "v1")
    #expect(Disk.names(dir("mnt")).count == 4)  // ..data, the revision directory, a, b
  }
}
