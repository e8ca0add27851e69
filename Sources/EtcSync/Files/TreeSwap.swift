#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Templates

/// Publishes a whole directory tree at once, as Kubernetes does for ConfigMap volumes, so a
/// reader never sees files of two revisions mixed.
///
/// Layout under `root`:
/// ```
/// ROOT/..<revision>.<random>/...   the real files of one revision (hidden directory)
/// ROOT/..data -> ..<revision>.<random>
/// ROOT/NAME   -> ..data/NAME       one symlink per top-level entry
/// ```
/// ``publish(_:revision:check:)`` writes the new tree into a fresh hidden directory (every
/// file and directory fsynced), points a `..data_tmp` symlink at it and renames that over
/// `..data` (the atomic step), then adds and removes the top-level symlinks, fsyncs the root
/// and deletes the previous hidden directory. A reader that resolves `..data` once per pass
/// (opens `ROOT/..data` as a directory and reads relative to it) sees one revision only.
///
/// Other entries in the root are left alone; a real directory where a top-level symlink must
/// go is a ``FileError/Code/conflict``. Publishes to one root must not run concurrently.
public struct TreeSwap: Sendable {
  /// How the tree is written.
  public struct Options: Sendable, Hashable {
    /// Create the root (and its missing parents) if it does not exist.
    public var createRoot: Bool
    /// Mode of the hidden revision directory and of the directories inside it.
    public var directoryMode: mode_t
    /// `fsync` every file and directory of the new tree, and the root after the swap.
    public var fsync: Bool
    /// The directory the root must be (a write-back mapping's recorded destination), or nil.
    /// A publish (its staging, swap and links all happen relative to the root's descriptor)
    /// and ``TreeSwap/currentDirectory()`` verify the root they opened against it and fail
    /// with ``FileError/Code/destinationReplaced`` otherwise; the root is then never created.
    public var rootIdentity: DirectoryIdentity?
    /// Hard-link the files a new revision shares with the current one (same bytes, mode and
    /// owner) instead of writing them again: a change of one key costs one file written and
    /// synced, not the whole tree. Off for write-back mappings, whose scanner refuses a file
    /// with more than one link (the old revision's link lasts until it is removed).
    public var reuseUnchanged: Bool

    /// Creates options; the defaults create the root, use 0755 directories, fsync, and reuse
    /// unchanged files.
    public init(createRoot: Bool = true, directoryMode: mode_t = 0o755, fsync: Bool = true,
                rootIdentity: DirectoryIdentity? = nil, reuseUnchanged: Bool = true) {
      self.createRoot = createRoot
      self.directoryMode = directoryMode
      self.fsync = fsync
      self.rootIdentity = rootIdentity
      self.reuseUnchanged = reuseUnchanged
    }
  }

  /// What a publish did.
  public enum Outcome: Sendable, Hashable {
    /// The current tree already had these bytes and attributes; only the top-level symlinks
    /// were checked (and repaired if needed).
    case unchanged
    /// A new revision directory (its name is given) is now current.
    case published(directory: String)
  }

  /// Name of the symlink that points at the current revision directory.
  public static let dataLinkName = "..data"
  /// Name of the symlink staged before it is renamed over `..data`.
  static let dataTempLinkName = "..data_tmp"

  /// The directory the tree is published in.
  public let root: String
  /// Writing options.
  public var options: Options
  /// Test seam called between steps (staged path for the first two, root for the rename).
  public var hook: WriteHook?

  /// Creates a tree publisher for `root`.
  public init(root: String, options: Options = Options(), hook: WriteHook? = nil) {
    self.root = root
    self.options = options
    self.hook = hook
  }

  /// Publishes `files` (relative path → file) as the new tree, unless the current tree is
  /// identical in bytes and attributes. `check` vets the staged tree directory (its full
  /// path) before the swap; when it fails, the new tree is removed and the old stays.
  @discardableResult
  public func publish(
    _ files: [ExactString: DesiredFile], revision: Int64, check: StagedFileCheck? = nil
  ) async throws(FileError) -> Outcome {
    try validate(files.keys.map(\.string))
    if options.rootIdentity != nil { try await hook(.beforeOpen, root) }
    let rootDir = try RootedDirectory(
      root: root, create: options.createRoot, mode: options.directoryMode, expected: options.rootIdentity
    ).directory
    let topLevel = Self.topLevelNames(files.keys)
    try preflight(rootDir, topLevel: topLevel)
    let current = try currentTree(in: rootDir, comparingWith: files)
    if let current, current.matches(files) {
      try updateLinks(rootDir, topLevel: topLevel)
      return .unchanged
    }
    let name = Self.revisionDirectoryName(revision)
    try await stage(files, as: name, in: rootDir, inheriting: current, check: check)
    try await swap(to: name, in: rootDir)
    try updateLinks(rootDir, topLevel: topLevel)
    if options.fsync { try syncDirectory(rootDir, path: root) }
    if let old = current?.directoryName, old != name {
      // The new tree is live; an old revision that cannot be removed now is harmless and
      // the start-up cleanup removes it, so this does not fail the publish.
      try? removeTree(old.cName, in: rootDir, path: joinPath(root, old))
    }
    return .published(directory: name)
  }

