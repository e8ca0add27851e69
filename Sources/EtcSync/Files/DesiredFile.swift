#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Mode and ownership wanted for a written file. A nil field keeps what the existing file
/// has; for a new file, the mode defaults to 0644 and the owner to the agent's own user and
/// group (or the directory's group where it is set-group-ID).
public struct FileAttributes: Sendable, Hashable {
  /// Permission bits (`0o644`), including set-ID and sticky bits when given.
  public var mode: mode_t?
  /// Numeric owner; resolve a user name with ``FileAttributes/userID(_:)``.
  public var userID: uid_t?
  /// Numeric group; resolve a group name with ``FileAttributes/groupID(_:)``.
  public var groupID: gid_t?

  /// The mode of a new file when none is configured.
  public static let defaultMode: mode_t = 0o644

  /// Creates attributes; nil fields keep the existing file's values.
  public init(mode: mode_t? = nil, userID: uid_t? = nil, groupID: gid_t? = nil) {
    self.mode = mode
    self.userID = userID
    self.groupID = groupID
  }

  /// Resolves attributes as a mapping configures them: `owner` and `group` are a name
  /// (looked up with `getpwnam`/`getgrnam`) or a numeric id. Resolve once per mapping, not
  /// per file.
  public static func resolve(mode: mode_t?, owner: String?, group: String?) throws(FileError)
    -> FileAttributes
  {
    FileAttributes(
      mode: mode,
      userID: try owner.map { (name) throws(FileError) in try userID(name) },
      groupID: try group.map { (name) throws(FileError) in try groupID(name) })
  }

  /// The user id for a user name or a numeric id.
  public static func userID(_ owner: String) throws(FileError) -> uid_t {
    if let id = uid_t(owner) { return id }
    var entry = passwd()
    var result: UnsafeMutablePointer<passwd>?
    var buffer = [CChar](repeating: 0, count: 16 * 1024)
    let status = getpwnam_r(owner, &entry, &buffer, buffer.count, &result)
    guard status == 0, result != nil else {
      throw FileError(
        .unknownUser, path: owner, errno: status == 0 ? nil : status,
        message: "unknown user")
    }
    return entry.pw_uid
  }

  /// The group id for a group name or a numeric id.
  public static func groupID(_ group: String) throws(FileError) -> gid_t {
    if let id = gid_t(group) { return id }
    var entry = Glibc.group()
    var result: UnsafeMutablePointer<Glibc.group>?
    var buffer = [CChar](repeating: 0, count: 16 * 1024)
    let status = getgrnam_r(group, &entry, &buffer, buffer.count, &result)
    guard status == 0, result != nil else {
      throw FileError(
        .unknownGroup, path: group, errno: status == 0 ? nil : status,
        message: "unknown group")
    }
    return entry.gr_gid
  }
}

/// One file as the plan wants it: its bytes and its attributes.
public struct DesiredFile: Sendable, Hashable {
  /// The exact bytes of the file.
  public var bytes: [UInt8]
  /// Mode and ownership; nil fields keep the existing file's.
  public var attributes: FileAttributes

  /// Creates a desired file.
  public init(bytes: [UInt8], attributes: FileAttributes = FileAttributes()) {
    self.bytes = bytes
    self.attributes = attributes
  }
}

/// The mode and owner a file will get, once "keep the existing" has been decided.
struct EffectiveAttributes: Equatable {
  var mode: mode_t
  var userID: uid_t?
  var groupID: gid_t?
  /// Whether the owner was configured (a failed `fchown` is then an error) or inherited
  /// from the existing file (a failed `fchown` for lack of privilege is tolerated).
  var ownerConfigured: Bool

  init(_ wanted: FileAttributes, existing: stat?) {
    mode = wanted.mode ?? existing.map { $0.st_mode & 0o7777 } ?? FileAttributes.defaultMode
    userID = wanted.userID ?? existing?.st_uid
    groupID = wanted.groupID ?? existing?.st_gid
    ownerConfigured = wanted.userID != nil || wanted.groupID != nil
  }

