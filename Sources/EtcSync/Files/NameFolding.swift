#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization
import Templates

/// How a destination's file system matches names: byte for byte (ext4, xfs, tmpfs), or
/// folding case (ext4 or f2fs with `casefold`, vfat, CIFS and SMB mounts, macOS volumes) and
/// Unicode normalization (ext4 casefold's `nfdi`, HFS+, some NFS and SMB servers). Where it
/// folds, two keys whose names fold to the same name would be one file: the planner refuses
/// such a batch instead (``MappingPlanner/collisions(_:folding:)``).
public struct NameFolding: Sendable, Hashable, CustomStringConvertible {
  /// `File` and `file` name one file.
  public var foldsCase: Bool
  /// `\u{E9}` and `e\u{301}` (canonically equivalent, byte-distinct) name one file.
  public var normalizes: Bool

  /// Creates a folding description.
  public init(foldsCase: Bool, normalizes: Bool) {
    self.foldsCase = foldsCase
    self.normalizes = normalizes
  }

  /// Names are bytes: nothing folds.
  public static let exact = NameFolding(foldsCase: false, normalizes: false)

  /// Whether two byte-distinct names can name one file.
  public var folds: Bool { self.foldsCase || self.normalizes }

  public var description: String {
    switch (self.foldsCase, self.normalizes) {
    case (false, false): return "case-sensitive, not normalizing"
    case (true, false): return "case-insensitive, not normalizing"
    case (false, true): return "case-sensitive, normalizing Unicode"
    case (true, true): return "case-insensitive, normalizing Unicode"
    }
  }

  /// The name a file system that folds this way compares `path` as: canonically decomposed
  /// (NFD) when it normalizes, case-folded when it folds case. A name that is not UTF-8 keeps
  /// its bytes, with ASCII letters lowered when case folds (what ext4 and vfat do with such
  /// names).
  public func folded(_ path: [UInt8]) -> [UInt8] {
    guard self.folds else { return path }
    if path.allSatisfy({ $0 < 0x80 }) || String(validating: path, as: UTF8.self) == nil {
      return self.foldsCase ? path.map { (0x41...0x5A).contains($0) ? $0 | 0x20 : $0 } : path
    }
    var text = String(decoding: path, as: UTF8.self)
    if self.normalizes || self.foldsCase {
      // Case folding is defined on the decomposed form (`nfdicf`): É and E + U+0301 fold
      // alike only once both are decomposed.
      text = text.decomposedStringWithCanonicalMapping
    }
    if self.foldsCase {
      // Full case folding approximated by upper- then lower-casing (ß → SS → ss, the Kelvin
      // sign → K → k, ς → Σ → σ), decomposed again: lowering can compose nothing, but
      // upper-casing can produce precomposed letters.
      text = text.uppercased().lowercased().decomposedStringWithCanonicalMapping
    }
    return Array(text.utf8)
  }

  /// Pairs of `paths` (relative paths of one tree, byte-distinct) that would be one entry on
  /// a file system that folds this way: twins that fold to one name (`App.conf` and
  /// `app.conf`), and a file whose folded name is a folded directory of another path
  /// (`A` beside `a/b`: the pair is `A` and `a/b`). Each pair in byte order, the list too; empty when nothing folds.
  public func collisions(_ paths: [String]) -> [(ExactString, ExactString)] {
    guard self.folds else { return [] }
    var files: [[UInt8]: ExactString] = [:]
    // Folded directory → its spelling and the first path below it.
    var directories: [[UInt8]: (ExactString, ExactString)] = [:]
    var pairs: [(ExactString, ExactString)] = []
    func note(_ a: ExactString, _ b: ExactString) { pairs.append(a < b ? (a, b) : (b, a)) }
    for path in paths.map({ ExactString($0) }).sorted() {
      let bytes = Array(path.utf8)
      let folded = self.folded(bytes)
      if let twin = files[folded] { note(twin, path) } else { files[folded] = path }
      for (index, byte) in bytes.enumerated() where byte == UInt8(ascii: "/") {
        let directory = ExactString(String(decoding: bytes[..<index], as: UTF8.self))
        let key = self.folded(Array(bytes[..<index]))
        // The same directory under two spellings is one directory: their files go side by
        // side and nothing is lost. Only a file standing where a directory goes collides.
        if directories[key] == nil { directories[key] = (directory, path) }
      }
    }
    for (folded, file) in files {
      // A byte-equal file and directory are the planner's own file/directory conflict.
      if let (directory, below) = directories[folded], !directory.utf8.elementsEqual(file.utf8) { note(file, below) }
    }
    return pairs.sorted { $0.0 == $1.0 ? $0.1 < $1.1 : $0.0 < $1.0 }
  }