  /// The name of the hidden directory `..data` points at, or nil before the first publish.
  public func currentDirectory() throws(FileError) -> String? {
    let rootDir = try RootedDirectory(root: root, create: false, mode: options.directoryMode, expected: options.rootIdentity)
    return Self.currentTarget(of: rootDir.directory)
  }

  /// Whether `relativePath` can be published: top-level names starting with `..` are the
  /// layout's own. ``relativePath(forKey:prefix:)`` already rejects them.
  public static func isReserved(relativePath: String) -> Bool {
    relativePath.utf8.starts(with: "..".utf8)
  }

  /// Rejects unclean paths and file/directory conflicts before anything is touched.
  private func validate(_ paths: [String]) throws(FileError) {
    for path in paths {
      if let problem = pathProblem(path) {
        throw FileError(
          .invalidPath, path: joinPath(root, path),
          message: "invalid relative path (\(KeyPathError(problem, key: Array(path.utf8))))")
      }
    }
    if let conflict = detectFileDirectoryConflicts(paths).min() {
      throw FileError(
        .invalidPath, path: joinPath(root, conflict.string),
        message: "path is both a file and a directory in the tree")
    }
  }

  /// The swap itself: `..data_tmp -> name`, renamed over `..data`.
  private func swap(to name: String, in rootDir: FileDescriptor) async throws(FileError) {
    let temp = Self.dataTempLinkName
    if unlinkat(rootDir.raw, temp, 0) != 0 && currentErrno() != ENOENT {
      throw .system(.symlink, joinPath(root, temp), "cannot remove a stale symlink")
    }
    guard symlinkat(name, rootDir.raw, temp) == 0 else {
      let error = FileError.system(.symlink, joinPath(root, temp), "cannot create the symlink")
      try? removeTree(name.cName, in: rootDir, path: joinPath(root, name))
      throw error
    }
    guard renameat(rootDir.raw, temp, rootDir.raw, Self.dataLinkName) == 0 else {
      let error = FileError.system(
        .rename, joinPath(root, Self.dataLinkName), "cannot swap the ..data symlink")
      _ = unlinkat(rootDir.raw, temp, 0)
      try? removeTree(name.cName, in: rootDir, path: joinPath(root, name))
      throw error
    }
    try await hook(.afterRename, root)
  }

  /// A fresh hidden directory name: `..<revision>.<random>`.
  static func revisionDirectoryName(_ revision: Int64) -> String {
    "..\(revision).\(TemporaryName.randomHex(bytes: 6))"
  }

  /// Whether `name` is a hidden revision directory name (`..` digits `.` hex).
  static func isRevisionDirectoryName(_ name: [UInt8]) -> Bool {
    guard name.count > 4, name[0] == UInt8(ascii: "."), name[1] == UInt8(ascii: ".") else {
      return false
    }
    let parts = name[2...].split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
    guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { return false }
    let isDigit = { (byte: UInt8) in (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
    let isHex = { (byte: UInt8) in isDigit(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte) }
    return parts[0].allSatisfy(isDigit) && parts[1].allSatisfy(isHex)
  }

  /// The hidden directory `..data` points at, if it is a revision directory name.
  static func currentTarget(of rootDir: FileDescriptor) -> String? {
    guard let target = readLinkAt(rootDir, dataLinkName),
      isRevisionDirectoryName(Array(target.utf8))
    else { return nil }
    return target
  }

  /// The first segment of each path (split at `/` bytes), compared as bytes.
  static func topLevelNames(_ paths: some Sequence<ExactString>) -> Set<ExactString> {
    Set(paths.map { path in ExactString(String(decoding: path.utf8.prefix { $0 != UInt8(ascii: "/") }, as: UTF8.self)) })
  }
}
