#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Templates

extension AtomicWriter {
  /// What a batch write did, per relative path.
  public struct BatchReport: Sendable {
    /// Outcomes of the files that were written or found unchanged, by the path's bytes.
    public var outcomes: [ExactString: Outcome] = [:]
    /// Files that failed; each kept its old content, except where the sync after the rename
    /// failed (a directory's fsync, or the `syncfs` after its group): the new file is then in
    /// place but maybe not durable.
    public var failures: [ExactString: FileError] = [:]
  }

  /// How many files are staged before they are synced and renamed together.
  static let batchSize = 128

  /// Writes many files with the same guarantees as ``write(_:to:check:)`` for each one, but
  /// in groups: a group's temp files are all staged, then made durable, checked and renamed,
  /// and their directories made durable once per group. A group of at least
  /// ``FileSystemSync/threshold`` files is synced with one `syncfs` per file system before its
  /// renames (``FileSystemSync``); its renames are made durable by the next group's `syncfs`,
  /// which comes before that group's renames, or by one more `syncfs` once the last group is
  /// renamed, so n such groups in a row on one file system cost n + 1 `syncfs`, not 2n (each is
  /// a journal commit on ext4 or XFS). A smaller group is synced with an fsync per file and per
  /// directory. Every outcome is reported once its file and its rename are durable. One file's
  /// failure does not stop the others; a `syncfs` that fails on a file system fails the files
  /// it was to make durable there: the group staged for it (discarded, the old files stay) and
  /// the group renamed before it if that group touched the same file system (renamed, maybe not
  /// durable). The test ``hook`` is not called on this path. With `expected`, a file
  /// whose path it names and that does not hold what it says is left as it is
  /// (``Outcome/keptEdit``); paths it does not name are written whatever they hold.
  public func write(_ files: [ExactString: DesiredFile], check: StagedFileCheck? = nil,
                    expected: [ExactString: ExpectedFile]? = nil) async -> BatchReport {
    var report = BatchReport()
    let paths = files.keys.sorted()
    var start = 0
    // A group renamed after a `syncfs`, whose renames the next `syncfs` makes durable.
    var unsettled: Renamed?
    while start < paths.count {
      let group = paths[start..<min(start + Self.batchSize, paths.count)]
      var staged: [Staged] = []
      // Keyed by the directory path's bytes: `\u{E9}/a` and `e\u{301}/b` are two directories.
      var directories: [ExactString: BatchDirectory] = [:]
      var fileSystems = FileSystemSync()
      for path in group {
        guard let file = files[path] else { continue }
        do {
          switch try stage(file, at: path, expected: expected?[path], directories: &directories, fileSystems: &fileSystems) {
          case .staged(let entry): staged.append(entry)
          case .done(let outcome): report.outcomes[path] = outcome
          }
        } catch {
          report.failures[path] = error
        }
      }
      unsettled = await commit(staged, fileSystems: fileSystems, check: check, after: unsettled, into: &report)
      start += Self.batchSize
    }
    if let unsettled { unsettled.settle(unsettled.fileSystems.sync(), into: &report) }
    return report
  }

  /// A group renamed after its `syncfs`, whose renames are not yet durable.
  private struct Renamed {
    /// The renamed files, and whether each replaced something (no descriptor is kept).
    var entries: [(path: ExactString, existed: Bool)]
    /// The group's file systems, synced again to make the renames durable.
    var fileSystems: FileSystemSync

    /// Reports the group's outcomes once a `syncfs` after its renames returned `error`.
    func settle(_ error: FileError?, into report: inout BatchReport) {
      for entry in entries {
        if let error { report.failures[entry.path] = error }
        else { report.outcomes[entry.path] = entry.existed ? .replaced : .created }
      }
    }
  }

  /// A directory of a batch, opened once, and whether a default ACL sets the permissions of
  /// a file created in it (then every staged file gets its mode by `fchmod`; docs/writing.md).
  struct BatchDirectory {
    var opened: RootedDirectory
    var hasDefaultACL: Bool

    init(_ opened: RootedDirectory) {
      self.opened = opened
      self.hasDefaultACL = PosixACL.hasDefaultACL(directory: opened.directory.raw)
    }
  }

  /// A file of a batch staged for its rename.
  private struct Staged {
    var path: ExactString
    var file: StagedFile
    /// Whether something stood at the target when the file was staged.
    var existed: Bool
    /// What the target must still hold right before the rename.
    var expected: ExpectedFile?
  }

  /// What staging one file of a batch did.
  private enum Staging {
    case staged(Staged)
    /// Nothing to rename: ``Outcome/unchanged`` or ``Outcome/keptEdit``.
    case done(Outcome)
  }

