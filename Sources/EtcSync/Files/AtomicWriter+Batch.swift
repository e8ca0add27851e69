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
    /// Files that failed; each kept its old content (except a failed directory fsync after
    /// the rename, reported here too, where the new file is visible but maybe not durable).
    public var failures: [ExactString: FileError] = [:]
  }

  /// How many files are staged before they are synced and renamed together.
  static let batchSize = 128

  /// Writes many files with the same guarantees as ``write(_:to:check:)`` for each one, but
  /// in groups: a group's temp files are all staged, then made durable, checked and renamed,
  /// and their directories made durable once per group. A group of at least
  /// ``FileSystemSync/threshold`` files is synced with one `syncfs` per file system before the
  /// renames and one after them (``FileSystemSync``), a smaller one with an fsync per file and
  /// per directory. One file's failure does not stop the others; a failed `syncfs` fails its
  /// whole group. The test ``hook`` is not called on this path. With `expected`, a file whose
  /// path it names and that does not hold what it says is left as it is
  /// (``Outcome/keptEdit``); paths it does not name are written whatever they hold.
  public func write(_ files: [ExactString: DesiredFile], check: StagedFileCheck? = nil,
                    expected: [ExactString: ExpectedFile]? = nil) async -> BatchReport {
    var report = BatchReport()
    let paths = files.keys.sorted()
    var start = 0
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
      await commit(staged, fileSystems: fileSystems, check: check, into: &report)
      start += Self.batchSize
    }
    return report
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

  /// Syncs, checks and renames a group of staged files, then syncs their directories once.
  private func commit(
    _ staged: [Staged], fileSystems: FileSystemSync,
    check: StagedFileCheck?, into report: inout BatchReport
  ) async {
    let together = options.fsync && staged.count >= FileSystemSync.threshold && fileSystems.isUsable
    if together, let error = fileSystems.sync() {
      for entry in staged {
        entry.file.discard()
        report.failures[entry.path] = error
      }
      return
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
      // The renames (directory entries) are durable once the file systems are synced again.
      let error = renamed.isEmpty ? nil : fileSystems.sync()
      for entry in renamed {
        if let error { report.failures[entry.path] = error }
        else { report.outcomes[entry.path] = entry.existed ? .replaced : .created }
      }
      return
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
  }
}
