#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Opens directories below a mapping root one component at a time with
/// `openat(O_DIRECTORY|O_NOFOLLOW)`, so that no symlink below the root is ever followed,
/// whatever appears there. The root itself is opened by ``TrustedPath``: every component from
/// `/` down, symlinks an operator set up included, must be controlled by root or the agent's
/// user alone.
///
/// Only the innermost directory's descriptor stays open (each parent is closed once its child
/// is open), so a deep path costs one descriptor, not one per level; ``init(root:create:mode:keepChain:syncNew:)``
/// with `keepChain` keeps them all, for removing empty directories bottom-up.
struct RootedDirectory {
  /// The root path as configured.
  let root: String
  /// Descriptors of the opened directories, outermost first: the innermost alone, or with
  /// `keepChain` the root and each component (`[root, a, a/b]`).
  private(set) var descriptors: [FileDescriptor]
  /// The components opened below the root (`["a", "b"]`).
  private(set) var components: [String]
  /// Whether every level's descriptor is kept.
  let keepsChain: Bool
  /// Whether a new directory's parent is fsynced (so that the directory survives a crash).
  let syncsNewDirectories: Bool

  /// The innermost opened directory.
  var directory: FileDescriptor { descriptors[descriptors.count - 1] }

  /// The full path of the innermost opened directory.
  var path: String { joinPath([root] + components) }

  /// Opens (and with `create`, first creates) the root directory. The root and every
  /// directory on the way to it must pass ``TrustedPath``'s rule; with `syncNew`, the parent
  /// of each directory created is fsynced.
  ///
  /// With `expected`, the directory opened must be that one (its descriptor's device and
  /// inode, so no check by path can be raced): another directory, or none, is a
  /// ``FileError/Code/destinationReplaced`` error, never a missing root (which readers take
  /// for "no file") nor a root to create (the recorded one exists by definition).
  init(root: String, create: Bool, mode: mode_t, keepChain: Bool = false, syncNew: Bool = true,
       expected: DirectoryIdentity? = nil) throws(FileError) {
    self.root = root
    self.components = []
    self.keepsChain = keepChain
    self.syncsNewDirectories = syncNew
    let outcome: TrustedPath.Outcome
    do throws(FileError) {
      outcome = try TrustedPath.open(root, create: create && expected == nil, mode: mode, syncNew: syncNew)
    } catch {
      // Gone between two steps of the walk: not "no file" for a recorded root.
      if let expected, error.errno == ENOENT { throw .rootReplaced(root, expected: expected, now: nil) }
      throw error
    }
    switch outcome {
    case .opened(let descriptor):
      if let expected {
        let now = descriptor.status().map { DirectoryIdentity($0) }
        guard now == expected else { throw .rootReplaced(root, expected: expected, now: now) }
      }
      self.descriptors = [descriptor]
    case .missing(let path):
      if let expected { throw .rootReplaced(root, expected: expected, now: nil) }
      throw FileError(
        .openDirectory, path: root, errno: ENOENT,
        message: "cannot open the mapping root directory (\"\(path)\" does not exist)")
    }
  }

  /// Opens `components` below the root in turn; with `create`, missing directories are
  /// created with `mode` (exactly, whatever the umask), and their parent fsynced. Each
  /// parent's descriptor is released once its child is open (unless the chain is kept).
  mutating func descend(into components: some Sequence<String>, create: Bool, mode: mode_t)
    throws(FileError)
  {
    for name in components {
      let child = try Self.openChild(
        of: directory, name: name, path: joinPath(path, name), create: create, mode: mode,
        syncParent: syncsNewDirectories)
      if keepsChain { descriptors.append(child) } else { descriptors = [child] }
      self.components.append(name)
    }
  }

  /// Opens the directory `name` in `parent` without following a symlink; with `create`, a
  /// missing one is made with exactly `mode`, and with `syncParent` the parent is then
  /// fsynced (a directory entry is only durable once its directory is).
  static func openChild(
    of parent: FileDescriptor, name: String, path: String, create: Bool, mode: mode_t,
    syncParent: Bool = false
  ) throws(FileError) -> FileDescriptor {
    let flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
    var fd = retryingEINTR { openat(parent.raw, name, flags) }
    if fd < 0 && currentErrno() == ENOENT && create {
      let created = mkdirat(parent.raw, name, mode) == 0
      if !created && currentErrno() != EEXIST {
        throw .system(.createDirectory, path, "cannot create directory")
      }
      if created && syncParent {
        try syncDirectory(parent, path: splitLastSlash(path)?.directory ?? path)
      }
      fd = retryingEINTR { openat(parent.raw, name, flags) }
      // Only a directory made here gets the mode (mkdirat's is reduced by the umask); one
      // that appeared meanwhile is someone else's.
      if created && fd >= 0 && fchmod(fd, mode) != 0 {
        let error = FileError.system(.setMode, path, "cannot set the mode of a new directory")
        _ = close(fd)
        throw error
      }
    }
    guard fd >= 0 else { throw openFailure(parent: parent, name: name, path: path) }
    return FileDescriptor(fd)
  }

  private static func openFailure(parent: FileDescriptor, name: String, path: String)
    -> FileError
  {
    let error = currentErrno()
    guard error == ELOOP || error == ENOTDIR else {
      return FileError(.openDirectory, path: path, errno: error, message: "cannot open directory")
    }
    if let info = lstatAt(parent, name), FileKind(mode: info.st_mode) == .symlink {
      return FileError(
        .symlinkRefused, path: path, errno: error,
        message: "refusing to follow a symlink below the mapping root")
    }
    return FileError(.notADirectory, path: path, errno: error, message: "not a directory")
  }
}