  // MARK: Probing

  /// Learns how the file system of the directory `directory` (opened by the caller) folds
  /// names: creates a probe file with a lower-case name, and one with a precomposed `é`,
  /// `lstat`s their upper-case and decomposed variants, and removes them. A name the file
  /// system refuses (EILSEQ, EINVAL) tells nothing: that kind of folding is taken as absent.
  static func probe(_ directory: FileDescriptor) throws(FileError) -> NameFolding {
    // Temporary names (`.probe.etcsync-tmp-<hex>`): a crash between create and unlink
    // leaves one that the start-up clean-up removes.
    // The directory's times are put back afterwards: a restart that changes nothing leaves
    // the root's mtime as it was (readers and tests compare it).
    let before = directory.status()
    defer {
      if let before {
        var times = [before.st_atim, before.st_mtim]
        _ = futimens(directory.raw, &times)
      }
    }
    let token = TemporaryName.marker + TemporaryName.randomHex(bytes: 8)
    let caseName = ".probe" + token
    let foldsCase = try Self.probe(directory, create: caseName, variant: caseName.uppercased())
    let normalizes = try Self.probe(directory, create: ".probe-\u{E9}" + token, variant: ".probe-e\u{301}" + token)
    return NameFolding(foldsCase: foldsCase, normalizes: normalizes)
  }

  /// Probes the existing directory `root` (for `etcsync check`): nil when it does not exist.
  public static func probe(root: String) -> Result<NameFolding, FileError>? {
    do throws(FileError) {
      let directory = try RootedDirectory(root: root, create: false, mode: 0o755)
      if let forced = Self.overrides.withLock({ $0[root] }) { return .success(forced) }
      return .success(try Self.probe(directory.directory))
    } catch {
      return error.errno == ENOENT ? nil : .failure(error)
    }
  }

  /// Whether `variant` finds the file created as `name`.
  private static func probe(_ directory: FileDescriptor, create name: String, variant: String) throws(FileError) -> Bool {
    let fd = retryingEINTR { openat(directory.raw, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
    guard fd >= 0 else {
      let error = currentErrno()
      if error == EILSEQ || error == EINVAL || error == ENAMETOOLONG { return false }
      throw .system(.createTemporary, name, "cannot create a probe file to learn how the file system compares names")
    }
    close(fd)
    defer { _ = unlinkat(directory.raw, name, 0) }
    var created = stat()
    var found = stat()
    guard fstatat(directory.raw, name, &created, AT_SYMLINK_NOFOLLOW) == 0 else { return false }
    guard fstatat(directory.raw, variant, &found, AT_SYMLINK_NOFOLLOW) == 0 else { return false }
    return found.st_ino == created.st_ino && found.st_dev == created.st_dev
  }

  /// Test seam: the folding to assume for a destination root (its path as configured),
  /// instead of probing. This machine's file systems never fold, so tests force it here.
  static let overrides = Mutex<[String: NameFolding]>([:])
}

/// The folding of one destination, probed once and again only when the root directory
/// itself changed (another device or inode: a remount, a replaced directory).
final class NameFoldingCache: Sendable {
  private struct Entry {
    var device: UInt64
    var inode: UInt64
    var folding: NameFolding
  }

  private let entry = Mutex<Entry?>(nil)

  init() {}

  /// The folding of the directory `directory` (the root at `root`), probed when this cache
  /// has not seen the directory yet.
  func folding(of directory: FileDescriptor, root: String) throws(FileError) -> NameFolding {
    if let forced = NameFolding.overrides.withLock({ $0[root] }) { return forced }
    guard let info = directory.status() else { throw .system(.openDirectory, root, "cannot inspect the directory") }
    let (device, inode) = (UInt64(info.st_dev), UInt64(info.st_ino))
    if let known = self.entry.withLock({ $0 }), known.device == device, known.inode == inode { return known.folding }
    let folding = try NameFolding.probe(directory)
    self.entry.withLock { $0 = Entry(device: device, inode: inode, folding: folding) }
    return folding
  }
}
