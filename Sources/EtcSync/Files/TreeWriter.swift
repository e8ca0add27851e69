#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
    /// Per-file failures (per-file strategy); the other files were still applied.
    public var failures: [String: FileError] = [:]
    /// The new revision directory, when the swap strategy published one.
    public var publishedDirectory: String?
  }

  /// The chosen strategy.
  public let strategy: Strategy
  /// The writer used by the per-file strategy.
  public let writer: AtomicWriter
  /// The publisher used by the swap strategy.
  public let swap: TreeSwap

  /// Creates a tree writer for `root`.
  public init(
    root: String, strategy: Strategy, directoryMode: mode_t = 0o755, fsync: Bool = true,
    hook: WriteHook? = nil
  ) {
    self.strategy = strategy
    self.writer = AtomicWriter(
      root: root,
      options: .init(createDirectories: true, directoryMode: directoryMode, fsync: fsync),
      hook: hook)
    self.swap = TreeSwap(
      root: root, options: .init(createRoot: true, directoryMode: directoryMode, fsync: fsync),
      hook: hook)
  }

  /// Brings the directory to `files`. With the per-file strategy, `deleted` lists the paths
  /// of keys that were deleted (only those are removed: an error never deletes a file), and
  /// `check` runs per staged file; with the swap strategy the tree is exactly `files`, and
  /// `check` runs once on the staged tree directory.
  public func apply(
    _ files: [String: DesiredFile], deleted: some Sequence<String>, revision: Int64,
    check: StagedFileCheck? = nil
  ) async throws(FileError) -> Report {
    var report = Report()
    switch strategy {
    case .atomicSwap:
      switch try await swap.publish(files, revision: revision, check: check) {
      case .unchanged: report.unchanged = files.count
      case .published(let directory):
        report.publishedDirectory = directory
        report.written = files.keys.sorted()
      }
    case .perFile:
      let batch = await writer.write(files, check: check)
      for (path, outcome) in batch.outcomes {
        if outcome == .unchanged { report.unchanged += 1 } else { report.written.append(path) }
      }
      report.written.sort()
      report.failures = batch.failures
      for path in deleted where files[path] == nil {
        do {
          if try writer.delete(relativePath: path) == .deleted { report.deleted.append(path) }
        } catch {
          report.failures[path] = error
        }
      }
    }
    return report
  }
}
