#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes single files below a mapping root atomically, following the pipeline of
/// `docs/writing.md`: open the directory without following symlinks, skip unchanged files,
/// stage a temp file beside the target, set owner and mode, fsync, run `check`, rename over
/// the target, fsync the directory. On any error the temp file is removed and the old file
/// stays intact; the target is never written in place.
///
/// Nothing is written outside `root`: every directory below it is opened with `O_NOFOLLOW`,
/// and a symlink planted as the target itself is replaced, not followed. With
/// ``Options/rootIdentity`` the root directory opened must be the recorded one, so a
/// directory put in its place after a check by path is never written (nor read). Operations on one
/// root should be applied one at a time (a mapping's batch is sequential); different roots
/// are independent.
public struct AtomicWriter: Sendable {
  /// How the writer treats directories and durability.
  public struct Options: Sendable, Hashable {
    /// Create missing directories (the root included) instead of failing.
    public var createDirectories: Bool
    /// Mode of directories the writer creates, applied exactly (the umask does not apply).
    public var directoryMode: mode_t
    /// `fsync` the file before the rename and the directory after it.
    public var fsync: Bool
    /// After a delete, remove the directories it left empty, up to (not including) the root.
    public var removeEmptyDirectories: Bool
    /// The directory the root must be (a write-back mapping's recorded destination), or nil.
    /// Every write, delete and read verifies the root directory it opened against it (the
    /// descriptor's device and inode) and fails with ``FileError/Code/destinationReplaced``
    /// otherwise, having touched nothing; the root is then never created.
    public var rootIdentity: DirectoryIdentity?

    /// Creates options; the defaults create directories 0755, fsync, and prune.
    public init(
      createDirectories: Bool = true, directoryMode: mode_t = 0o755, fsync: Bool = true,
      removeEmptyDirectories: Bool = true, rootIdentity: DirectoryIdentity? = nil
    ) {
      self.createDirectories = createDirectories
      self.directoryMode = directoryMode
      self.fsync = fsync
      self.removeEmptyDirectories = removeEmptyDirectories
      self.rootIdentity = rootIdentity
    }
  }

  /// What a write did.
  public enum Outcome: Sendable, Hashable {
    /// Bytes, mode and owner were already as wanted: nothing was touched.
    case unchanged
    /// The file did not exist and was created.
    case created
    /// An existing entry was replaced by the new file.
    case replaced
    /// The file no longer held what the caller expected (``ExpectedFile``): a local edit
    /// made since the caller looked. It was left as it is.
    case keptEdit
  }

  /// What a delete did.
  public enum DeleteOutcome: Sendable, Hashable {
    /// The file was removed.
    case deleted
    /// There was nothing to remove.
    case absent
    /// The file no longer held what the caller expected (``ExpectedFile``): left as it is.
    case keptEdit
  }

  /// The mapping's root directory; every relative path is below it.
  public let root: String
  /// Directory and durability options.
  public var options: Options
  /// Test seam called between steps; nil in production.
  public var hook: WriteHook?

  /// Creates a writer for the directory `root`.
  public init(root: String, options: Options = Options(), hook: WriteHook? = nil) {
    self.root = root
    self.options = options
    self.hook = hook
  }

  /// A writer for the single file at `path` (a `file` or `template` mapping's destination)
  /// and the name to pass to ``write(_:to:check:)``: the root is the file's directory.
  public static func forFile(_ path: String, options: Options = Options(), hook: WriteHook? = nil)
    -> (writer: AtomicWriter, name: String)
  {
    guard let (directory, name) = splitLastSlash(path) else {
      return (AtomicWriter(root: ".", options: options, hook: hook), path)
    }
    return (AtomicWriter(root: directory.isEmpty ? "/" : directory, options: options, hook: hook), name)
  }

  /// Writes `file` at `relativePath` unless it is unchanged; `check` (the mapping's check
  /// command) vets the staged file before it replaces the target.
  ///
  /// `knownChanged` says the caller knows the bytes differ from the file's (it wrote the file
  /// itself and the content hash moved on): the old file is then not read back to compare.
  /// With `expected`, a file that does not hold it is left as it is (``Outcome/keptEdit``).
  @discardableResult
  public func write(_ file: DesiredFile, to relativePath: String, check: StagedFileCheck? = nil,
                    knownChanged: Bool = false, expected: ExpectedFile? = nil)
    async throws(FileError) -> Outcome
  {
    if options.rootIdentity != nil { try await hook(.beforeOpen, root) }
    guard let (parent, name) = try openParent(of: relativePath, expecting: expected) else { return .keptEdit }
    let target = try inspectTarget(name, in: parent)
    let attributes = EffectiveAttributes(file.attributes, existing: target.regular)
    if !knownChanged, let existing = target.regular, attributes.matches(existing),
      hasContent(file.bytes, name: name, in: parent.directory, info: existing)
    {
      return .unchanged
    }
    if let expected, !holds(expected, name: name, in: parent.directory, target: target) { return .keptEdit }
    let staged = try StagedFile.create(
      in: parent.directory, directoryPath: parent.path, targetName: name)
    let published = try await publish(staged, file: file, attributes: attributes, check: check, expected: expected)
    guard published else { return .keptEdit }
    return target.exists ? .replaced : .created
  }

