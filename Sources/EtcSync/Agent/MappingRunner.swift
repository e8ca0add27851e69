import EtcdClient
import Logging
import Templates

#if canImport(Glibc)
import Glibc
#endif

/// What applying one mapping at one revision did.
public struct MappingResult: Sendable {
  public var mapping: String
  public var revision: Int64
  /// Paths written (relative to a tree's root, or the destination file).
  public var written: [String] = []
  public var deleted: [String] = []
  /// Files of a write-back mapping left as they are because they were edited after the scan
  /// that preceded the write (``ExpectedFile``): the next scan pushes them.
  public var keptEdits: [ExactString] = []
  /// Keys refused by the path rules; the rest of the mapping synced.
  public var rejected: [KeyPathError] = []
  /// Whether the reload command ran (and succeeded).
  public var reloaded = false
  /// Why the mapping failed, if it did. Its files are then as they were, except those in
  /// ``written`` and ``deleted`` (a reload that failed after the write, one file of an
  /// in-place tree that could not be written while the others were). Its code is what
  /// systemd's `STATUS=`, the presence key and metrics say of the failure, since its text can
  /// quote a command's output or a value from etcd.
  public var failure: MappingError?

  /// The text of ``failure``, for the log and for tests.
  public var error: String? { self.failure?.message }

  /// The code of ``failure``; nil when the mapping did not fail.
  public var failureCode: MappingFailure? { self.failure?.code }

  /// Whether the failure may pass by itself (``MappingFailure/retryable``), so the daemon
  /// retries it with the mapping's `retry` backoff instead of waiting for the next change.
  public var retryable: Bool { self.failure?.retryable ?? false }

  /// When the apply reached each stage, from its first change's arrival (see
  /// ``ApplyStage``); what `etcsync_apply_stage_seconds` records.
  public var stages = ApplyStages()

  public var changed: Bool { !self.written.isEmpty || !self.deleted.isEmpty }
  public var failed: Bool { self.failure != nil }
  /// Files the apply left as they were while keeping their old record (a held file that
  /// could not be read, a local edit write-back kept): the record no longer says what they
  /// hold, so the next apply compares every file instead of trusting it.
  var leftUntouched = false
}

/// One mapping at run time: the planner, the writer for its destination and its commands.
/// `apply` is the pipeline of DESIGN.md: plan → write (temp, fsync, check, rename) → reload.
public struct MappingRunner: Sendable {
  public let mapping: Mapping
  public let planner: MappingPlanner
  let commands: CommandRunner
  let commandTimeout: Duration
  let logger: Logger
  /// Test seam between write steps (crash tests); nil in production.
  var hook: WriteHook?
  /// How a tree destination's file system matches names, probed once per root directory.
  let folding = NameFoldingCache()
  /// What this runner's writes leave for drift checks (how many, which revision directory).
  let driftMarks = DriftMarks()
  /// A tree's last plan, updated key by key when only values changed (``TreePlanCache``).
  let treePlans = TreePlanCache()
  /// The watched directory the agent recorded for a write-back mapping; its writers verify
  /// the root they open against it (``recordedRoot``).
  let recordedDestination = RecordedDestination()

  /// Compiles the mapping's template and resolves its owner and group.
  public init(mapping: Mapping, commandTimeout: Duration, logger: Logger, hook: WriteHook? = nil) throws(AgentError) {
    var template: Template?
    if mapping.kind == .template, let path = mapping.template {
      let (directory, name) = splitLastSlash(path) ?? ("", path)
      do {
        var loader = try TemplateLoader(directory: directory.isEmpty ? (path.utf8.first == UInt8(ascii: "/") ? "/" : ".") : directory)
        if let delimiters = mapping.delimiters {
          loader.delimiters = try TemplateDelimiters(left: delimiters.left, right: delimiters.right)
        }
        template = try loader.load(name)
      } catch {
        throw AgentError(.configuration, "mapping \(mapping.name): template \(path): \(error)", cause: error)
      }
    }
    let attributes: FileAttributes
    do {
      attributes = try FileAttributes.resolve(mode: mapping.mode.map { mode_t($0) }, owner: mapping.owner, group: mapping.group)
    } catch {
      throw AgentError(.configuration, "mapping \(mapping.name): \(error)", cause: error)
    }
    self.mapping = mapping
    let options = RenderOptions(
      keyPrefix: mapping.keyPrefix ?? "", missingKey: mapping.missingKey == .error ? .error : .noValue)
    self.planner = MappingPlanner(mapping: mapping, template: template, attributes: attributes, renderOptions: options)
    self.commands = CommandRunner(logger: logger)
    self.commandTimeout = mapping.commandTimeout ?? commandTimeout
    self.logger = logger
    self.hook = hook
  }

