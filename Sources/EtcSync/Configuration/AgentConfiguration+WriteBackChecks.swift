#if canImport(Glibc)
import Glibc
#endif

extension AgentConfiguration {
  /// How many entries of a write-back tree `writeBackWarnings()` looks at.
  static let writeBackCheckLimit = 10_000

  /// `O_PATH` (not exported by Swift's Glibc): names a file to read its ACL without opening it.
  private static let pathOnly: Int32 = 0o10000000

  /// The user whose files a write-back mapping pushes, as the scanner judges them: the
  /// mapping's `owner` when set (resolved as the agent resolves it), else the user running
  /// this (run `etcsync check` as the agent's user); with that user's primary group.
  struct WriteBackUser: Equatable {
    /// Files and directories of this user (or root) are the agent's own.
    var uid: uid_t
    /// A group-writable entry of this group (or root's) is not another writer; nil: only root's.
    var gid: gid_t?

    /// The agent's user for `mapping`.
    init(_ mapping: Mapping) {
      guard let owner = mapping.owner, let uid = try? FileAttributes.userID(owner) else {
        self.init(uid: geteuid(), gid: getegid())
        return
      }
      // The owner's primary group is trusted only when it is the owner's alone: a shared one
      // (`nogroup` of `adduser --system`, `users`) lets its other members write.
      self.init(uid: uid, gid: Self.primaryGroup(of: uid).flatMap { Self.isPrivate($0, of: uid) ? $0 : nil })
    }

    /// Whether no user but `uid` belongs to group `gid`: no listed member, and no other user
    /// with it as primary group.
    static func isPrivate(_ gid: gid_t, of uid: uid_t) -> Bool {
      var group = Glibc.group()
      var groupResult: UnsafeMutablePointer<Glibc.group>?
      var buffer = [CChar](repeating: 0, count: 64 * 1024)
      guard getgrgid_r(gid, &group, &buffer, buffer.count, &groupResult) == 0, groupResult != nil else { return false }
      if let members = group.gr_mem, members[0] != nil { return false }
      setpwent()
      defer { endpwent() }
      while let entry = getpwent() {
        if entry.pointee.pw_gid == gid && entry.pointee.pw_uid != uid { return false }
      }
      return true
    }

    init(uid: uid_t, gid: gid_t?) {
      self.uid = uid
      self.gid = gid
    }

    private static func primaryGroup(of uid: uid_t) -> gid_t? {
      var entry = passwd()
      var result: UnsafeMutablePointer<passwd>?
      var buffer = [CChar](repeating: 0, count: 16 * 1024)
      guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
      return entry.pw_gid
    }
  }

  /// Write-back destinations that a user other than the agent's (the mapping's `owner`, else
  /// the user running this: run `etcsync check` as the agent's user) can write: whoever can
  /// create or edit a file there pushes keys to etcd with the agent's credentials. One
  /// sentence per mapping, naming the first such directory or file (names that are not UTF-8
  /// escaped); reads only.
  public func writeBackWarnings() -> [String] {
    var warnings: [String] = []
    for (index, mapping) in self.mappings.enumerated() where mapping.writeBack {
      let user = WriteBackUser(mapping)
      let found: (path: String, who: String)?
      if mapping.kind == .tree {
        found = Self.treeOtherWriter(mapping.dest, user: user, limit: Self.writeBackCheckLimit)
      } else {
        found = [ConfigFiles.directory(of: mapping.dest), mapping.dest].lazy
          .compactMap { path in Self.otherWriter(path, user: user).map { (path, $0) } }.first
      }
      guard let found else { continue }
      let owner = mapping.owner.map { " (its owner \"\(escapeControlCharacters($0))\")" } ?? ""
      warnings.append(
        "mappings[\(index)].dest: \"\(escapeControlCharacters(found.path))\" is writable by \(found.who); with writeBack: true, "
          + "whoever can create or edit files there pushes keys to etcd with the agent's credentials. "
          + "Make it writable by the agent's user\(owner) only")
    }
    return warnings
  }

  /// Who other than `user` (and root) can write `path`, or nil (also when it does not
  /// exist). Never follows a symlink.
  static func otherWriter(_ path: String, user: WriteBackUser) -> String? {
    var info = stat()
    guard lstat(path, &info) == 0, info.st_mode & S_IFMT != S_IFLNK else { return nil }
    return Self.otherWriter(info, user: user) { PosixACL.read(path: path) }
  }

  /// Who other than `user` (and root) can write the file `info` describes; `acl` reads its
  /// POSIX access ACL when the mode bits name no one.
  static func otherWriter(_ info: stat, user: WriteBackUser, acl: () -> PosixACL?) -> String? {
    if info.st_mode & 0o002 != 0 { return "every user (mode \(String(info.st_mode & 0o7777, radix: 8)))" }
    if info.st_uid != user.uid && info.st_uid != 0 { return "its owner, uid \(info.st_uid)" }
    if info.st_mode & 0o020 != 0 && info.st_gid != user.gid && info.st_gid != 0 {
      return "the group gid \(info.st_gid) (mode \(String(info.st_mode & 0o7777, radix: 8)))"
    }
    // Named users and groups of a POSIX ACL, which the mode bits do not show.
    let trustedGroup = user.gid.map { "gid \($0)" }
    if let acl = acl(),
      let who = acl.otherWriters(owner: info.st_uid, groupOwner: info.st_gid, trustedUser: user.uid).first(where: { $0 != trustedGroup })
    {
      return "\(who) (POSIX ACL)"
    }
    return nil
  }

  /// The first of `root` and the directories and regular files below it (at most `limit`
  /// looked at) that someone other than `user` can write, with who. Names are kept as bytes,
  /// so entries whose names are not UTF-8 are looked at too (and named escaped); never
  /// follows a symlink below `root`. One directory is open at a time.
  static func treeOtherWriter(_ root: String, user: WriteBackUser, limit: Int) -> (path: String, who: String)? {
    if let who = Self.otherWriter(root, user: user) { return (root, who) }
    var directories: [(bytes: [UInt8], display: String)] = [(Array(root.utf8), root)]
    var seen = 1
    while let (bytes, display) = directories.popLast(), seen < limit {
      let flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (bytes.elementsEqual(root.utf8) ? 0 : O_NOFOLLOW)
      let fd = (bytes.map { CChar(bitPattern: $0) } + [0]).withUnsafeBufferPointer { open($0.baseAddress!, flags) }
      guard fd >= 0 else { continue }
      let directory = FileDescriptor(fd)
      guard let entries = try? listDirectory(directory, path: display) else { continue }
      for entry in entries where seen < limit {
        var info = stat()
        guard fstatat(directory.raw, entry.cName, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFDIR || kind == S_IFREG else { continue }
        seen += 1
        let child = joinPath(display, entry.name ?? escapeBytes(entry.bytes))
        let who = Self.otherWriter(info, user: user) {
          let entryFD = openat(directory.raw, entry.cName, Self.pathOnly | O_NOFOLLOW | O_CLOEXEC)
          guard entryFD >= 0 else { return nil }
          defer { close(entryFD) }
          return PosixACL.read(descriptor: entryFD)
        }
        if let who { return (child, who) }
        if kind == S_IFDIR { directories.append((bytes + [UInt8(ascii: "/")] + entry.bytes, child)) }
      }
    }
    return nil
  }
}