  /// Whether an existing file's metadata already is what is wanted.
  func matches(_ info: stat) -> Bool {
    (info.st_mode & 0o7777) == mode
      && (userID ?? info.st_uid) == info.st_uid
      && (groupID ?? info.st_gid) == info.st_gid
  }

  /// The final mode, when a staged file can be created with it and needs no `fchmod` after;
  /// nil when it is created 0600 (the owner's alone) until ``apply(to:path:createdFinal:)``
  /// sets owner and mode. Only a file that keeps the owner it is created with (none configured
  /// or inherited: a new file, with no `fchown` to come, so it is never readable under its
  /// final mode by a group it is about to leave), whose mode lets the owner write (a read-only
  /// mode is set once the bytes are in) and grants no write to group or others and no set-ID
  /// or sticky bit, which the umask (`umask`, the process's) leaves whole, in a directory with
  /// no default ACL (`defaultACL`, which would replace the umask).
  func finalCreationMode(defaultACL: Bool, umask: mode_t? = ProcessUmask.value) -> mode_t? {
    guard userID == nil, groupID == nil, !defaultACL, mode & ~0o755 == 0, mode & 0o200 != 0, let umask, mode & umask == 0
    else { return nil }
    return mode
  }

  /// Applies owner, then mode, to a freshly created file: `fchown` first because it clears
  /// set-ID bits that `fchmod` then sets. A file created with ``finalCreationMode(defaultACL:umask:)``
  /// (`createdFinal`) needs neither.
  func apply(to fd: FileDescriptor, path: String, createdFinal: Bool = false) throws(FileError) {
    if userID != nil || groupID != nil {
      let user = userID ?? uid_t.max
      let group = groupID ?? gid_t.max
      if fchown(fd.raw, user, group) != 0 {
        let error = currentErrno()
        if ownerConfigured || error != EPERM {
          throw FileError(.setOwner, path: path, errno: error, message: "cannot set the owner")
        }
      }
    }
    if createdFinal { return }
    if fchmod(fd.raw, mode) != 0 {
      throw .system(.setMode, path, "cannot set the mode")
    }
  }
}

/// The process's umask, read once from `/proc/self/status` (Linux 4.7 and later); nil where
/// it cannot be read (staged files are then created 0600 and given their mode by `fchmod`).
/// etcsync never changes its umask.
enum ProcessUmask {
  static let value: mode_t? = {
    let fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC)
    guard fd >= 0, case .success(let bytes) = readAll(FileDescriptor(fd)) else { return nil }
    for line in bytes.split(separator: UInt8(ascii: "\n")) where line.starts(with: Array("Umask:".utf8)) {
      let digits = line.dropFirst(6).filter { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }
      return mode_t(String(decoding: digits, as: UTF8.self), radix: 8)
    }
    return nil
  }()
}

/// A regular file's mode and owner as `diff` shows them: what is on disk, or what a write
/// would set.
public struct FileMetadata: Sendable, Hashable {
  /// Permission bits, set-ID and sticky bits included (no file type).
  public var mode: mode_t
  /// Numeric owner.
  public var userID: uid_t
  /// Numeric group.
  public var groupID: gid_t

  /// Creates metadata.
  public init(mode: mode_t, userID: uid_t, groupID: gid_t) {
    self.mode = mode
    self.userID = userID
    self.groupID = groupID
  }

  /// An existing file's metadata, from its `lstat`.
  init(_ info: stat) {
    self.init(mode: info.st_mode & 0o7777, userID: info.st_uid, groupID: info.st_gid)
  }

  /// What a write of `wanted` over the file `info` describes would leave: the configured
  /// fields, and the file's own for the others (as ``EffectiveAttributes`` decides).
  init(_ wanted: FileAttributes, over info: stat) {
    let effective = EffectiveAttributes(wanted, existing: info)
    self.init(mode: effective.mode, userID: effective.userID ?? info.st_uid, groupID: effective.groupID ?? info.st_gid)
  }
}