  var check: StagedFileCheck? {
    self.mapping.check.map {
      self.commands.stagedFileCheck($0, timeout: self.commandTimeout, substitutions: self.placeholders)
    }
  }

  /// The `{{.NAME}}` values of the check and reload commands besides the check's `{{.src}}`:
  /// `{{.dest}}` (the mapping's destination) and `{{.name}}`. In the reload, the staged file
  /// is already in place, so `{{.src}}` is the destination too.
  var placeholders: [String: String] {
    ["src": self.mapping.dest, "dest": self.mapping.dest, "name": self.mapping.name]
  }

  /// Brings the mapping's files to the snapshot, and runs the reload if anything changed (or
  /// a reload is still owed from before a crash): ``write(_:state:keep:trustRecord:persist:)``
  /// then ``reload(into:)``, one after the other (`etcsync sync`; the daemon runs the reload in
  /// a task of its own, so that a hanging reload does not hold the files back). `state`
  /// records the files written and the owed reload; `persist` saves it.
  ///
  /// `keep` (write-back) names paths whose local files must stay as they are: a local edit
  /// that could not be pushed (too large for etcd, say) is neither overwritten nor deleted.
  /// `expected` (write-back, after the scan) says what each file is known to hold: one that
  /// holds something else was edited since, and is left for the next scan (``ExpectedFile``).
  ///
  /// `trustRecord` says this process wrote the mapping's files and `state` records them: a
  /// file whose planned hash differs from its record is then rewritten without reading the old
  /// bytes back (a restart, or a write-back mapping whose files people edit, always compares).
  public func apply(
    _ keySpace: KeySpace, state: inout MappingState, keep: Set<ExactString> = [], expected: [ExactString: ExpectedFile]? = nil,
    trustRecord: Bool = false, arrival: ContinuousClock.Instant? = nil, persist: @Sendable (MappingState) async -> Void
  ) async -> MappingResult {
    var (result, reloadOwed) = await self.write(keySpace, state: &state, keep: keep, expected: expected, trustRecord: trustRecord,
                                                arrival: arrival, persist: persist)
    guard reloadOwed else { return result }
    await self.reload(into: &result)
    if self.mapping.reload != nil { result.stages.mark(.reload) }
    // A failed reload stays owed (`pendingReload`): the next change, or the next start, runs
    // it again.
    if result.reloaded { state.pendingReload = false }
    await persist(state)
    return result
  }

  /// Runs the reload command and records its outcome in `result` (``MappingResult/reloaded``,
  /// or the error). A reload that hangs is killed at the command timeout, its whole process
  /// group with it.
  public func reload(into result: inout MappingResult) async {
    guard let reload = self.mapping.reload else { return }
    do {
      let outcome = try await self.commands.run(reload, substitutions: self.placeholders, timeout: self.commandTimeout)
      result.reloaded = outcome.succeeded
      if !outcome.succeeded { result.failure = MappingError(.reloadFailed, "reload failed: \(outcome)") }
    } catch {
      result.reloaded = false
      result.failure = MappingError(.reloadFailed, "reload failed: \(error)")
    }
  }

