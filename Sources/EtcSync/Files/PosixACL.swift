#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A POSIX access ACL as Linux stores it in the `system.posix_acl_access` extended attribute:
/// a little-endian header (version 2) and entries of tag (u16), permissions (u16) and id
/// (u32). `setfacl -m u:alice:rwx dir` adds a named-user entry that the mode bits do not show
/// (`ls` prints a `+`; the group bits then show the mask), so a directory that looks
/// `drwxr-xr-x root root` may still be writable by alice.
struct PosixACL: Sendable, Hashable {
  /// The attribute's name.
  static let attributeName = "system.posix_acl_access"
  /// The only version Linux writes (`POSIX_ACL_XATTR_VERSION`).
  static let version: UInt32 = 2

  /// One entry's kind (`ACL_USER_OBJ` …, linux/posix_acl.h).
  enum Tag: UInt16, Sendable {
    case userObject = 0x01
    case user = 0x02
    case groupObject = 0x04
    case group = 0x08
    case mask = 0x10
    case other = 0x20
  }

  /// One entry: a named user's or group's id (`ACL_UNDEFINED_ID` for the others).
  struct Entry: Sendable, Hashable {
    var tag: Tag
    var permissions: UInt16
    var id: UInt32
  }

  /// `ACL_WRITE`.
  static let write: UInt16 = 0x02

  var entries: [Entry]

  /// Parses the attribute's bytes; nil when they are not a version 2 ACL (a truncated entry,
  /// an unknown tag).
  init?(bytes: [UInt8]) {
    guard bytes.count >= 4, (bytes.count - 4) % 8 == 0 else { return nil }
    func u16(_ at: Int) -> UInt16 { UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8 }
    func u32(_ at: Int) -> UInt32 { UInt32(u16(at)) | UInt32(u16(at + 2)) << 16 }
    guard u32(0) == Self.version else { return nil }
    var entries: [Entry] = []
    for offset in stride(from: 4, to: bytes.count, by: 8) {
      guard let tag = Tag(rawValue: u16(offset)) else { return nil }
      entries.append(Entry(tag: tag, permissions: u16(offset + 2), id: u32(offset + 4)))
    }
    self.entries = entries
  }

  /// Who other than root, `owner` and `trustedUser` may write, as `uid 1000` / `gid 100`
  /// words; empty when no one. Named users and groups, and the owning group (`groupOwner`,
  /// other than root's), count when their entry grants write and the mask (if any) lets it
  /// through; `other` counts whatever the mask says (the kernel does not mask it).
  func otherWriters(owner: uid_t, groupOwner: gid_t, trustedUser: uid_t) -> [String] {
    let mask = self.entries.first { $0.tag == .mask }?.permissions ?? 0xFFFF
    var writers: [String] = []
    for entry in self.entries where entry.permissions & Self.write != 0 {
      let masked = mask & Self.write != 0
      switch entry.tag {
      case .user where masked && entry.id != 0 && entry.id != owner && entry.id != trustedUser:
        writers.append("uid \(entry.id)")
      case .group where masked && entry.id != 0:
        writers.append("gid \(entry.id)")
      case .groupObject where masked && groupOwner != 0:
        writers.append("gid \(groupOwner)")
      case .other:
        writers.append("every user")
      default:
        break
      }
    }
    return writers
  }

  /// The access ACL of the file `descriptor` names (an `O_PATH` directory descriptor too,
  /// through a descriptor opened for reading from it); nil when it has none, the file system
  /// keeps none, or it cannot be read (the mode bits then decide alone).
  static func read(descriptor: Int32) -> PosixACL? {
    guard let fgetxattr = Self.fgetxattr, let getxattr = Self.getxattr else { return nil }
    errno = 0
    if let bytes = attribute({ fgetxattr(descriptor, Self.attributeName, $0, $1) }) { return PosixACL(bytes: bytes) }
    // fgetxattr refuses an `O_PATH` descriptor (EBADF). The walk's descriptors are
    // directories: one opened for reading from it (`.` relative to it, no path walked) is the
    // same inode and needs no /proc (a chroot or a minimal container may have none). The magic
    // link stays as the fallback for a directory that cannot be opened for reading.
    guard currentErrno() == EBADF else { return nil }
    let directory = openat(descriptor, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
    if directory >= 0 {
      defer { close(directory) }
      return attribute({ fgetxattr(directory, Self.attributeName, $0, $1) }).flatMap { PosixACL(bytes: $0) }
    }
    let link = "/proc/self/fd/\(descriptor)"
    return attribute({ getxattr(link, Self.attributeName, $0, $1) }).flatMap { PosixACL(bytes: $0) }
  }

  /// Whether the directory `descriptor` (opened for reading) may have a default ACL, which
  /// would set the permissions of a file created in it instead of the umask. False only when
  /// the file system says it has none (`ENODATA`); true when it cannot be told, as where ACLs
  /// are not POSIX ones (NFSv4's inheritable entries answer `EOPNOTSUPP`): the caller then
  /// sets the mode itself.
  static func hasDefaultACL(directory descriptor: Int32) -> Bool {
    guard let fgetxattr = Self.fgetxattr else { return true }
    if fgetxattr(descriptor, "system.posix_acl_default", nil, 0) >= 0 { return true }
    return currentErrno() != ENODATA
  }

  /// The access ACL of `path` itself (a symlink is not followed); nil as in
  /// ``read(descriptor:)``.
  static func read(path: String) -> PosixACL? {
    guard let lgetxattr = Self.lgetxattr else { return nil }
    return attribute({ lgetxattr(path, Self.attributeName, $0, $1) }).flatMap { PosixACL(bytes: $0) }
  }

  // Glibc's Swift module leaves out <sys/xattr.h>: its three readers are looked up by name
  // (libc always has them; nil would only mean no ACL is read).
  private typealias PathGet = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeMutableRawPointer?, Int) -> Int
  private typealias DescriptorGet = @convention(c) (Int32, UnsafePointer<CChar>, UnsafeMutableRawPointer?, Int) -> Int
  private static let fgetxattr: DescriptorGet? = symbol("fgetxattr")
  private static let getxattr: PathGet? = symbol("getxattr")
  private static let lgetxattr: PathGet? = symbol("lgetxattr")

  private static func symbol<Function>(_ name: String) -> Function? {
    guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, name) else { return nil }
    return unsafeBitCast(symbol, to: Function.self)
  }

  /// Reads an attribute with `get(buffer, size)`, growing the buffer when it changed size
  /// between the calls.
  private static func attribute(_ get: (UnsafeMutableRawPointer?, Int) -> Int) -> [UInt8]? {
    for _ in 0..<3 {
      let size = get(nil, 0)
      guard size > 0 else { return nil }
      var bytes = [UInt8](repeating: 0, count: size)
      let read = bytes.withUnsafeMutableBytes { get($0.baseAddress, $0.count) }
      if read >= 0 { return Array(bytes.prefix(read)) }
      guard currentErrno() == ERANGE else { return nil }
    }
    return nil
  }
}
