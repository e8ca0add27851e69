#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Templates

/// Applies a `tree` mapping's files to its directory with the strategy the mapping chooses:
/// each file on its own with ``AtomicWriter``, or the whole tree at once with ``TreeSwap``.
///
/// The two layouts differ on disk (plain files versus `..data` symlinks), so a root is
/// meant to keep one strategy; switching needs an emptied root.
public struct TreeWriter: Sendable {
  /// How a tree reaches the disk.
  public enum Strategy: String, Sendable, Hashable, CaseIterable {
    /// Each changed file is replaced atomically on its own; readers may see a mix of
    /// revisions across files for a moment, never a partial file.
    case perFile
    /// The whole tree is swapped in with one symlink rename (`..data`).
    case atomicSwap
  }

  /// What an apply did.
  public struct Report: Sendable {
    /// Relative paths written (created or replaced).
    public var written: [String] = []
    /// How many files were already as wanted.
    public var unchanged = 0
    /// Relative paths deleted (per-file strategy).
    public var deleted: [String] = []
    /// Files neither written nor deleted because they no longer held what `expected` said: a
    /// local edit made since the caller looked (per-file strategy).
    public var keptEdits: [ExactString] = []
    /// Per-file failures (per-file strategy); the other files were still applied.
    public var failures: [ExactString: FileError] = [:]
    /// The new revision directory, when the swap strategy published one.
    public var publishedDirectory: String?
  }

  /// The chosen strategy.
  public let strategy: Strategy
  /// The writer used by the per-file strategy.
  public let writer: AtomicWriter
  /// The publisher used by the swap strategy.
  public let swap: TreeSwap

  /// Creates a tree writer for `root`; with `rootIdentity` (a write-back mapping's recorded
  /// destination) every write, delete and swap verifies the root it opened against it.
  /// `reuseUnchanged` lets a swap hard-link unchanged files (``TreeSwap/Options/reuseUnchanged``).
  public init(
    root: String, strategy: Strategy, directoryMode: mode_t = 0o755, fsync: Bool = true,
    hook: WriteHook? = nil, rootIdentity: DirectoryIdentity? = nil, reuseUnchanged: Bool = true
  ) {
    self.strategy = strategy
    self.writer = AtomicWriter(
      root: root,
      options: .init(createDirectories: true, directoryMode: directoryMode, fsync: fsync, rootIdentity: rootIdentity),
      hook: hook)
    self.swap = TreeSwap(
      root: root,
      options: .init(createRoot: true, directoryMode: directoryMode, fsync: fsync, rootIdentity: rootIdentity,
                     reuseUnchanged: reuseUnchanged),
      hook: hook)
  }

  /// Brings the directory to `files`. With the per-file strategy, `deleted` lists the paths
  /// of keys that were deleted (only those are removed: an error never deletes a file), and
  /// `check` runs per staged file; with the swap strategy the tree is exactly `files`, and
  /// `check` runs once on the staged tree directory. With `expected` (a write-back mapping,
  /// per-file strategy only), a file whose path it names is written or deleted only while it
  /// holds what it says (``ExpectedFile``).
  public func apply(
    _ files: [ExactString: DesiredFile], deleted: some Sequence<ExactString>, revision: Int64,
    check: StagedFileCheck? = nil, expected: [ExactString: ExpectedFile]? = nil
  ) async throws(FileError) -> Report {
    var report = Report()
    switch strategy {
    case .atomicSwap:
      switch try await swap.publish(files, revision: revision, check: check) {
      case .unchanged: report.unchanged = files.count
      case .published(let directory):
        report.publishedDirectory = directory
        report.written = files.keys.sorted().map(\.string)
      }
    case .perFile:
      // Each delete and each directory of the batch opens the root again, verifying it
      // (``AtomicWriter/Options/rootIdentity``): a replaced root fails them all.
      if writer.options.rootIdentity != nil { try await writer.hook(.beforeOpen, writer.root) }
      // Deletes first: a key `a/b` deleted and a key `a` put in the same batch needs the
      // directory `a` gone (it is removed once empty) before the file `a` can be written.
      // Written after, the file failed on the directory and the mapping never converged.
      var failures: [ExactString: FileError] = [:]
      for path in deleted.sorted() where files[path] == nil {
        do {
          switch try writer.delete(relativePath: path.string, expected: expected?[path]) {
          case .deleted: report.deleted.append(path.string)
          case .keptEdit: report.keptEdits.append(path)
          case .absent: break
          }
        } catch {
          failures[path] = error
        }
      }
      let batch = await writer.write(files, check: check, expected: expected)
      for (path, outcome) in batch.outcomes {
        switch outcome {
        case .unchanged: report.unchanged += 1
        case .keptEdit: report.keptEdits.append(path)
        case .created, .replaced: report.written.append(path.string)
        }
      }
      report.written.sort { ExactString($0) < ExactString($1) }
      report.failures = batch.failures.merging(failures) { first, _ in first }
    }
    return report
  }
}
