import EtcdClient
import Foundation
import Logging
import Templates

/// Counts of what write-back did, for tests, `status` and metrics.
public struct WriteBackStats: Sendable, Hashable {
  /// Keys put or deleted because of local edits.
  public var pushed = 0
  /// Local edits that lost to a newer etcd value (or won, with `local-wins`).
  public var conflicts = 0
  /// Local files refused: too large for etcd, unreadable, or a document that is not flat.
  public var refused = 0
}

/// The write-back state of one mapping that lives only while the agent runs.
struct LocalWork: Sendable {
  /// Paths reported changed by inotify and not yet scanned (nil: scan everything).
  var pending: Set<ExactString>? = []
  var first: ContinuousClock.Instant?
  var last: ContinuousClock.Instant?
  /// The mapping is not rendered until the snapshot reaches this revision: a push (or a
  /// conflict's winner) at that revision is on its way through the watch.
  var holdUntil: Int64 = 0
  /// Paths whose local edit lost a conflict (path → the losing bytes' hash, nil for a
  /// delete): the next render overwrites them with etcd's value. Edited again meanwhile, a
  /// file differs from that hash and is pushed (and kept) like any edit.
  var overwrite: [ExactString: ContentHash?] = [:]
  /// What the last scan found at each path it compared (``LocalScanner/ScanResult/observed``);
  /// nil until a scan completes. The render right after the full scan that precedes it
  /// expects exactly this (``Agent/expectations(_:)``).
  var observed: [ExactString: ExpectedFile]?
  /// A render left files edited after its scan: once the next scan has pushed what it could,
  /// the mapping is rendered again (an edit that pushes nothing, such as a document's spacing
  /// or a revert, is then overwritten as it would have been).
  var renderAfterScan = false
  /// Problems already logged, so that a rescan does not log them again.
  var reported: Set<LocalProblem> = []
  /// Local files kept as they are because they cannot be pushed (path → what `lstat` said of
  /// the file then; nil when nothing stood there): not read again until that changes.
  var refused: [ExactString: AtomicWriter.FileStamp?] = [:]
  /// The watched directory's device and inode when this agent first looked (nil until it
  /// exists): another one later means an unmount or a replacement, never an edit.
  var identity: DirectoryIdentity?
  /// Why the mapping is stopped (a replaced destination, a mass deletion); nil when it runs.
  var fault: MappingError?
  /// Scans in a row whose recorded directory could not be verified on its descriptor while
  /// its path passed; at ``Agent/unverifiedScanLimit`` the mapping fails (``fault``) instead
  /// of waiting on.
  var unverifiedScans = 0
  /// When to retry after etcd was unreachable.
  var retryAt: ContinuousClock.Instant?
  /// What `keysPerMinute` and `bytesPerMinute` have left (nil until the first push).
  var keyBucket: TokenBucket?
  var byteBucket: TokenBucket?
  /// Files a rate limit held, refused until `rateRetryAt`, then scanned again.
  var rateHeld: Set<ExactString> = []
  var rateRetryAt: ContinuousClock.Instant?
  var hasPending: Bool { self.pending == nil || !(self.pending ?? []).isEmpty }
}

extension Agent {
  /// The largest key plus value a write-back puts: etcd's default request limit
  /// (`--max-request-bytes`, 1.5 MiB) less room for the request's framing.
  static let writeBackLimit = 1_572_864 - 512
  /// How long a burst of local edits is coalesced before it is pushed.
  static let localQuietPeriod: Duration = .milliseconds(50)
  /// How many changes go into one Txn (etcd's default `--max-txn-ops` is 128).
  static let maxTxnOps = 128
  /// How many scans in a row may find the recorded directory unverifiable (a transient
  /// EMFILE, a directory put back within the scan) while the render waits; after them the
  /// mapping fails and says why (an ancestor that no longer passes ``TrustedPath``, EACCES):
  /// nothing is written or pushed either way.
  static let unverifiedScanLimit = 5

  /// Notes paths the watcher reported changed under a write-back mapping.
  func noteLocal(_ name: String, paths: Set<ExactString>?) {
    let now = ContinuousClock.now
    var work = self.local[name] ?? LocalWork()
    if let paths, let pending = work.pending { work.pending = pending.union(paths) } else { work.pending = nil }
    work.first = work.first ?? now
    work.last = now
    self.local[name] = work
  }

