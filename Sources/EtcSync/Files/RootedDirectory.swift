#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Opens directories below a mapping root one component at a time with
/// `openat(O_DIRECTORY|O_NOFOLLOW)`, so that no symlink below the root is ever followed,
/// whatever appears there. The root path itself is opened normally: an operator may point a
/// mapping at a path that goes through symlinks.
struct RootedDirectory {
  /// The root path as configured.
  let root: String
  /// Descriptors of the root and of each opened component, in order (`[root, a, a/b]`).
  private(set) var descriptors: [FileDescriptor]
  /// The components opened below the root (`["a", "b"]`).
  private(set) var components: [String]

  /// The innermost opened directory.
  var directory: FileDescriptor { descriptors[descriptors.count - 1] }

  /// The full path of the innermost opened directory.
  var path: String { joinPath([root] + components) }

  /// Opens (and with `create`, first creates) the root directory.
  init(root: String, create: Bool, mode: mode_t) throws(FileError) {
    self.root = root
    self.components = []
    self.descriptors = [try Self.openRoot(root, create: create, mode: mode)]
  }

  /// Opens `components` below the root in turn; with `create`, missing directories are
  /// created with `mode` (exactly, whatever the umask).
  mutating func descend(into components: some Sequence<String>, create: Bool, mode: mode_t)
    throws(FileError)
  {
    for name in components {
      let child = try Self.openChild(
        of: directory, name: name, path: joinPath(path, name), create: create, mode: mode)
      descriptors.append(child)
      self.components.append(name)
    }
  }

  private static func openRoot(_ root: String, create: Bool, mode: mode_t) throws(FileError)
    -> FileDescriptor
  {
    let flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC
    var fd = retryingEINTR { open(root, flags) }
    if fd < 0 && currentErrno() == ENOENT && create {
      try makeDirectories(root, mode: mode)
      fd = retryingEINTR { open(root, flags) }
    }
    guard fd >= 0 else {
      throw .system(.openDirectory, root, "cannot open the mapping root directory")
    }
    return FileDescriptor(fd)
  }

  /// `mkdir -p`, used for the root only (its ancestors may be symlinks the operator set up).
  private static func makeDirectories(_ path: String, mode: mode_t) throws(FileError) {
    var prefix = path.hasPrefix("/") ? "/" : ""
    for piece in path.split(separator: "/") {
      prefix = joinPath(prefix, String(piece))
      if mkdir(prefix, mode) == 0 {
        _ = chmod(prefix, mode)  // exactly the mode, whatever the umask
      } else if currentErrno() != EEXIST {
        throw .system(.createDirectory, prefix, "cannot create directory")
      }
    }
  }

  static func openChild(
    of parent: FileDescriptor, name: String, path: String, create: Bool, mode: mode_t
  ) throws(FileError) -> FileDescriptor {
    let flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
    var fd = retryingEINTR { openat(parent.raw, name, flags) }
    if fd < 0 && currentErrno() == ENOENT && create {
      let created = mkdirat(parent.raw, name, mode) == 0
      if !created && currentErrno() != EEXIST {
        throw .system(.createDirectory, path, "cannot create directory")
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
