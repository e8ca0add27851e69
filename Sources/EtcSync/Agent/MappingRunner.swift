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
  /// Keys refused by the path rules; the rest of the mapping synced.
  public var rejected: [KeyPathError] = []
  /// Whether the reload command ran (and succeeded).
  public var reloaded = false
  /// Whether the failure may pass by itself (a full or read-only disk, a busy target), so
  /// the daemon retries it with backoff instead of waiting for the next change. A failed
  /// check, a missing key or a failed reload is not retried on its own.
  public var retryable = false
  /// Why the mapping failed, if it did. Its files are then as they were, except those in
  /// ``written`` and ``deleted`` (a reload that failed after the write, one file of an
  /// in-place tree that could not be written while the others were).
  public var error: String?

  /// The short code of ``error``: what systemd's `STATUS=`, the presence key and metrics say
  /// of the failure, since ``error`` can quote a command's output or a value from etcd.
  public var failure: MappingFailure?

  /// ``failure`` of a failed mapping (``MappingFailure/failed`` when none was set); nil when
  /// the mapping did not fail.
  public var failureCode: MappingFailure? { self.error == nil ? nil : self.failure ?? .failed }
  public var changed: Bool { !self.written.isEmpty || !self.deleted.isEmpty }
  public var failed: Bool { self.error != nil }
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

  /// Compiles the mapping's template and resolves its owner and group.
  public init(mapping: Mapping, commandTimeout: Duration, logger: Logger, hook: WriteHook? = nil) throws(AgentError) {
    var template: Template?
    if mapping.kind == .template, let path = mapping.template {
      let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
      let name = String(path.split(separator: "/").last ?? "")
      do {
        template = try TemplateLoader(directory: directory.isEmpty ? "." : directory).load(name)
      } catch {
        throw AgentError(.configuration, "mapping \(mapping.name): template \(path): \(error)")
      }
    }
    let attributes: FileAttributes
    do {
      attributes = try FileAttributes.resolve(mode: mapping.mode.map { mode_t($0) }, owner: mapping.owner, group: mapping.group)
    } catch {
      throw AgentError(.configuration, "mapping \(mapping.name): \(error)")
    }
    self.mapping = mapping
    self.planner = MappingPlanner(mapping: mapping, template: template, attributes: attributes)
    self.commands = CommandRunner(logger: logger)
    self.commandTimeout = mapping.commandTimeout ?? commandTimeout
    self.logger = logger
    self.hook = hook
  }

  var check: StagedFileCheck? {
    self.mapping.check.map { self.commands.stagedFileCheck($0, timeout: self.commandTimeout) }
  }

  /// Brings the mapping's files to the snapshot, and runs the reload if anything changed (or
  /// a reload is still owed from before a crash). `state` records the files written and the
  /// owed reload; `persist` saves it before files change, so a crash mid-way is recovered.
  ///
  /// `keep` (write-back) names paths whose local files must stay as they are: a local edit
  /// that could not be pushed (too large for etcd, say) is neither overwritten nor deleted.
  ///
  /// `trustRecord` says this process wrote the mapping's files and `state` records them: a
  /// file whose planned hash differs from its record is then rewritten without reading the old
  /// bytes back (a restart, or a write-back mapping whose files people edit, always compares).
  public func apply(
    _ keySpace: KeySpace, state: inout MappingState, keep: Set<String> = [], trustRecord: Bool = false,
    persist: @Sendable (MappingState) async -> Void
  ) async -> MappingResult {
    var result = MappingResult(mapping: self.mapping.name, revision: keySpace.revision)
    var plan: MappingPlan
    do {
      plan = try self.planner.plan(keySpace)
    } catch {
      result.error = error.message
      result.failure = MappingFailure(error.code)
      return result
    }
    result.rejected = plan.rejected
    if !keep.isEmpty {
      switch plan.output {
      case .file:
        // The whole file is a local edit that could not be pushed: it stays, and says so.
        result.error = "held: the local edit of \(self.mapping.dest) could not be pushed (see the log); etcd's changes wait"
        result.failure = .held
        return result
      case .tree(let files):
        plan.output = .tree(files.filter { !keep.contains($0.key) })
      }
    }
    let output = self.holding(plan, previous: state.files, keep: keep)
    let hashes = Self.hashes(output)
    // The state records the files as they were at the last successful reload. A planned
    // output that differs from that record owes a reload even when the disk already holds
    // it (a crash came between its rename and its reload), so nothing needs saving before
    // the write. A mapping never applied before (first start, lost or unreadable state)
    // reloads once for the same reason; `pendingReload` from older state files is honoured.
    let owesReload = state.pendingReload || state.appliedRevision == 0 || hashes != state.files
    do {
      let knownChanged = trustRecord && !self.mapping.writeBack && hashes["."] != nil && state.files["."] != hashes["."]
      try await self.write(output, previous: state.files, keep: keep, revision: keySpace.revision, knownChanged: knownChanged,
                           into: &result)
    } catch {
      // The record still describes the last reload: whatever did change is owed one later.
      result.error = "\(error)"
      result.retryable = (error as? FileError)?.code != .checkFailed
      result.failure = MappingFailure(writing: error)
      return result
    }
    var reloadFailed = false
    if result.changed || owesReload, let reload = self.mapping.reload {
      do {
        let outcome = try await self.commands.run(reload, timeout: self.commandTimeout)
        result.reloaded = outcome.succeeded
        if !outcome.succeeded { result.error = "reload failed: \(outcome)"; result.failure = .reloadFailed }
      } catch {
        result.error = "reload failed: \(error)"
      }
      reloadFailed = !result.reloaded
    }
        result.failure = .reloadFailed
    // A failed reload leaves the record as it was, so the next change tries it again.
    guard !reloadFailed else { return result }
    if state.files != hashes || state.appliedRevision != keySpace.revision || state.pendingReload {
      state.files = hashes
      state.appliedRevision = keySpace.revision
      state.pendingReload = false
      await persist(state)
    }
    return result
  }

  private func write(_ output: PlannedOutput, previous: [String: ContentHash], keep: Set<String>, revision: Int64,
                     knownChanged: Bool, into result: inout MappingResult) async throws {
    switch output {
    case .file(let file):
      var options = AtomicWriter.Options()
      options.createDirectories = self.mapping.createDirs
      options.directoryMode = mode_t(self.mapping.dirMode ?? 0o755)
      var (writer, name) = AtomicWriter.forFile(self.mapping.dest, options: options)
      writer.hook = self.hook
      do {
        if try await writer.write(file, to: name, check: self.check, knownChanged: knownChanged) != .unchanged {
          result.written = [self.mapping.dest]
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
      let strategy: TreeWriter.Strategy = self.mapping.swap == .symlink ? .atomicSwap : .perFile
      let writer = TreeWriter(root: self.mapping.dest, strategy: strategy,
                              directoryMode: mode_t(self.mapping.dirMode ?? 0o755), hook: self.hook)
      // Only keys that were written before and are gone now are deleted.
      let deleted = previous.keys.filter { files[$0] == nil && !keep.contains($0) }
      let current = strategy == .atomicSwap ? try? writer.swap.currentDirectory() : nil
      let report: TreeWriter.Report
      do {
        report = try await writer.apply(files, deleted: deleted, revision: revision, check: self.check)
      } catch {
        // As for one file: once `..data` points at a new directory the tree has changed,
        // whatever failed after the swap, and its reload is owed.
        if strategy == .atomicSwap, let now = try? writer.swap.currentDirectory(), now != current {
          result.written = files.keys.sorted()
        }
        throw error
      }
      result.written = report.written
      result.deleted = report.deleted
      if let (path, failure) = report.failures.first {
        throw AgentError(.write, "\(report.failures.count) file(s) not written, first \(path): \(failure)")
      }
    }
  }

  /// The plan's output with the files of held paths (`c` once `c/d` appears) kept as they are
  /// on disk: a conflicting key is rejected, but the file written before it stays.
  func holding(_ plan: MappingPlan, previous: [String: ContentHash], keep: Set<String> = []) -> PlannedOutput {
    guard case .tree(var files) = plan.output, !plan.held.isEmpty else { return plan.output }
    let reader = try? self.treeReader()
    for path in plan.held where files[path] == nil && previous[path] != nil && !keep.contains(path) {
      if let bytes = try? reader?.contents(of: path) {
        files[path] = DesiredFile(bytes: bytes, attributes: self.planner.attributes)
      }
    }
    return .tree(files)
  }

  /// A reader of the tree as readers see it: the directory `..data` points at for a swapped
  /// tree (its top-level entries are symlinks, which the writer never follows), or nil when
  /// no tree has been swapped in yet.
  func treeReader() throws -> AtomicWriter? {
    var root = self.mapping.dest
    if self.mapping.swap == .symlink {
      guard let current = try TreeSwap(root: root).currentDirectory() else { return nil }
      root = current.hasPrefix("/") ? current : root + "/" + current
    }
    return AtomicWriter(root: root)
  }

  /// What a write-back mapping's files hold at this snapshot, by record path: each tree
  /// file; the one file as `.`; a document as `.` plus each entry by its relative key. Nil
  /// when the mapping cannot be planned.
  func localView(_ keySpace: KeySpace) -> [String: [UInt8]]? {
    guard let plan = try? self.planner.plan(keySpace) else { return nil }
    switch plan.output {
    case .tree(let files): return files.mapValues(\.bytes)
    case .file(let file):
      var view = [".": file.bytes]
      if self.mapping.kind == .format {
        for (path, value) in self.planner.relativeEntries(keySpace).0 { view[path] = value }
      }
      return view
    }
  }

  /// What the state file records for an output: path → content hash.
  static func hashes(_ output: PlannedOutput) -> [String: ContentHash] {
    switch output {
    case .file(let file): return [".": ContentHash(of: file.bytes)]
    case .tree(let files): return files.mapValues { ContentHash(of: $0.bytes) }
    }
  }

  /// What `sync` would change, as (path, old bytes, new bytes), without writing. `previous`
  /// (the state file's record) names the tree files a sync would delete.
  public func diff(_ keySpace: KeySpace, previous: [String: ContentHash] = [:]) throws(AgentError) -> [(path: String, old: [UInt8]?, new: [UInt8]?)] {
    let plan: MappingPlan
    do { plan = try self.planner.plan(keySpace) } catch { throw AgentError(.plan, "mapping \(self.mapping.name): \(error.message)") }
    do {
      switch plan.output {
      case .file(let file):
        let (writer, name) = AtomicWriter.forFile(self.mapping.dest)
        let old = try writer.contents(of: name)
        return old == file.bytes ? [] : [(self.mapping.dest, old, file.bytes)]
      case .tree(let files):
        guard let reader = try self.treeReader() else {
          return files.keys.sorted().map { (self.mapping.dest + "/" + $0, nil, files[$0]!.bytes) }
        }
        var changes: [(path: String, old: [UInt8]?, new: [UInt8]?)] = []
        for path in Set(files.keys).union(previous.keys.filter { $0 != "." }).sorted() {
          let old = try reader.contents(of: path)
          let new = files[path]?.bytes
          if old != new { changes.append((self.mapping.dest + "/" + path, old, new)) }
        }
        return changes
      }
    } catch {
      throw AgentError(.write, "mapping \(self.mapping.name): \(error)")
    }
  }
}

/// An agent failure, with what it concerns.
public struct AgentError: Error, Sendable, CustomStringConvertible {
  public enum Code: Sendable, Hashable { case configuration, plan, write, etcd, state }
  public var code: Code
  public var message: String

  public init(_ code: Code, _ message: String) {
    self.code = code
    self.message = message
  }

  public var description: String { self.message }
}
