#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Makes a large group of staged files durable with one `syncfs(2)` per file system instead
/// of one `fsync` per file and per directory.
///
/// On ext4 every fsync commits the journal (about 5 ms each on this project's test machine, so
/// 10,000 tree files cost close to a minute); one syncfs writes the same data and metadata and
/// commits once. It also flushes what other processes left dirty on that file system, which is
/// why small groups keep their per-file fsyncs (see ``threshold``). Since Linux 5.8, syncfs
/// reports a write-back error that happened on the file system after the descriptor it is
/// called on was opened: ``note(_:path:)`` must be given a directory before anything in the
/// group is written on its file system (the callers note each directory as they open it,
/// before writing the files in it).
struct FileSystemSync {
  /// From this many files in one group on, the group is synced per file system.
  static let threshold = 32

  /// One directory per file system (by device), in the order they were noted.
  private(set) var directories: [(device: dev_t, fd: FileDescriptor, path: String)] = []
  /// Set when a noted directory is on a file system where `syncfs` is not trusted.
  private var untrusted = false

  /// Remembers `directory` if no directory on its file system was noted yet.
  mutating func note(_ directory: FileDescriptor, path: String) {
    guard let info = directory.status() else { untrusted = true; return }
    guard !directories.contains(where: { $0.device == info.st_dev }) else { return }
    if !Self.trusts(directory) { untrusted = true }
    directories.append((info.st_dev, directory, path))
  }

  /// Whether the group may be synced with `syncfs`: something was noted, the kernel reports
  /// write-back errors through it (Linux 5.8 and later), and every file system is one whose
  /// `syncfs` writes and reports its own data (ext4, XFS, btrfs, tmpfs). Elsewhere (overlayfs
  /// before 5.15 did not pass on its upper layer's errors, FUSE before 5.14 flushed nothing,
  /// network file systems) the callers fsync file by file.
  var isUsable: Bool { !directories.isEmpty && !untrusted && Self.kernelReportsErrors }

  /// ext4, XFS, btrfs and tmpfs, by `statfs`'s magic number.
  private static let trustedTypes: Set<Int> = [0xEF53, 0x5846_5342, 0x9123_683E, 0x0102_1994]

  private static func trusts(_ directory: FileDescriptor) -> Bool {
    // `struct statfs` (not exported by Swift's Glibc module) starts with `f_type`, a long on
    // every 64-bit Linux; 512 bytes is more than the whole struct.
    var buffer = [Int](repeating: 0, count: 64)
    guard buffer.withUnsafeMutableBytes({ linuxFstatfs(directory.raw, $0.baseAddress!) }) == 0 else { return false }
    return trustedTypes.contains(buffer[0])
  }

  /// Whether the running kernel is Linux 5.8 or later (syncfs reports write-back errors).
  static let kernelReportsErrors: Bool = {
    var name = utsname()
    guard uname(&name) == 0 else { return false }
    let release = withUnsafeBytes(of: &name.release) { raw in
      String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
    }
    let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
    guard numbers.count == 2 else { return false }
    return (numbers[0], numbers[1]) >= (5, 8)
  }()

  /// Adds the file systems `other` noted that this one has not: for a device both noted, the
  /// directory noted here first (opened earlier) stays, so one `syncfs` reports the write-back
  /// errors of both groups' files.
  mutating func include(_ other: FileSystemSync) {
    if other.untrusted { untrusted = true }
    for entry in other.directories where !directories.contains(where: { $0.device == entry.device }) {
      directories.append(entry)
    }
  }

  /// `syncfs` on every noted file system, each one even after another failed: the failures by
  /// device, each naming the noted directory.
  func syncEach() -> [dev_t: FileError] {
    var failures: [dev_t: FileError] = [:]
    for entry in directories where retryingEINTR({ linuxSyncfs(entry.fd.raw) }) != 0 {
      failures[entry.device] = FileError(.sync, path: entry.path, errno: currentErrno(), message: "cannot sync the file system")
    }
    return failures
  }

  /// The failure in `failures` (from ``syncEach()`` of a set that includes this one) of the
  /// first file system noted here, or nil when none of them failed.
  func firstFailure(in failures: [dev_t: FileError]) -> FileError? {
    directories.lazy.compactMap { failures[$0.device] }.first
  }

  /// `syncfs` on every noted file system (``syncEach()``); the failure of the first noted one
  /// that failed.
  func sync() -> FileError? {
    firstFailure(in: syncEach())
  }
}

/// glibc's `syncfs(2)`, which Swift's Glibc module does not export (it is declared only under
/// `_GNU_SOURCE`). The symbol is in every glibc since 2.14.
@_silgen_name("syncfs")
private func linuxSyncfs(_ fd: Int32) -> Int32

/// glibc's `fstatfs(2)`, declared in `<sys/vfs.h>`, which Swift's Glibc module does not include.
@_silgen_name("fstatfs")
private func linuxFstatfs(_ fd: Int32, _ buffer: UnsafeMutableRawPointer) -> Int32