  /// Stages one file of a batch, reusing opened directories.
  private func stage(
    _ file: DesiredFile, at exactPath: ExactString, expected: ExpectedFile?, directories: inout [ExactString: BatchDirectory],
    fileSystems: inout FileSystemSync
  ) throws(FileError) -> Staging {
    let path = exactPath.string
    let (components, name) = try split(path)
    let key = ExactString(components.joined(separator: "/"))
    let directory: BatchDirectory
    if let open = directories[key] {
      directory = open
    } else {
      guard let (opened, _) = try openParent(of: path, expecting: expected) else { return .done(.keptEdit) }
      directory = BatchDirectory(opened)
      directories[key] = directory
      // Noted before any file in it is written, as `syncfs`'s error report needs.
      fileSystems.note(opened.directory, path: opened.path)
    }
    let parent = directory.opened
    let target = try inspectTarget(name, in: parent)
    let attributes = EffectiveAttributes(file.attributes, existing: target.regular)
    if let existing = target.regular, attributes.matches(existing),
      hasContent(file.bytes, name: name, in: parent.directory, info: existing)
    {
      return .done(.unchanged)
    }
    if let expected, !holds(expected, name: name, in: parent.directory, target: target) { return .done(.keptEdit) }
    let finalMode = attributes.finalCreationMode(defaultACL: directory.hasDefaultACL)
    let staged = try StagedFile.create(in: parent.directory, directoryPath: parent.path, targetName: name, mode: finalMode ?? 0o600)
    do throws(FileError) {
      try staged.write(file.bytes)
      try attributes.apply(to: staged.file, path: staged.path, createdFinal: finalMode != nil)
    } catch {
      staged.discard()
      throw error
    }
    return .staged(Staged(path: exactPath, file: staged, existed: target.exists, expected: expected))
  }

  /// Syncs, checks and renames a group of staged files. A group synced by `syncfs` is returned
  /// renamed, its renames not yet durable; its `syncfs` first makes `previous`'s renames
  /// durable. A smaller group has its directories fsynced once, after `previous` is settled.
  private func commit(
    _ staged: [Staged], fileSystems: FileSystemSync,
    check: StagedFileCheck?, after previous: Renamed?, into report: inout BatchReport
  ) async -> Renamed? {
    let together = options.fsync && staged.count >= FileSystemSync.threshold && fileSystems.isUsable
    if together {
      // The previous group's directories first: one `syncfs` per device, on the directory
      // opened earliest, reports write-back errors of both groups.
      var both = previous?.fileSystems ?? FileSystemSync()
      both.include(fileSystems)
      // Each group is failed only by its own file systems' failures.
      let failures = both.syncEach()
      previous?.settle(previous?.fileSystems.firstFailure(in: failures), into: &report)
      if let error = fileSystems.firstFailure(in: failures) {
        for entry in staged {
          entry.file.discard()
          report.failures[entry.path] = error
        }
        return nil
      }
    } else if let previous {
      previous.settle(previous.fileSystems.sync(), into: &report)
    }
    var renamed: [Staged] = []
    for entry in staged {
      do throws(FileError) {
        if options.fsync && !together { try entry.file.sync() }
        if let check {
          try await runCheck(check, on: entry.file.path, target: entry.file.targetPath)
        }
        entry.file.file.close()
        // Edited since it was compared with its expectation: left as it is.
        if let expected = entry.expected, !stillHolds(expected, name: entry.file.targetName, in: entry.file.directory) {
          entry.file.discard()
          report.outcomes[entry.path] = .keptEdit
          continue
        }
        try entry.file.commit()
        renamed.append(entry)
      } catch {
        entry.file.discard()
        report.failures[entry.path] = error
      }
    }
    if together {
      // The renames (directory entries) are durable once the file systems are synced again:
      // by the next group's `syncfs`, or after the last group.
      return renamed.isEmpty ? nil : Renamed(entries: renamed.map { ($0.path, $0.existed) }, fileSystems: fileSystems)
    }
    var synced: [ExactString: FileError?] = [:]
    for entry in renamed {
      let directory = ExactString(entry.file.directoryPath)
      if synced[directory] == nil {
        synced[directory] = .some(nil)
        if options.fsync {
          do { try syncDirectory(entry.file.directory, path: directory.string) } catch { synced[directory] = error }
        }
      }
      if case .some(.some(let error)) = synced[directory] {
        report.failures[entry.path] = error
      } else {
        report.outcomes[entry.path] = entry.existed ? .replaced : .created
      }
    }
    return nil
  }
}