  /// Pushes the local edits whose quiet period is over; returns when to look again.
  func flushLocalEdits(now: ContinuousClock.Instant) async -> ContinuousClock.Instant? {
    var next: ContinuousClock.Instant?
    for runner in self.runners where runner.mapping.writeBack {
      let name = runner.mapping.name
      if let at = self.releaseRateHeld(name, now: now) { next = next.map { min($0, at) } ?? at }
      guard var work = self.local[name], work.hasPending else { continue }
      // Held: etcd's newer value (or our own push) has not reached the files yet; an edit
      // now could not say which revision it is based on. It waits for the render.
      if work.holdUntil > self.keySpace.revision { continue }
      if let retryAt = work.retryAt, now < retryAt {
        next = next.map { min($0, retryAt) } ?? retryAt
        continue
      }
      let quietAt = (work.last ?? now) + Self.localQuietPeriod
      let latest = (work.first ?? now) + Self.defaultMaxDelay
      guard now >= quietAt || now >= latest else {
        next = next.map { min($0, quietAt) } ?? quietAt
        continue
      }
      let candidates = work.pending
      work.pending = []
      work.first = nil
      work.last = nil
      self.local[name] = work
      if await !self.pushLocalEdits(runner, candidates: candidates) {
        let retryAt = now + .seconds(1)
        self.local[name, default: LocalWork()].retryAt = retryAt
        self.noteLocal(name, paths: candidates)
        next = next.map { min($0, retryAt) } ?? retryAt
      } else {
        self.local[name, default: LocalWork()].retryAt = nil
        if self.local[name]?.renderAfterScan == true {
          self.local[name]?.renderAfterScan = false
          self.markDirty([name])
        }
      }
    }
    return next
  }

  /// Before a write-back mapping is rendered: pushes every local edit first, also ones
  /// inotify has not reported yet (the render would overwrite them). Returns false when the
  /// render must wait (a push is on its way through the watch, or etcd is unreachable).
  /// `view` is the render's ``MappingRunner/localView(_:)`` of the current snapshot.
  func guardLocalEdits(_ runner: MappingRunner, view: [ExactString: [UInt8]]?) async -> Bool {
    let name = runner.mapping.name
    let mappingState = self.state[mapping: name]
    // The first sync adopts etcd's content: there is no record to tell an edit from a file
    // that was simply there before.
    if mappingState.appliedRevision == 0 && mappingState.local.isEmpty {
      // No scan runs, so none could clear a fault of unverifiable scans (made by the watcher's
      // scans meanwhile): the render's own writes verify the directory they open.
      if self.local[name]?.fault?.code == .writeFailed {
        self.local[name]?.fault = nil
        self.local[name]?.unverifiedScans = 0
      }
      return true
    }
    self.local[name, default: LocalWork()].pending = []
    guard await self.pushLocalEdits(runner, candidates: nil) else {
      var work = self.local[name] ?? LocalWork()
      work.retryAt = ContinuousClock.now + .seconds(1)
      self.local[name] = work
      self.noteLocal(name, paths: nil)
      return false
    }
    // Before it writes, the render says what it means to write: after a crash mid-way, a
    // file holding that is its own write, not an edit.
    if let view {
      let scanner = runner.localScanner()
      // Read again: the push just awaited recorded what it pushed in the state.
      let recorded = self.state[mapping: name].local
      var intended: [ExactString: LocalRecord] = [:]
      for (path, bytes) in view {
        let hash = ContentHash(of: bytes)
        guard recorded[path]?.hash != hash else { continue }
        let key = runner.mapping.kind == .format && path == MappingRunner.wholeFile ? nil : scanner.key(for: path.string)
        intended[path] = LocalRecord(hash: hash, revision: key.flatMap { self.keySpace[$0]?.modRevision } ?? self.keySpace.revision)
      }
      if intended != self.state[mapping: name].intended {
        self.state[mapping: name].intended = intended
        self.saveState()
      }
    }
    return (self.local[name]?.holdUntil ?? 0) <= self.keySpace.revision
  }

