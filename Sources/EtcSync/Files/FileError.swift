#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file-system operation of the writer, the tree swap, the cleanup or the state file
/// failed. It names what was being done, the path, and the errno text (`ENOSPC`, `EROFS`…).
public struct FileError: Error, Sendable, CustomStringConvertible {
  /// What kind of operation failed; stable enough to switch on and to count in metrics.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    enum Value: String, Sendable {
      case invalidPath, openDirectory, symlinkRefused, notADirectory, isADirectory
      case createDirectory, createTemporary, write, read, setOwner, setMode, sync
      case checkFailed, rename, remove, symlink, unknownUser, unknownGroup
      case interrupted, conflict, encode, untrustedPath, destinationReplaced
    }
    let value: Value
    private init(_ value: Value) { self.value = value }

    /// The relative path is not a clean path below the root.
    public static let invalidPath = Code(.invalidPath)
    /// A directory on the way to the target could not be opened (or created).
    public static let openDirectory = Code(.openDirectory)
    /// A symlink was found below the root where a directory or file was expected; it is
    /// never followed.
    public static let symlinkRefused = Code(.symlinkRefused)
    /// A path component that must be a directory is something else.
    public static let notADirectory = Code(.notADirectory)
    /// The target of a file write or delete is a directory.
    public static let isADirectory = Code(.isADirectory)
    /// A missing directory could not be created.
    public static let createDirectory = Code(.createDirectory)
    /// The temporary file beside the target could not be created.
    public static let createTemporary = Code(.createTemporary)
    /// Writing bytes failed (`ENOSPC`, `EDQUOT`, `EIO`…).
    public static let write = Code(.write)
    /// Reading an existing file or directory failed.
    public static let read = Code(.read)
    /// `fchown` failed, or the configured owner could not be applied.
    public static let setOwner = Code(.setOwner)
    /// `fchmod` failed.
    public static let setMode = Code(.setMode)
    /// `fsync` of a file or directory failed.
    public static let sync = Code(.sync)
    /// The `check` hook rejected the staged file; the target was left untouched.
    public static let checkFailed = Code(.checkFailed)
    /// `renameat` failed (`EBUSY`/`EXDEV` for a bind-mounted target, `EROFS`…).
    public static let rename = Code(.rename)
    /// `unlinkat` failed.
    public static let remove = Code(.remove)
    /// Creating or replacing a symlink of the tree swap failed.
    public static let symlink = Code(.symlink)
    /// A user name is not known to the system (`getpwnam`).
    public static let unknownUser = Code(.unknownUser)
    /// A group name is not known to the system (`getgrnam`).
    public static let unknownGroup = Code(.unknownGroup)
    /// A test hook abandoned the operation (a simulated crash): nothing was cleaned up.
    public static let interrupted = Code(.interrupted)
    /// Something not owned by etcsync stands where it needs to write.
    public static let conflict = Code(.conflict)
    /// The state could not be encoded. No longer produced: the state file's writer
    /// (``StateJSON``) cannot fail; kept for code that matches on it.
    public static let encode = Code(.encode)
    /// A directory or symlink on the way to a mapping root (or the root itself) is controlled
    /// by a user other than root and the agent's: it could redirect the agent's writes.
    public static let untrustedPath = Code(.untrustedPath)
    /// The mapping root the writer (or reader) opened is not the directory recorded for it
    /// (``DirectoryIdentity``: another device or inode, an unmounted volume's mount point, a
    /// directory replaced after the agent checked it), or it is gone: nothing was read or
    /// written in it.
    public static let destinationReplaced = Code(.destinationReplaced)

    public var description: String { value.rawValue }
  }

  /// What kind of operation failed.
  public var code: Code
  /// The full path the operation was about.
  public var path: String
  /// The errno value, when a system call failed.
  public var errno: Int32?
  /// What was being done, in words.
  public var message: String
  /// The underlying error, for example the error of a failed `check` command.
  public var cause: (any Error)?

  /// Creates an error; `errno` is the value the failed call left, if any.
  public init(
    _ code: Code, path: String, errno: Int32? = nil, message: String,
    cause: (any Error)? = nil
  ) {
    self.code = code
    self.path = path
    self.errno = errno
    self.message = message
    self.cause = cause
  }

  public var description: String {
    var text = "\(message): \(path)"
    if let errno { text += ": \(Self.errnoText(errno))" }
    if let cause { text += " (\(cause))" }
    return text
  }

  /// `strerror` text followed by the symbolic name, e.g. "No space left on device (ENOSPC)".
  public static func errnoText(_ value: Int32) -> String {
    let text = String(cString: strerror(value))
    if let name = errnoNames[value] { return "\(text) (\(name))" }
    return "\(text) (errno \(value))"
  }

  private static let errnoNames: [Int32: String] = [
    EPERM: "EPERM", ENOENT: "ENOENT", EINTR: "EINTR", EIO: "EIO", EBADF: "EBADF",
    EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES", EBUSY: "EBUSY", EEXIST: "EEXIST",
    EXDEV: "EXDEV", ENOTDIR: "ENOTDIR", EISDIR: "EISDIR", EINVAL: "EINVAL", EMFILE: "EMFILE",
    ENFILE: "ENFILE", EFBIG: "EFBIG", ENOSPC: "ENOSPC", EROFS: "EROFS", EMLINK: "EMLINK",
    ENAMETOOLONG: "ENAMETOOLONG", ENOTEMPTY: "ENOTEMPTY", ELOOP: "ELOOP", EDQUOT: "EDQUOT",
    ETXTBSY: "ETXTBSY", ESTALE: "ESTALE",
  ]
}

extension FileError {
  /// An error for the system call that just failed, reading the current `errno`.
  static func system(_ code: Code, _ path: String, _ message: String) -> FileError {
    FileError(code, path: path, errno: currentErrno(), message: message)
  }
}

/// The calling thread's `errno`.
@inline(__always)
func currentErrno() -> Int32 {
  #if canImport(Glibc)
  return Glibc.errno
  #else
  return Darwin.errno
  #endif
}
