#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Opens a mapping root (or the state directory) from `/` down one component at a time,
/// refusing a path that another user controls. The root agent writes there, so a user who
/// could swap one of the directories on the way for a symlink could make it write anywhere.
///
/// The rule, checked at every component with `fstatat(AT_SYMLINK_NOFOLLOW)` and
/// `openat(O_NOFOLLOW)` (no component is ever resolved by the kernel behind the check):
/// - every directory on the way, the root itself included, is owned by root or by the
///   agent's own user (its effective uid);
/// - a directory on the way is not writable by other users (world-writable, or
///   group-writable with a group other than root's, or granting write in its POSIX access
///   ACL to a named user or group other than root and the agent's user), unless it is
///   sticky (`/tmp`) and the entry taken in it is owned by root or the agent's user (then no
///   one else may rename or remove it);
/// - a symlink on the way is followed (an operator may have set one up: `/var/run → /run`)
///   when the directory it stands in passes the rule above; its target is walked by the same
///   rule, at most 40 symlinks in all.
///
/// A missing component is created (with `create`) by the agent itself, so it is the agent's;
/// its parent is fsynced, so the new directory survives a power cut.
/// The root itself may be writable by others (a write-back tree shared with a team): what
/// lies below it is opened with `O_NOFOLLOW` by ``RootedDirectory``.
enum TrustedPath {
  /// The most symlinks one walk follows (the kernel's own limit, `MAXSYMLINKS`).
  static let maximumSymlinks = 40

  #if os(Linux)
  /// `O_PATH`, which Swift's Glibc does not export: a descriptor that only names a
  /// directory, so that walking through one needs search permission alone.
  private static let pathOnly: Int32 = 0o10000000
  #else
  private static let pathOnly: Int32 = 0
  #endif

  /// Whether `uid` may own a component: root, or the user the agent runs as.
  static func isTrustedOwner(_ uid: uid_t) -> Bool { uid == 0 || uid == geteuid() }

  /// Whether users other than root and the directory's owner may create, rename or remove
  /// entries in the directory `info` describes. With an access ACL (`acl`), its named users
  /// and groups count too, and the owning group's own entry rather than the group bits
  /// (which then show the mask).
  static func othersMayWrite(_ info: stat, acl: PosixACL? = nil) -> Bool {
    if info.st_mode & S_IWOTH != 0 { return true }
    if let acl {
      return !acl.otherWriters(owner: info.st_uid, groupOwner: info.st_gid, trustedUser: geteuid()).isEmpty
    }
    return info.st_mode & S_IWGRP != 0 && info.st_gid != 0
  }

  /// What a walk found: the opened directory, or (without `create`) the first missing path.
  enum Outcome {
    case opened(FileDescriptor)
    case missing(String)
  }