  /// The first half of ``apply(_:state:keep:trustRecord:persist:)``: plans and writes the
  /// files (temp, fsync, check, rename), without the reload. Returns the result and whether
  /// a reload is owed for the files now on disk.
  ///
  /// With a reload owed, `state` is updated to the files written with `pendingReload` set, but
  /// not persisted: the caller saves it (before the reload runs, in the daemon, so that a
  /// crash meanwhile runs the reload at the next start) and clears `pendingReload` once a
  /// reload that covered these files succeeded. Without one, `state` follows the files and
  /// `persist` saves it when it changed. `arrival` is when the batch's first change arrived
  /// (``MappingResult/stages`` are timed from it).
  public func write(
    _ keySpace: KeySpace, state: inout MappingState, keep: Set<ExactString> = [], expected: [ExactString: ExpectedFile]? = nil,
    trustRecord: Bool = false, arrival: ContinuousClock.Instant? = nil, persist: @Sendable (MappingState) async -> Void
  ) async -> (result: MappingResult, reloadOwed: Bool) {
    var result = MappingResult(mapping: self.mapping.name, revision: keySpace.revision)
    result.stages = ApplyStages(arrival: arrival)
    result.stages.mark(.applyStart)
    var plan: MappingPlan
    let folding: NameFolding
    do {
      folding = try self.destinationFolding()
    } catch {
      result.failure = Self.failure(writing: error)
      return (result, false)
    }
    // A tree without write-back plans through its cache: a batch that only changed values
    // updates the last plan's files instead of rebuilding them all.
    var planned: TreePlanCache.Planned?
    do {
      if self.mapping.kind == .tree && !self.mapping.writeBack {
        planned = try self.treePlans.plan(keySpace, folding: folding, planner: self.planner)
        plan = planned!.plan
      } else {
        plan = try self.planner.plan(keySpace, folding: folding)
      }
    } catch {
      result.failure = MappingError(planning: error)
      return (result, false)
    }
    result.rejected = plan.rejected
    if !keep.isEmpty {
      switch plan.output {
      case .file:
        // The whole file is a local edit that could not be pushed: it stays, and says so.
        result.failure = MappingError(
          .held, "held: the local edit of \(self.mapping.dest) could not be pushed (see the log); etcd's changes wait",
          subject: .file(ExactString(self.mapping.dest)))
        return (result, false)
      case .tree(let files):
        plan.output = .tree(files.filter { !keep.contains($0.key) })
      }
    }
    let (output, unread) = self.holding(plan, previous: state.files, keep: keep)
    result.stages.mark(.render)
    if let first = unread.min(), self.mapping.swap == .symlink {
      // A new revision directory would leave the file out: nothing is published.
      result.failure = MappingError(
        .held, "held: \(unread.count) file(s) of keys that conflict with newer ones cannot be carried into a new revision (larger than \(LocalScanner.fileLimit) bytes, or unreadable; first \(escapeBytes(first.utf8))); the tree is left as it is",
        subject: .file(ExactString(self.mapping.dest + "/" + first.string)))
      return (result, false)
    }
    // In place, such a file is neither written nor deleted, and keeps its record (`keep`
    // itself stays the local files write-back could not push, which the result reports).
    let untouched = keep.union(unread)
    result.leftUntouched = !untouched.isEmpty
    // The cache's hashes are the plan's; files held from disk (`holding`) are hashed here.
    var hashes = (plan.held.isEmpty ? planned?.hashes : nil) ?? Self.hashes(output)
    for path in unread { hashes[path] = state.files[path] }
    // The paths whose values changed since the cache's last plan, when that plan's keys are
    // the record's: a tree this process applied without error (its record is that plan's
    // hashes), nothing held or kept, as many records as files. Then only these can differ.
    let sameKeys: Set<ExactString>? =
      if trustRecord, let changed = planned?.changed, plan.held.isEmpty, keep.isEmpty, unread.isEmpty,
        state.files.count == hashes.count { changed } else { nil }
    do {
      let knownChanged = trustRecord && !self.mapping.writeBack && hashes[Self.wholeFile] != nil
        && state.files[Self.wholeFile] != hashes[Self.wholeFile]
      // The writers' step hook marks the staged file synced and renamed.
      let marks = StageMarks(result.stages)
      var timed = self
      timed.hook = marks.timing(self.hook)
      // An in-place tree this process wrote and recorded: only the files whose planned hash
      // differs from the record (or that it lacks) are handed to the writer; the others are
      // neither read nor stat'ed. A local change to one of those is the drift checks' to find
      // (docs/writing.md, "Trees that change one key at a time").
      var onlyChanged: [ExactString: ContentHash]?
      if let changed = sameKeys {
        // Only the values of `changed` moved since the plan the record describes: the files
        // to look at are among them, and no file is deleted.
        onlyChanged = [:]
        for path in changed { onlyChanged?[path] = hashes[path] }
      } else if trustRecord && !self.mapping.writeBack {
        onlyChanged = hashes
      }
      try await timed.write(output, previous: state.files, keep: untouched, expected: expected, revision: keySpace.revision,
                            knownChanged: knownChanged, onlyChanged: onlyChanged, sameKeys: sameKeys != nil, into: &result)
      result.stages = marks.value
      result.stages.mark(.dirFsync)
    } catch {
      // The record still describes the last reload: whatever did change is owed one later.
      // Every write failure may pass (``MappingFailure/retryable``): a disk that fills or
      // turns read-only, a busy target, and a check that depends on the machine (a
      // certificate that appears later). A destination replaced since the agent checked it is
      // ``MappingFailure/destinationReplaced``: nothing was written into it.
      result.failure = Self.failure(writing: error)
      // A tree's batch goes on past one file's failure: the files it did write or delete are
      // what the disk holds now. The record follows them (a file made for a key that is then
      // deleted must be deleted too), and their reload stays owed.
      if case .tree = output, result.changed {
        for path in result.written { state.files[ExactString(path)] = hashes[ExactString(path)] }
        for path in result.deleted { state.files.removeValue(forKey: ExactString(path)) }
        state.pendingReload = true
        await persist(state)
      }
      return (result, false)
    }
    // Edited since the scan: their records (and the reload they would owe) stay as they were
    // until the next scan pushes them and the watch brings them back.
    for path in result.keptEdits { hashes[path] = state.files[path] }
    if !result.keptEdits.isEmpty { result.leftUntouched = true }
    // The state records the files as they were at the last write that needed no reload or
    // whose reload succeeded, or the files written since with `pendingReload` set. A planned
    // output that differs from that record owes a reload even when the disk already holds
    // it (a crash came between its rename and the save), so nothing needs saving before the
    // write. A mapping never applied before (first start, lost or unreadable state) reloads
    // once for the same reason.
    let recordDiffers = if let changed = sameKeys, result.keptEdits.isEmpty {
      changed.contains { hashes[$0] != state.files[$0] }
    } else {
      hashes != state.files
    }
    let owesReload = state.pendingReload || state.appliedRevision == 0 || recordDiffers
    if case .tree = plan.output, let first = keep.min() {
      // Local files that could not be pushed stay, and etcd's values for them wait: the
      // mapping says so (presence, `/readyz`, `status`) instead of passing for current while
      // a file holds what nobody put in etcd. The rest of the tree is written.
      result.failure = MappingError(
        .held, "held: \(keep.count) local file(s) that could not be pushed stay as they are (first \(escapeBytes(first.utf8))); etcd's values for them wait (see the log)",
        subject: .file(ExactString(self.mapping.dest + "/" + first.string)))
    }
    if self.mapping.reload != nil, result.changed || owesReload {
      // Owed until a reload that covered these files succeeds.
      state.files = hashes
      state.appliedRevision = keySpace.revision
      state.pendingReload = true
      return (result, true)
    }
    if recordDiffers || state.appliedRevision != keySpace.revision || state.pendingReload {
      state.files = hashes
      state.appliedRevision = keySpace.revision
      state.pendingReload = false
      await persist(state)
    }
    return (result, false)
  }

