#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Removes what a crash can leave under a mapping's root: temp files
/// (`.NAME.etcsync-tmp-*`, at any depth), a stale `..data_tmp` symlink, and hidden revision
/// directories (`..<revision>.<random>`) that `..data` does not point at. Symlinks are never
/// followed: the walk opens every directory with `O_NOFOLLOW`, and a symlink is at most
/// removed itself (when it has a temp name).
///
/// Run it at start-up, before the mapping writes anything: a publish in progress would look
/// like a leftover.
public enum TemporaryFileCleanup {
  /// What a cleanup removed (full paths).
  public struct Report: Sendable, Hashable {
    /// Temp files and stale symlinks removed.
    public var removedFiles: [String] = []
    /// Stale hidden revision directories removed, with everything in them.
    public var removedDirectories: [String] = []

    /// Whether nothing was found.
    public var isEmpty: Bool { removedFiles.isEmpty && removedDirectories.isEmpty }
  }

  /// Cleans the tree below `root`; a missing root is not an error. The root is opened the
  /// way the writers open it (``TrustedPath``: no symlink on the way, nothing another user
  /// controls), so a parent another user swapped for a symlink cannot point the clean-up at
  /// some other tree.
  public static func clean(root: String) throws(FileError) -> Report {
    let directory: FileDescriptor
    do {
      directory = try RootedDirectory(root: root, create: false, mode: 0o755).directory
    } catch where error.errno == ENOENT {
      return Report()
    }
    var report = Report()
    try clean(directory, path: root, isRoot: true, into: &report)
    return report
  }

  private static func clean(
    _ directory: FileDescriptor, path: String, isRoot: Bool, into report: inout Report
  ) throws(FileError) {
    let current = isRoot ? TreeSwap.currentTarget(of: directory) : nil
    for entry in try listDirectory(directory, path: path) {
      let childPath = joinPath(path, entry.name ?? escapeBytes(entry.bytes))
      if entry.kind == .directory {
        if isRoot && TreeSwap.isRevisionDirectoryName(entry.bytes) && entry.name != current {
          try removeTree(entry.cName, in: directory, path: childPath)
          report.removedDirectories.append(childPath)
        } else {
          let child = retryingEINTR {
            openat(directory.raw, entry.cName, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
          }
          guard child >= 0 else { throw .system(.openDirectory, childPath, "cannot open directory") }
          try clean(FileDescriptor(child), path: childPath, isRoot: false, into: &report)
        }
      } else if isTemporaryFileName(entry.bytes)
        || (isRoot && entry.name == TreeSwap.dataTempLinkName)
      {
        if unlinkat(directory.raw, entry.cName, 0) != 0 && currentErrno() != ENOENT {
          throw .system(.remove, childPath, "cannot remove a leftover temporary file")
        }
        report.removedFiles.append(childPath)
      }
    }
  }
}