  /// Whether ``write(_:to:check:)`` would write anything: false when the bytes, mode and
  /// owner on disk already are the wanted ones. Touches nothing (for `diff` and dry runs).
  public func needsWrite(_ file: DesiredFile, to relativePath: String) throws(FileError) -> Bool {
    guard let (parent, name) = try openExistingParent(of: relativePath) else { return true }
    let target = try inspectTarget(name, in: parent)
    guard let existing = target.regular else { return true }
    let attributes = EffectiveAttributes(file.attributes, existing: existing)
    return !(attributes.matches(existing)
      && hasContent(file.bytes, name: name, in: parent.directory, info: existing))
  }

  /// The mode and owner a ``write(_:to:check:knownChanged:)`` of `file` would change at
  /// `relativePath`: what the file has and what it would get. Nil when no regular file is
  /// there (a write creates or replaces it whole) or its mode and owner already are the
  /// wanted ones. Touches nothing (for `diff` and dry runs).
  public func attributeChange(_ file: DesiredFile, at relativePath: String) throws(FileError)
    -> (old: FileMetadata, new: FileMetadata)?
  {
    guard let (parent, name) = try openExistingParent(of: relativePath),
      let existing = try inspectTarget(name, in: parent).regular
    else { return nil }
    let (old, new) = (FileMetadata(existing), FileMetadata(file.attributes, over: existing))
    return old == new ? nil : (old, new)
  }

  /// What `lstat` says of a file, enough to tell that it has not changed since (its inode,
  /// size and times) and who made it (owner, hard links).
  public struct FileStamp: Sendable, Hashable {
    public var device: UInt64
    public var inode: UInt64
    public var size: Int64
    public var links: UInt64
    public var owner: UInt32
    public var modified: Int64
    public var changed: Int64
    /// The file type and permission bits (`st_mode`).
    public var mode: UInt32

    /// Whether a regular file stood there.
    public var isRegular: Bool { FileKind(mode: mode_t(self.mode)) == .regular }

    init(_ info: stat) {
      self.mode = UInt32(info.st_mode)
      self.device = UInt64(info.st_dev)
      self.inode = UInt64(info.st_ino)
      self.size = Int64(info.st_size)
      self.links = UInt64(info.st_nlink)
      self.owner = UInt32(info.st_uid)
      self.modified = Int64(info.st_mtim.tv_sec) &* 1_000_000_000 &+ Int64(info.st_mtim.tv_nsec)
      self.changed = Int64(info.st_ctim.tv_sec) &* 1_000_000_000 &+ Int64(info.st_ctim.tv_nsec)
    }
  }

  /// What ``read(_:limit:)`` found at a path.
  public enum BoundedRead: Sendable, Equatable {
    /// No file (nor a missing parent directory) is there.
    case absent
    /// The regular file's bytes (at most the limit), and its stamp.
    case bytes([UInt8], FileStamp)
    /// A regular file larger than the limit: at most the limit plus one byte was read.
    case tooLarge(FileStamp)
    /// Something is there that cannot be read as a regular file, and why (its stamp when
    /// `lstat` gave one).
    case unreadable(String, FileStamp?)
  }

  /// What `lstat` says of whatever stands at `relativePath` (never following a symlink); nil
  /// only when nothing stands there (it, or a directory above it, is missing): a root that cannot be opened or is not
  /// ``Options/rootIdentity``, or a directory or `lstat` that fails otherwise, throws. A caller
  /// that remembers a file by its stamp must not take "could not look" for "gone".
  public func checkedStamp(of relativePath: String) throws(FileError) -> FileStamp? {
    guard let (directory, name) = try openExistingParent(of: relativePath) else { return nil }
    guard let info = lstatAt(directory.directory, name) else {
      if currentErrno() == ENOENT { return nil }
      throw .system(.read, joinPath(directory.path, name), "cannot inspect")
    }
    return FileStamp(info)
  }