  /// `onlyChanged` (the planned hashes, when the record can be trusted): an in-place tree
  /// writes only the files whose planned hash is not the recorded one. `sameKeys`: the plan
  /// has the record's paths, so nothing is deleted (and `onlyChanged` may hold only the
  /// paths whose values changed).
  private func write(_ output: PlannedOutput, previous: [ExactString: ContentHash], keep: Set<ExactString>,
                     expected: [ExactString: ExpectedFile]?, revision: Int64, knownChanged: Bool,
                     onlyChanged: [ExactString: ContentHash]? = nil, sameKeys: Bool = false,
                     into result: inout MappingResult) async throws {
    self.driftMarks.writing()
    switch output {
    case .file(let file):
      let (writer, name) = self.fileWriter()
      do {
        switch try await writer.write(file, to: name, check: self.check, knownChanged: knownChanged,
                                      expected: expected?[Self.wholeFile]) {
        case .unchanged: break
        case .keptEdit: result.keptEdits = [Self.wholeFile]
        case .created, .replaced: result.written = [self.mapping.dest]
        }
      } catch {
        // An error after the rename (the directory fsync, an interrupted write) leaves the
        // new file in place: report it written, so that its reload stays owed.
        if error.code != .checkFailed, (try? writer.needsWrite(file, to: name)) == false {
          result.written = [self.mapping.dest]
        }
        throw error
      }
    case .tree(let files):
      let writer = self.treeWriter()
      let strategy = writer.strategy
      // Only keys that were written before and are gone now are deleted.
      let deleted = sameKeys ? [] : previous.keys.filter { files[$0] == nil && !keep.contains($0) }
      let current = strategy == .atomicSwap ? try? writer.swap.currentDirectory() : nil
      var wanted = files
      if strategy == .perFile, let planned = onlyChanged {
        wanted = [:]
        for (path, hash) in planned where previous[path] != hash { wanted[path] = files[path] }
      }
      let report: TreeWriter.Report
      do {
        report = try await writer.apply(wanted, deleted: deleted, revision: revision, check: self.check, expected: expected)
      } catch {
        // As for one file: once `..data` points at a new directory the tree has changed,
        // whatever failed after the swap, and its reload is owed.
        if strategy == .atomicSwap, let now = try? writer.swap.currentDirectory(), now != current {
          result.written = files.keys.sorted().map(\.string)
        }
        throw error
      }
      result.written = report.written
      result.deleted = report.deleted
      result.keptEdits = report.keptEdits.sorted()
      if strategy == .atomicSwap { self.driftMarks.published(report.publishedDirectory ?? current) }
      if let replaced = report.failures.values.first(where: { $0.code == .destinationReplaced }) {
        // The root was replaced during the batch: every file opened after that failed its check.
        throw replaced
      }
      if let (path, failure) = report.failures.min(by: { $0.key < $1.key }) {
        throw MappingError(.writeFailed, "\(report.failures.count) file(s) not written, first \(path): \(failure)",
                           subject: .file(ExactString(self.mapping.dest + "/" + path.string)))
      }
    }
  }

