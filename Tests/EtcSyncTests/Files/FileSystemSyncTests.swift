import Foundation
import Glibc
import Testing

@testable import EtcSync

/// How two groups of a batch share a `syncfs` (``FileSystemSync/include(_:)``) and how its
/// failures are attributed to each group (``FileSystemSync/firstFailure(in:)``), on real
/// directories of two file systems: the temp directory and /dev/shm.
@Suite("File system syncs shared between groups",
       .enabled(if: FileManager.default.fileExists(atPath: "/dev/shm")))
struct FileSystemSyncTests {
  static func open(_ path: String) throws -> FileDescriptor {
    let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    try #require(fd >= 0, "cannot open \(path)")
    return FileDescriptor(fd)
  }

  @Test("the earlier group's directory stays for a shared device, another device is added, and each group gets only its own devices' failures")
  func sharedSyncAttribution() throws {
    let disk = TemporaryDirectory("fs-sync")
    let memory = "/dev/shm/etcsync-fs-sync-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try FileManager.default.createDirectory(atPath: memory, withIntermediateDirectories: false)
    defer { try? FileManager.default.removeItem(atPath: memory) }
    try FileManager.default.createDirectory(atPath: disk("a"), withIntermediateDirectories: false)
    try FileManager.default.createDirectory(atPath: disk("b"), withIntermediateDirectories: false)
    let (a, b, shm) = (try Self.open(disk("a")), try Self.open(disk("b")), try Self.open(memory))
    let diskDevice = try #require(a.status()).st_dev
    let memoryDevice = try #require(shm.status()).st_dev
    try #require(diskDevice != memoryDevice, "the temp directory is on /dev/shm's file system")

    var previous = FileSystemSync()
    previous.note(a, path: "previous: a")
    var current = FileSystemSync()
    current.note(b, path: "current: b")
    current.note(shm, path: "current: shm")
    var both = previous
    both.include(current)
    #expect(both.directories.map(\.path) == ["previous: a", "current: shm"])
    #expect(both.syncEach().isEmpty, "real syncfs calls on both file systems")

    let diskFailure = FileError(.sync, path: "disk", message: "injected")
    let memoryFailure = FileError(.sync, path: "memory", message: "injected")
    // A failure on the device both noted fails both groups.
    #expect(previous.firstFailure(in: [diskDevice: diskFailure])?.path == "disk")
    #expect(current.firstFailure(in: [diskDevice: diskFailure])?.path == "disk")
    // A failure on a device only the current group noted fails it alone.
    #expect(previous.firstFailure(in: [memoryDevice: memoryFailure]) == nil)
    #expect(current.firstFailure(in: [memoryDevice: memoryFailure])?.path == "memory")
    // Both failed: each group gets the first of its own, in the order it noted them.
    #expect(current.firstFailure(in: [diskDevice: diskFailure, memoryDevice: memoryFailure])?.path == "disk")
    #expect(previous.firstFailure(in: [:]) == nil)
  }
}