  /// Scans `candidates` and pushes what changed. False when etcd could not be reached, or
  /// when the recorded directory failed its check on the descriptor during the scan while its
  /// path still passes (the edits stay on disk and are found again by the next scan; the
  /// render waits meanwhile).
  func pushLocalEdits(_ runner: MappingRunner, candidates: Set<ExactString>?,
                      unverifiedLimit: Int = Agent.unverifiedScanLimit) async -> Bool {
    let name = runner.mapping.name
    // Set again only by a scan that completes.
    self.local[name, default: LocalWork()].observed = nil
    // Another directory than the one the record describes: nothing is pushed from it.
    guard self.checkDestination(runner) else { return true }
    // Its reads verify the directory they open against the one just checked (a replacement
    // right after the check is never read, nor taken for deleted files).
    let scanner = runner.localScanner(owner: runner.planner.attributes.userID)
    var work = self.local[name] ?? LocalWork()
    let refusedBefore = Set(work.refused.keys)
    // A refused file stays refused until it changes (its inode, size or times). One that
    // could not be looked at (the directory could not be opened, or was not the recorded
    // one) has not changed as far as anyone knows: it stays refused.
    for (path, stamp) in work.refused {
      do throws(FileError) {
        if try scanner.checkedStamp(path.string) != stamp { work.refused[path] = nil }
      } catch {
        continue
      }
    }
    let mappingState = self.state[mapping: name]
    var scan = scanner.scan(candidates, record: mappingState.local, intended: mappingState.intended, refused: work.refused)
    if let problem = scan.problems.first(where: { $0.path.isEmpty }) {
      // Replaced during the scan: the mapping is stopped (and reported) by the check.
      guard self.checkDestination(runner) else { return true }
      // The recorded directory could not be verified on its descriptor, yet its path passes
      // now: put back within the scan, or a transient error (EMFILE, ENOMEM) in the path
      // walk. Nothing of this scan is known, so nothing of it is kept (the candidates are
      // scanned again, refused files stay refused) and the render waits: it would overwrite
      // edits not pushed yet. Without a record (a destination the first render creates) the
      // render goes ahead.
      if scanner.expected != nil {
        var held = self.local[name] ?? LocalWork()
        held.unverifiedScans += 1
        // Reported once while it lasts.
        if !held.reported.contains(problem) {
          self.logger.error("write-back destination could not be verified; local edits not pushed, the render waits", metadata: [
            "mapping.name": "\(name)", "file.path": "\(scanner.watchedDirectory)", "error": "\(problem.message)",
          ])
          self.metrics.writeBack(name, "refused")
          held.reported.insert(problem)
        }
        guard held.unverifiedScans >= unverifiedLimit || held.fault?.code == .writeFailed else {
          self.local[name] = held
          return false
        }
        // Not transient: the mapping fails (``writeBackStop``) and reports until a scan
        // verifies the directory again; nothing is written meanwhile.
        held.fault = MappingError(
          .writeFailed,
          "the write-back destination \(scanner.watchedDirectory) could not be verified on the directory opened (\(problem.message)); nothing is pushed from it or written into it until it can",
          subject: .file(ExactString(scanner.watchedDirectory)))
        self.local[name] = held
        return true
      }
    } else if work.unverifiedScans > 0 {
      if work.fault?.code == .writeFailed { work.fault = nil }
      work.unverifiedScans = 0
    }
    work.observed = scan.observed
    if !scan.promoted.isEmpty {
      self.state[mapping: name].local.merge(scan.promoted) { $1 }
      self.saveState()
    }
    scan.changes.removeAll { change in
      if work.refused[change.path] != nil { return true }
      // A lost conflict waiting for its overwrite: the same bytes are not pushed again.
      if let lost = work.overwrite[change.path], lost == change.value.map({ ContentHash(of: $0) }) { return true }
      return false
    }
    var reported: Set<LocalProblem> = []
    for problem in scan.problems {
      reported.insert(problem)
      if !problem.path.isEmpty, work.refused[problem.path] == nil {
        // Kept as it is: renders do not overwrite what could not be read.
        work.refused[problem.path] = .some(problem.stamp)
      }
      guard !work.reported.contains(problem) else { continue }
      self.logger.error("local file not pushed", metadata: [
        "mapping.name": "\(name)", "file.path": "\(problem.path.string.isEmpty ? scanner.watchedDirectory : self.displayPath(runner, problem.path))",
        "error": "\(problem.message)",
      ])
      self.writeBackStats.refused += 1
      self.metrics.writeBack(name, "refused")
    }
    work.reported = reported
    for problem in scan.tooLarge {
      // Refused from its size alone: a sparse or huge file is never read whole.
      self.logger.error("local file too large for etcd; not pushed, the local file is kept", metadata: [
        "mapping.name": "\(name)", "file.path": "\(self.displayPath(runner, problem.path))",
        "bytes": "\(problem.stamp?.size ?? 0)", "limit": "\(runner.mapping.kind == .format ? LocalScanner.documentLimit : Self.writeBackLimit)",
      ])
      self.writeBackStats.refused += 1
      self.metrics.writeBack(name, "refused")
      work.refused[problem.path] = .some(problem.stamp)
    }
    // A deleted document is rendered again: looked at, never read (it may be any size).
    if runner.mapping.kind == .format, scanner.isAbsent(MappingRunner.wholeFile.string) { self.markDirty([name]) }
    // Most of the recorded files gone at once is a fault (an unmount, a replaced directory
    // the identity check could not see because it happened before this agent started), not
    // an edit: nothing of this scan is pushed, and the mapping stops until they are back.
    if runner.mapping.deletes, let fault = self.massDeletion(runner, scanner, scan, record: mappingState.local) {
      if work.fault != fault {
        self.logger.error("mass deletion refused: the mapping is stopped; nothing is pushed or written", metadata: [
          "mapping.name": "\(name)", "file.path": "\(scanner.watchedDirectory)", "error": "\(fault.message)",
        ])
        self.metrics.writeBack(name, "refused")
      }
      work.fault = fault
      self.local[name] = work
      self.markDirty([name])
      return true
    }
    if work.fault?.code == .massDeletion {
      work.fault = nil
      self.logger.notice("the vanished files are back (or their keys are gone); write-back resumes", metadata: ["mapping.name": "\(name)"])
      self.markDirty([name])
    }
    var ready: [LocalChange] = []
    for change in scan.changes {
      if let value = change.value, value.count + change.key.count > Self.writeBackLimit {
        self.logger.error("local file too large for etcd; not pushed, the local file is kept", metadata: [
          "mapping.name": "\(name)", "file.path": "\(self.displayPath(runner, change.path))",
          "etcd.key": "\(escapeBytes(change.key))", "bytes": "\(value.count)", "limit": "\(Self.writeBackLimit)",
        ])
        self.writeBackStats.refused += 1
        self.metrics.writeBack(name, "refused")
        work.refused[change.path] = .some(change.stamp)
        continue
      }
      if change.value == nil && !runner.mapping.deletes {
        self.logger.notice("local delete not pushed (deletes: false); the file is restored", metadata: [
          "mapping.name": "\(name)", "file.path": "\(self.displayPath(runner, change.path))",
        ])
        work.overwrite[change.path] = .some(nil)
        self.markDirty([name])
        continue
      }
      ready.append(change)
    }
    await self.applyQuotas(runner, scanner, &ready, &work, unread: scan.unread)
    self.local[name] = work
    // A file newly refused (or no longer) changes what the mapping holds: rendered now, so
    // that it reports `held` (or stops reporting it) at once, not at etcd's next change.
    if Set(work.refused.keys) != refusedBefore { self.markDirty([name]) }
    guard !ready.isEmpty else { return true }
    for chunk in Self.chunks(ready) {
      do {
        try await self.pushChunk(runner, chunk)
      } catch where Self.isPermanent(error) {
        // Retrying cannot help (permission denied, too large): refused, reported, kept.
        for change in chunk {
          self.logger.error("local edit refused by etcd; not pushed, the local file is kept", metadata: [
            "mapping.name": "\(name)", "file.path": "\(self.displayPath(runner, change.path))",
            "etcd.key": "\(escapeBytes(change.key))", "error": "\(error)",
          ])
          self.local[name, default: LocalWork()].refused[change.path] = .some(change.stamp ?? scanner.stamp(change.path.string))
        }
        self.writeBackStats.refused += chunk.count
        self.metrics.writeBack(name, "refused", count: chunk.count)
      } catch {
        self.logger.warning("local edits not pushed yet; etcd is unreachable, retrying", metadata: [
          "mapping.name": "\(name)", "files": "\(ready.count)", "error": "\(error)",
        ])
        self.metrics.writeBack(name, "error")
        return false
      }
    }
    self.saveState()
    return true
  }