  /// The plan's output with the files of held paths (`c` once `c/d` appears) kept as they are
  /// on disk (a conflicting key is rejected, but the file written before it stays), and the
  /// held files that are there but could not be read: a held file is read no further than ``LocalScanner/fileLimit`` (one etcd value), so one
  /// larger (a value etcd took with a raised `--max-request-bytes`, or a sparse 1 TiB file
  /// made since) is not in the output. Such a file must be neither deleted nor left out of a
  /// new swapped revision: the caller keeps it in place, or writes nothing.
  func holding(_ plan: MappingPlan, previous: [ExactString: ContentHash], keep: Set<ExactString> = [])
    -> (output: PlannedOutput, unread: Set<ExactString>)
  {
    guard case .tree(var files) = plan.output, !plan.held.isEmpty else { return (plan.output, []) }
    // No tree yet (a removed destination, no `..data`): the held files are not there.
    let reader: Result<AtomicWriter?, any Error> = Result { try self.treeReader() }
    var unread: Set<ExactString> = []
    for path in plan.held where files[path] == nil && previous[path] != nil && !keep.contains(path) {
      let read: AtomicWriter.BoundedRead
      switch reader {
      case .success(let writer?): read = writer.read(path.string, limit: LocalScanner.fileLimit)
      case .success(nil): read = .absent
      case .failure(let error): read = .unreadable("\(error)", nil)
      }
      switch read {
      case .bytes(let bytes, _): files[path] = DesiredFile(bytes: bytes, attributes: self.planner.attributes)
      case .absent: continue
      case .tooLarge, .unreadable: unread.insert(path)
      }
    }
    return (.tree(files), unread)
  }

  /// What a write-back mapping's files hold at this snapshot, by record path: each tree
  /// file; the one file as `.`; a document as `.` plus each entry by its relative key. Nil
  /// when the mapping cannot be planned.
  func localView(_ keySpace: KeySpace) -> [ExactString: [UInt8]]? {
    guard let plan = try? self.planner.plan(keySpace) else { return nil }
    switch plan.output {
    case .tree(let files): return files.mapValues(\.bytes)
    case .file(let file):
      var view: [ExactString: [UInt8]] = [Self.wholeFile: file.bytes]
      if self.mapping.kind == .format {
        for (path, value) in self.planner.relativeEntries(keySpace).0 { view[ExactString(path)] = value }
      }
      return view
    }
  }

  /// What the state file records for an output: path → content hash.
  static func hashes(_ output: PlannedOutput) -> [ExactString: ContentHash] {
    switch output {
    case .file(let file): return [Self.wholeFile: ContentHash(of: file.bytes)]
    case .tree(let files): return files.mapValues { ContentHash(of: $0.bytes) }
    }
  }

  /// The record path of a single-file mapping's one file.
  static let wholeFile: ExactString = "."
}

/// An agent failure, with what it concerns.
public struct AgentError: Error, Sendable, CustomStringConvertible {
  public enum Code: Sendable, Hashable { case configuration, plan, write, etcd, state }
  public var code: Code
  public var message: String
  /// The error this one reports (a template's, a file system's, a plan's), kept whole for a
  /// caller that handles it; the message already says what it said.
  public var cause: (any Error & Sendable)?

  public init(_ code: Code, _ message: String, cause: (any Error & Sendable)? = nil) {
    self.code = code
    self.message = message
    self.cause = cause
  }

  public var description: String { self.message }
}