  /// The bytes at `relativePath`, never following a symlink, and never more than `limit`
  /// bytes plus one: a file whose size (checked first) or content is larger is
  /// ``BoundedRead/tooLarge(_:)``, so a sparse or huge file costs no memory and no read. It
  /// tells a file that is gone (``BoundedRead/absent``) from one that is there but unreadable
  /// (permissions, a symlink or FIFO in its place, replaced again and again while read).
  public func read(_ relativePath: String, limit: Int) -> BoundedRead {
    for _ in 0..<3 {
      let parent: (RootedDirectory, String)?
      do { parent = try openExistingParent(of: relativePath) } catch { return .unreadable("\(error)", nil) }
      guard let (directory, name) = parent else { return .absent }
      guard let info = lstatAt(directory.directory, name) else {
        let code = currentErrno()
        return code == ENOENT ? .absent : .unreadable(FileError.errnoText(code), nil)
      }
      guard FileKind(mode: info.st_mode) == .regular else { return .unreadable("not a regular file", FileStamp(info)) }
      if Int64(info.st_size) > Int64(limit) { return .tooLarge(FileStamp(info)) }
      switch openRegularFile(name, in: directory.directory, info: info) {
      case .replaced: continue  // replaced between lstat and open: look again
      case .failed(let code): return .unreadable("cannot read: \(FileError.errnoText(code))", FileStamp(info))
      case .opened(let file, let now):
        if Int64(now.st_size) > Int64(limit) { return .tooLarge(FileStamp(now)) }
        var bytes = [UInt8](repeating: 0, count: min(limit, Int(now.st_size)) + 1)
        var count = 0
        while count < bytes.count {
          let got = bytes.withUnsafeMutableBytes { buffer in
            retryingEINTR { Glibc.read(file.raw, buffer.baseAddress! + count, buffer.count - count) }
          }
          if got < 0 { return .unreadable("cannot read: \(FileError.errnoText(currentErrno()))", FileStamp(now)) }
          if got == 0 { break }
          count += got
          // Grown since fstat: one more byte than the limit is enough to refuse it.
          if count == bytes.count, count <= limit { bytes.append(contentsOf: [UInt8](repeating: 0, count: min(64 * 1024, limit + 1 - count))) }
        }
        if count > limit { return .tooLarge(FileStamp(now)) }
        bytes.removeSubrange(count...)
        return .bytes(bytes, FileStamp(now))
      }
    }
    return .unreadable("the file kept being replaced while it was read", nil)
  }

  /// The current bytes of the regular file at `relativePath`, or nil when there is none.
  public func contents(of relativePath: String) throws(FileError) -> [UInt8]? {
    guard let (parent, name) = try openExistingParent(of: relativePath) else { return nil }
    guard let existing = try inspectTarget(name, in: parent).regular else { return nil }
    return readRegularFile(name, in: parent.directory, info: existing)
  }

  /// Steps after the temp file exists; removes it on any failure. With `expected`, a target
  /// that no longer holds it is not replaced: false, and the staged file is removed.
  private func publish(
    _ staged: StagedFile, file: DesiredFile, attributes: EffectiveAttributes,
    check: StagedFileCheck?, expected: ExpectedFile? = nil
  ) async throws(FileError) -> Bool {
    var renamed = false
    do {
      try staged.write(file.bytes)
      try attributes.apply(to: staged.file, path: staged.path)
      try await hook(.afterTempWrite, staged.path)
      if options.fsync { try staged.sync() }
      try await hook(.afterFsync, staged.path)
      if let check { try await runCheck(check, on: staged.path, target: staged.targetPath) }
      staged.file.close()
      if let expected, !stillHolds(expected, name: staged.targetName, in: staged.directory) {
        staged.discard()
        return false
      }
      try staged.commit()
      renamed = true
      try await hook(.afterRename, staged.targetPath)
      if options.fsync { try syncDirectory(staged.directory, path: staged.directoryPath) }
    } catch {
      if !renamed && error.code != .interrupted { staged.discard() }
      throw error
    }
    return true
  }
}

/// Runs a `check` hook, turning its error into ``FileError/Code/checkFailed``.
func runCheck(_ check: StagedFileCheck, on stagedPath: String, target: String)
  async throws(FileError)
{
  do {
    try await check(stagedPath)
  } catch {
    throw FileError(
      .checkFailed, path: target, message: "the check command rejected the staged file",
      cause: error)
  }
}
