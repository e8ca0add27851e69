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
  private var directories: [(device: dev_t, fd: FileDescriptor, path: String)] = []

  /// Remembers `directory` if no directory on its file system was noted yet.
  mutating func note(_ directory: FileDescriptor, path: String) {
    guard let info = directory.status() else { return }
    guard !directories.contains(where: { $0.device == info.st_dev }) else { return }
    directories.append((info.st_dev, directory, path))
  }

  /// Whether any directory was noted.
  var isEmpty: Bool { directories.isEmpty }

  /// `syncfs` on every noted file system; the first failure, naming its directory.
  func sync() -> FileError? {
    for entry in directories where retryingEINTR({ linuxSyncfs(entry.fd.raw) }) != 0 {
      return FileError(.sync, path: entry.path, errno: currentErrno(), message: "cannot sync the file system")
    }
    return nil
  }
}

/// glibc's `syncfs(2)`, which Swift's Glibc module does not export (it is declared only under
/// `_GNU_SOURCE`). The symbol is in every glibc since 2.14.
@_silgen_name("syncfs")
private func linuxSyncfs(_ fd: Int32) -> Int32