  /// What the render may replace or delete: what ``guardLocalEdits(_:view:)``'s full scan
  /// found at each path (``LocalWork/observed``), whether it pushed it, took it for the
  /// agent's own write, or had nothing to push (a lost conflict, a document whose entries did
  /// not change, a deleted file that is restored). An edit made after that scan does not hold
  /// it, and the writer leaves it for the next scan (``ExpectedFile``). Nil for the first
  /// sync, which adopts etcd's content (no scan runs), and for a destination the render
  /// creates (none was there to scan: a new path, or one accepted with `--accept-destination`
  /// after it vanished).
  ///
  /// Paths the scan did not look at have no entry, and the render replaces whatever stands
  /// there, as it always did: names it never pushes as new keys (editor leftovers, hidden
  /// files), and symlinks, FIFOs and sockets without a record (the scan lists regular files
  /// only). Expecting "nothing" there instead kept such an entry from ever being replaced,
  /// and `etcsync sync` failed on it at every start.
  func expectations(_ runner: MappingRunner) -> [ExactString: ExpectedFile]? {
    let name = runner.mapping.name
    let mappingState = self.state[mapping: name]
    if mappingState.appliedRevision == 0 && mappingState.local.isEmpty { return nil }
    guard runner.recordedRoot != nil else { return nil }
    return self.local[name]?.observed
  }