  /// Opens the directory `path` for reading, checking every component; with `create`,
  /// missing directories are created with `mode` (exactly, whatever the umask), and with
  /// `syncNew` each new directory's parent is fsynced.
  static func open(_ path: String, create: Bool, mode: mode_t, syncNew: Bool) throws(FileError) -> Outcome {
    var walk = try Walk(path: path)
    while let name = walk.pending.popLast() {
      if let missing = try walk.step(name, create: create, mode: mode, syncNew: syncNew) {
        return .missing(missing)
      }
    }
    // The walk holds `O_PATH` descriptors; the root is opened for reading.
    let fd = retryingEINTR { openat(walk.current.raw, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
    guard fd >= 0 else { throw .system(.openDirectory, walk.currentPath, "cannot open the directory") }
    return .opened(FileDescriptor(fd))
  }

  /// Why the existing part of `path` is refused, or nil when it passes (a missing part
  /// would be created by the agent). Reads only; for `etcsync check`.
  static func problem(_ path: String) -> FileError? {
    do throws(FileError) {
      _ = try open(path, create: false, mode: 0o755, syncNew: false)
      return nil
    } catch {
      return error.code == .untrustedPath ? error : nil
    }
  }

  /// The state of one walk: the directory reached so far and the components still to take.
  private struct Walk {
    let path: String
    /// Components still to walk, the next one last.
    var pending: [String]
    var current: FileDescriptor
    var currentInfo: stat
    /// The current directory's access ACL (nil: none), read from its descriptor.
    var currentACL: PosixACL?
    var currentPath: String
    var symlinks = 0

    init(path: String) throws(FileError) {
      self.path = path
      self.pending = pathSegments(path).reversed()
      let start = path.utf8.first == UInt8(ascii: "/") ? "/" : "."
      (self.current, self.currentInfo) = try Self.openStart(start, for: path)
      self.currentACL = PosixACL.read(descriptor: self.current.raw)
      self.currentPath = start
      try self.checkOwner(self.currentInfo, at: start)
    }

    private static func openStart(_ start: String, for path: String) throws(FileError) -> (FileDescriptor, stat) {
      let fd = retryingEINTR { Glibc.open(start, TrustedPath.pathOnly | O_DIRECTORY | O_CLOEXEC) }
      guard fd >= 0 else { throw .system(.openDirectory, start, "cannot open the directory") }
      let descriptor = FileDescriptor(fd)
      guard let info = descriptor.status() else { throw .system(.openDirectory, start, "cannot inspect the directory") }
      return (descriptor, info)
    }

    /// Takes `name` in the current directory; returns the path when it is missing and may
    /// not be created.
    mutating func step(_ name: String, create: Bool, mode: mode_t, syncNew: Bool) throws(FileError) -> String? {
      if name == "." { return nil }
      let childPath = joinPath(self.currentPath, name)
      if name == ".." {
        // The kernel's `..`, which no one can swap; the directory it leads to is checked.
        try self.enter(name, path: childPath, expected: nil)
        return nil
      }
      var created = false
      var entry = stat()
      if fstatat(self.current.raw, name, &entry, AT_SYMLINK_NOFOLLOW) != 0 {
        guard currentErrno() == ENOENT else {
          throw .system(.openDirectory, childPath, "cannot inspect a directory on the way to \"\(self.path)\"")
        }
        // The agent would create it, as its own: refused where others could replace it,
        // before anything is created there.
        var own = stat()
        own.st_uid = geteuid()
        try self.checkReplaceable(name, entry: own, at: childPath)
        guard create else { return childPath }
        created = mkdirat(self.current.raw, name, mode) == 0
        if !created && currentErrno() != EEXIST {
          throw .system(.createDirectory, childPath, "cannot create directory")
        }
        if created && syncNew { try self.syncCurrent() }
        guard fstatat(self.current.raw, name, &entry, AT_SYMLINK_NOFOLLOW) == 0 else {
          throw .system(.openDirectory, childPath, "cannot open the directory")
        }
      }
      try self.checkReplaceable(name, entry: entry, at: childPath)
      switch FileKind(mode: entry.st_mode) {
      case .symlink:
        try self.follow(name, at: childPath)
      case .directory:
        // Exactly the mode, whatever the umask; only for a directory made here. By name (an
        // O_PATH descriptor takes no fchmod): no one else can replace it in this directory.
        if created && fchmodat(self.current.raw, name, mode, 0) != 0 {
          throw .system(.setMode, childPath, "cannot set the mode of a new directory")
        }
        try self.enter(name, path: childPath, expected: entry)
      case .regular, .other:
        throw FileError(.notADirectory, path: childPath, errno: ENOTDIR, message: "not a directory")
      }
      return nil
    }

    /// Refuses `name` when someone other than root or the agent could replace it: its
    /// directory is writable by others and not sticky, or sticky and `name` is theirs.
    private func checkReplaceable(_ name: String, entry: stat, at childPath: String) throws(FileError) {
      guard TrustedPath.othersMayWrite(self.currentInfo, acl: self.currentACL) else { return }
      let sticky = self.currentInfo.st_mode & S_ISVTX != 0
      if sticky && TrustedPath.isTrustedOwner(entry.st_uid) { return }
      let detail =
        sticky
        ? "\"\(childPath)\" is owned by \(ownerText(entry.st_uid)) in the sticky directory \"\(self.currentPath)\", so its owner can replace it"
        : "\"\(self.currentPath)\" (\(modeText(self.currentInfo))\(aclText)) is writable by other users, who can replace \"\(name)\" with a symlink"
      throw untrusted(detail, at: sticky ? childPath : self.currentPath)
    }

    /// `, ACL write for uid 1000` when the current directory's ACL lets others write.
    private var aclText: String {
      guard let acl = self.currentACL else { return "" }
      let writers = acl.otherWriters(owner: self.currentInfo.st_uid, groupOwner: self.currentInfo.st_gid, trustedUser: geteuid())
      return writers.isEmpty ? "" : ", ACL write for " + writers.joined(separator: ", ")
    }

    /// Refuses a directory owned by someone other than root or the agent's user.
    private func checkOwner(_ info: stat, at path: String) throws(FileError) {
      guard !TrustedPath.isTrustedOwner(info.st_uid) else { return }
      throw untrusted("\"\(path)\" is owned by \(ownerText(info.st_uid)) (\(modeText(info))), who can replace what is in it", at: path)
    }

    private func untrusted(_ detail: String, at offending: String) -> FileError {
      FileError(
        .untrustedPath, path: offending,
        message: "refusing \"\(self.path)\": \(detail); every directory and symlink on the way must belong to "
          + "root or the agent's user (uid \(geteuid())) and not be writable by other users")
    }

    /// Opens the directory `name` without following a symlink and makes it the current one;
    /// `expected` is its `lstat`, which the opened directory must still be.
    private mutating func enter(_ name: String, path childPath: String, expected: stat?) throws(FileError) {
      let flags = TrustedPath.pathOnly | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
      let fd = retryingEINTR { openat(self.current.raw, name, flags) }
      guard fd >= 0 else { throw .system(.openDirectory, childPath, "cannot open the directory") }
      let descriptor = FileDescriptor(fd)
      guard let info = descriptor.status() else { throw .system(.openDirectory, childPath, "cannot inspect the directory") }
      if let expected, expected.st_ino != info.st_ino || expected.st_dev != info.st_dev {
        throw FileError(.untrustedPath, path: childPath, message: "refusing \"\(self.path)\": \"\(childPath)\" was replaced while it was opened")
      }
      try self.checkOwner(info, at: childPath)
      self.current = descriptor
      self.currentInfo = info
      self.currentACL = PosixACL.read(descriptor: descriptor.raw)
      self.currentPath = childPath
    }

    /// Continues the walk at the symlink `name`'s target.
    private mutating func follow(_ name: String, at childPath: String) throws(FileError) {
      self.symlinks += 1
      guard self.symlinks <= TrustedPath.maximumSymlinks else {
        throw FileError(.openDirectory, path: childPath, errno: ELOOP, message: "too many symlinks on the way to \"\(self.path)\"")
      }
      var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
      let count = buffer.withUnsafeMutableBufferPointer { raw in
        raw.baseAddress!.withMemoryRebound(to: CChar.self, capacity: raw.count) { readlinkat(self.current.raw, name, $0, raw.count) }
      }
      guard count > 0, count <= Int(PATH_MAX) else { throw .system(.openDirectory, childPath, "cannot read the symlink") }
      let target = String(decoding: buffer[..<count], as: UTF8.self)
      if target.utf8.first == UInt8(ascii: "/") {
        (self.current, self.currentInfo) = try Self.openStart("/", for: self.path)
        self.currentACL = PosixACL.read(descriptor: self.current.raw)
        self.currentPath = "/"
        try self.checkOwner(self.currentInfo, at: "/")
      }
      self.pending.append(contentsOf: pathSegments(target).reversed())
    }

    /// Fsyncs the current directory (an `O_PATH` descriptor cannot be synced: it is reopened).
    private func syncCurrent() throws(FileError) {
      let fd = retryingEINTR { openat(self.current.raw, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
      guard fd >= 0 else { throw .system(.sync, self.currentPath, "cannot open the directory to fsync it") }
      try syncDirectory(FileDescriptor(fd), path: self.currentPath)
    }
  }
}

/// `uid 65534 (nobody)`.
private func ownerText(_ uid: uid_t) -> String {
  var entry = passwd()
  var result: UnsafeMutablePointer<passwd>?
  var buffer = [CChar](repeating: 0, count: 4096)
  if getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name {
    return "uid \(uid) (\(String(cString: name)))"
  }
  return "uid \(uid)"
}

/// `mode 0777`.
private func modeText(_ info: stat) -> String {
  "mode 0" + String(info.st_mode & 0o7777, radix: 8)
}
