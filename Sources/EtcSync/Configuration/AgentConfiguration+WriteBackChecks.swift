#if canImport(Glibc)
import Glibc
#endif

extension AgentConfiguration {
  /// How many entries of a write-back tree `writeBackWarnings()` looks at.
  static let writeBackCheckLimit = 10_000

  /// Write-back destinations that a user other than the one running this (run `etcsync
  /// check` as the agent's user) can write: whoever can create or edit a file there pushes
  /// keys to etcd with the agent's credentials. One sentence per mapping, naming the first
  /// such directory or file; reads only.
  public func writeBackWarnings() -> [String] {
    var warnings: [String] = []
    for (index, mapping) in self.mappings.enumerated() where mapping.writeBack {
      let paths: [String]
      if mapping.kind == .tree {
        paths = Self.treeEntries(mapping.dest, limit: Self.writeBackCheckLimit)
      } else {
        paths = [ConfigFiles.directory(of: mapping.dest), mapping.dest]
      }
      for path in paths {
        guard let who = Self.otherWriter(path) else { continue }
        warnings.append(
          "mappings[\(index)].dest: \"\(escapeControlCharacters(path))\" is writable by \(who); with writeBack: true, "
            + "whoever can create or edit files there pushes keys to etcd with the agent's credentials. "
            + "Make it writable by the agent's user only")
        break
      }
    }
    return warnings
  }

  /// Who other than the current user (and root) can write `path`, or nil (also when it does
  /// not exist). Never follows a symlink.
  static func otherWriter(_ path: String) -> String? {
    var info = stat()
    guard lstat(path, &info) == 0, info.st_mode & S_IFMT != S_IFLNK else { return nil }
    let me = geteuid()
    if info.st_mode & 0o002 != 0 { return "every user (mode \(String(info.st_mode & 0o7777, radix: 8)))" }
    if info.st_uid != me && info.st_uid != 0 { return "its owner, uid \(info.st_uid)" }
    if info.st_mode & 0o020 != 0 && info.st_gid != getegid() && info.st_gid != 0 {
      return "the group gid \(info.st_gid) (mode \(String(info.st_mode & 0o7777, radix: 8)))"
    }
    // Named users and groups of a POSIX ACL, which the mode bits do not show.
    if let acl = PosixACL.read(path: path),
      let who = acl.otherWriters(owner: info.st_uid, groupOwner: info.st_gid, trustedUser: me).first(where: { $0 != "gid \(getegid())" })
    {
      return "\(who) (POSIX ACL)"
    }
    return nil
  }

  /// `root` and the directories and regular files below it (at most `limit`), without
  /// following symlinks.
  static func treeEntries(_ root: String, limit: Int) -> [String] {
    var entries: [String] = []
    var directories = [root]
    while let directory = directories.popLast(), entries.count < limit {
      entries.append(directory)
      guard let handle = opendir(directory) else { continue }
      defer { closedir(handle) }
      while let entry = readdir(handle), entries.count < limit {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
          String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        guard name != ".", name != ".." else { continue }
        let path = directory + "/" + name
        var info = stat()
        guard lstat(path, &info) == 0 else { continue }
        switch info.st_mode & S_IFMT {
        case S_IFDIR: directories.append(path)
        case S_IFREG: entries.append(path)
        default: continue
        }
      }
    }
    return entries
  }
}