  /// After a render of a write-back mapping: the record follows what is now on disk. Files
  /// the writer left because they were edited after the scan keep their records (so that the
  /// next scan pushes them against the revision they are based on), and are scanned next.
  func recordLocal(_ runner: MappingRunner, _ result: MappingResult, keep: Set<ExactString>, view: [ExactString: [UInt8]]?) {
    let name = runner.mapping.name
    let keep = keep.union(result.keptEdits)
    if !result.keptEdits.isEmpty {
      self.logger.notice("local files edited during the render were left as they are; they are pushed next", metadata: [
        "mapping.name": "\(name)", "files": "\(result.keptEdits.count)",
        "file.path": "\(self.displayPath(runner, result.keptEdits[0]))",
      ])
      self.noteLocal(name, paths: Set(result.keptEdits))
      self.local[name]?.renderAfterScan = true
    }
    // The writer found another directory than the one checked before the render (replaced
    // in between) and wrote nothing: looked at again, which stops and reports the mapping.
    if result.failureCode == .destinationReplaced { _ = self.checkDestination(runner) }
    // Stopped: nothing was written, and what is on disk is not what the record describes.
    guard let view, self.local[name]?.fault == nil else { return }
    // A destination the render has just created is recorded now (in the state file too), so
    // that the next start, `etcsync sync`'s as well, knows the directory.
    if self.local[name]?.identity == nil { _ = self.checkDestination(runner) }
    let scanner = runner.localScanner()
    var mappingState = self.state[mapping: name]
    mappingState.intended = [:]
    // A document's entries follow etcd only once the document on disk is the rendered one:
    // if it was not written (held, a failed check), the entries keep the revisions the local
    // copy is based on.
    if runner.mapping.kind == .format {
      // Read no further than the rendered bytes: anything longer is not them.
      guard let rendered = view[MappingRunner.wholeFile], scanner.holds(".", rendered) else {
        self.state.mappings[name] = mappingState
        return
      }
    }
    var local = mappingState.local
    for (path, bytes) in view where !keep.contains(path) {
      let hash = ContentHash(of: bytes)
      let onDisk = path == MappingRunner.wholeFile || runner.mapping.kind != .format
      // After a failure only what really is on disk is recorded: a file the writer could not
      // replace still holds its old bytes, which must not pass for a local edit.
      if result.failed, onDisk, !scanner.holds(path.string, bytes) { continue }
      let key = runner.mapping.kind == .format && path == MappingRunner.wholeFile ? nil : scanner.key(for: path.string)
      let revision = key.flatMap { self.keySpace[$0]?.modRevision } ?? self.keySpace.revision
      local[path] = LocalRecord(hash: hash, revision: revision)
    }
    for path in local.keys where view[path] == nil && !keep.contains(path) {
      if runner.mapping.kind == .format || scanner.isAbsent(path.string) { local[path] = nil }
    }
    let changed = local != mappingState.local || !self.state[mapping: name].intended.isEmpty
    mappingState.local = local
    self.state.mappings[name] = mappingState
    if changed { self.saveState() }
    if !result.failed { self.local[name]?.overwrite = [:] }
  }

  /// Where a record path is, for logs: key-derived, so escaped (never raw control bytes).
  func displayPath(_ runner: MappingRunner, _ path: ExactString) -> String {
    switch runner.mapping.kind {
    case .tree: return runner.mapping.dest + "/" + escapeBytes(path.utf8)
    case .format where path != MappingRunner.wholeFile: return runner.mapping.dest + " (entry \(escapeBytes(path.utf8)))"
    default: return runner.mapping.dest
    }
  }
}
