import EtcdClient
import Logging
import Synchronization
import Templates

#if canImport(Glibc)
import Glibc
#endif

/// The files of one mapping the daemon is asked to check for drift: those inotify reported,
/// or all of them (the periodic check, a lost inotify event, the start).
struct DriftCheck: Sendable {
  /// Check every recorded file.
  var everything = false
  /// Paths inotify reported, relative to the watched directory (a tree's root; for the other
  /// kinds the record path ``MappingRunner/wholeFile``).
  var changed: Set<ExactString> = []

  mutating func add(_ paths: Set<ExactString>?) {
    if let paths { self.changed.formUnion(paths) } else { self.everything = true }
  }
}

/// A mapping's drift work besides the queued checks: the check running away from the
/// agent's executor, its result, and how often its files were put back lately.
struct DriftWork: Sendable {
  /// The check of the mapping's files running in a task of its own, if any; cancelled when
  /// the daemon stops (a whole-tree read on a slow mount would otherwise outlive the agent).
  var task: Task<Void, Never>?
  /// What the last check found, to act on in the daemon's loop.
  var found: DriftFound?
  /// Spaces out repairs of files that keep changing.
  var limit = DriftRepairLimit()
  /// Files whose configured mode or owner did not stay when they were put back (a file system
  /// that ignores `chmod`, a set-ID bit the kernel clears): their checks compare bytes only.
  var unkeptAttributes: Set<ExactString> = []
}

/// Spaces out the repairs of a mapping whose files keep being changed (a process rewriting
/// one in a loop would otherwise make a swapped tree publish whole again and again): after
/// ``burst`` repairs within ``window``, each next check waits a delay that doubles from 1 s
/// up to 1 min (the package's ``Backoff``), until no repair was needed for ``quiet``.
struct DriftRepairLimit: Sendable {
  /// Repairs within ``window`` that run at once.
  static let burst = 5
  static let window: Duration = .seconds(60)
  /// A pause without repairs after which repairs run at once again.
  static let quiet: Duration = .seconds(120)

  private var recent: [ContinuousClock.Instant] = []
  private var backoff = Backoff(initial: .seconds(1), maximum: .seconds(60))
  /// No check of the mapping starts before this.
  private(set) var notBefore: ContinuousClock.Instant?

  /// Whether repairs are being spaced out.
  var spacing: Bool { self.backoff.failures > 0 }

  /// Counts a repair at `now`; returns the delay before the next check when repairs are
  /// spaced out (nil: the next one may run at once).
  mutating func repaired(at now: ContinuousClock.Instant) -> Duration? {
    if let last = self.recent.last, now - last >= Self.quiet {
      self.recent = []
      self.backoff.reset()
    }
    self.recent = self.recent.filter { now - $0 < Self.window } + [now]
    guard self.recent.count > Self.burst || self.spacing else {
      self.notBefore = nil
      return nil
    }
    let delay = self.backoff.next()
    self.notBefore = now + delay
    return delay
  }
}

// Drift repair (docs/agent.md, "Drift repair"): a file of a mapping without write-back that
// someone changes, deletes or replaces while the daemon runs is put back to the bytes the
// agent wrote at the applied revision. inotify on the destinations' directories finds most
// changes at once; a periodic check of the content hashes finds the rest.
extension Agent {
  /// Starts the inotify watchers of the mappings that repair drift: one per tree (its whole
  /// root), one per directory holding destination files (their parent, since an editor's or
  /// `mv`'s rename replaces the file's inode). A directory that cannot be watched is logged
  /// and left to the periodic check; one that is deleted or moved is watched again once it
  /// exists again.
  func startDriftWatchers(into inbox: Inbox) -> [DriftWatch] {
    var watches: [DriftWatch] = []
    // Files of several mappings in one directory share its watcher, by name as bytes.
    var files: [ExactString: [(name: String, file: String)]] = [:]
    var directories: [ExactString] = []
    let limit = self.configuration.driftWatchLimit
    for runner in self.runners where runner.repairsDrift {
      let name = runner.mapping.name
      if runner.mapping.kind == .tree {
        let root = runner.mapping.dest
        let live = runner.mapping.swap == .symlink ? LiveRevision(root: root) : nil
        do {
          let watcher = try DirectoryWatcher(root: root, recursive: true, maxWatches: limit)
          let watch = DriftWatch(watcher, root: root, recursive: true, maxWatches: limit, changes: { batch in
            if batch.contains(where: { $0.kind == .overflow }) {
              inbox.send(.drift(name, nil))
              return
            }
            let paths = live?.filter(batch) ?? Set(batch.map { ExactString($0.path) })
            if !paths.isEmpty { inbox.send(.drift(name, paths)) }
          }, event: { [self] event in
            if case .rearmed = event { live?.reset() }
            Task { await self.driftWatchEvent(event, names: [name], path: root) }
            inbox.send(.drift(name, nil))
          })
          watches.append(watch)
        } catch {
          self.driftWatchFailed(name, path: root, error)
        }
        continue
      }
      let (writer, file) = AtomicWriter.forFile(runner.mapping.dest)
      let root = ExactString(writer.root)
      if files[root] == nil { directories.append(root) }
      files[root, default: []].append((name: name, file: file))
    }
    for directory in directories {
      let owners = files[directory] ?? []
      do {
        let watcher = try DirectoryWatcher(root: directory.string, recursive: false)
        let watch = DriftWatch(watcher, root: directory.string, recursive: false, maxWatches: .max, changes: { batch in
          let lost = batch.contains { $0.kind == .overflow }
          for owner in owners where lost || batch.contains(where: { $0.path.bytesEqual(owner.file) }) {
            inbox.send(.drift(owner.name, lost ? nil : [MappingRunner.wholeFile]))
          }
        }, event: { [self] event in
          Task { await self.driftWatchEvent(event, names: owners.map { $0.name }, path: directory.string) }
          for owner in owners { inbox.send(.drift(owner.name, nil)) }
        })
        watches.append(watch)
      } catch {
        for owner in owners { self.driftWatchFailed(owner.name, path: directory.string, error) }
      }
    }
    // A change made between the first sync and the watchers' start raised no event: every
    // file is checked once (through the inbox, so the loop looks at once).
    for runner in self.runners where runner.repairsDrift { inbox.send(.drift(runner.mapping.name, nil)) }
    return watches
  }

  private func driftWatchFailed(_ name: String, path: String, _ error: any Error) {
    let periodic = self.configuration.driftCheckInterval > .zero
    self.logger.warning(
      periodic ? "local changes cannot be watched; drift is repaired by the periodic check only"
        : "local changes cannot be watched and driftCheckInterval is 0; drift is not repaired",
      metadata: ["mapping.name": "\(name)", "file.path": "\(path)", "error": "\(error)"])
  }

  /// Logs what a drift watch reports about itself.
  private func driftWatchEvent(_ event: DriftWatch.Event, names: [String], path: String) {
    for name in names {
      switch event {
      case .rearmed:
        self.logger.notice("watched directory is back; watching it again", metadata: ["mapping.name": "\(name)", "file.path": "\(path)"])
      case .limit(let limit):
        let periodic = self.configuration.driftCheckInterval > .zero
        self.logger.warning(
          periodic ? "too many directories to watch; drift in the unwatched ones is repaired by the periodic check only"
            : "too many directories to watch and driftCheckInterval is 0; drift in the unwatched ones is not repaired",
          metadata: ["mapping.name": "\(name)", "file.path": "\(path)", "watch.limit": "\(limit)"])
      case .failed(let error):
        self.driftWatchFailed(name, path: path, error)
      }
    }
  }

  /// Asks for every file of every repairing mapping to be checked each `driftCheckInterval`,
  /// for file systems where inotify misses changes (NFS, FUSE, another mount namespace); nil
  /// when the interval is 0 or no mapping repairs drift.
  func startDriftChecks(into inbox: Inbox) -> Task<Void, Never>? {
    let interval = self.configuration.driftCheckInterval
    let names = self.runners.filter(\.repairsDrift).map(\.mapping.name)
    guard interval > .zero, !names.isEmpty else { return nil }
    return Task {
      while !Task.isCancelled {
        try? await Task.sleep(for: interval)
        if Task.isCancelled { return }
        for name in names { inbox.send(.drift(name, nil)) }
      }
    }
  }

  /// Queues a drift check of `paths` of mapping `name` (nil: all its files).
  func noteDrift(_ name: String, paths: Set<ExactString>?) {
    guard self.runners.contains(where: { $0.mapping.name == name && $0.repairsDrift }) else { return }
    self.drift[name, default: DriftCheck()].add(paths)
  }

  /// Whether `name`'s files hold the applied revision as recorded, so that a file that
  /// differs from its record drifted: no change waits for it, no apply or retry is under way,
  /// and its last apply wrote every file (a failed reload leaves the files written). Otherwise
  /// its check stays queued until that apply is done.
  private func driftRepairable(_ name: String) -> Bool {
    !self.schedule.isPending(name) && self.schedule.retry(name) == nil && !self.applying.contains(name)
      && (self.errors[name] == nil || self.errors[name] == MappingFailure.reloadFailed.rawValue || self.failedRepairs[name] != nil)
      && self.state[mapping: name].appliedRevision != 0
  }

  /// Acts on the drift checks that ended (putting back what drifted), then starts a check of
  /// the files queued by ``noteDrift(_:paths:)`` of every mapping that can be checked now.
  /// Runs in the daemon's loop after the due applies, so a repair never races one; a check
  /// that must wait stays queued. The files are read and hashed in a task of their own, so
  /// a large tree does not hold up the loop; its result comes back through the inbox.
  func repairDrift() async {
    for runner in self.runners where runner.repairsDrift {
      let name = runner.mapping.name
      if let found = self.driftWork[name]?.found {
        self.driftWork[name]?.found = nil
        let current = self.driftRepairable(name) && runner.driftMarks.writes == found.writes
          && self.state[mapping: name].files == found.recorded
        switch found.followUp(current: current, inPlaceTree: runner.mapping.kind == .tree && runner.mapping.swap != .symlink) {
        case .putBack: await self.putBack(runner, found)
        case .recheck(let paths): self.noteDrift(name, paths: paths)
        case .none: break
        }
      }
      let work = self.driftWork[name] ?? DriftWork()
      guard work.task == nil, self.drift[name] != nil, self.driftRepairable(name) else { continue }
      // Spaced out: the check stays queued; a wake-up was armed with the delay.
      if let notBefore = work.limit.notBefore, notBefore > .now { continue }
      guard let request = self.drift.removeValue(forKey: name), request.everything || !request.changed.isEmpty else { continue }
      let recorded = self.state[mapping: name].files
      let writes = runner.driftMarks.writes
      self.driftWork[name, default: DriftWork()].task = Task.detached { [self] in
        let found = runner.driftCheck(request, recorded: recorded, writes: writes, ignoringAttributes: work.unkeptAttributes)
        if Task.isCancelled { return }
        await self.driftChecked(name, found)
      }
    }
  }

  /// After a repair of `paths`' mode or owner: those whose configured mode or owner is still
  /// not what the file has cannot keep it (the writer's `fchmod`/`fchown` succeeded, and the
  /// file system or the kernel changed it). They are left out of the attribute comparison from
  /// now on, with one warning each; otherwise every check would rewrite them again.
  private func noteUnkeptAttributes(_ runner: MappingRunner, _ paths: [ExactString], recorded: [ExactString: ContentHash]) {
    guard !paths.isEmpty else { return }
    let name = runner.mapping.name
    for entry in runner.drifted(Set(paths), recorded: recorded) where entry.kind == .attributes {
      guard self.driftWork[name, default: DriftWork()].unkeptAttributes.insert(entry.path).inserted else { continue }
      let path = runner.mapping.kind == .tree ? runner.mapping.dest + "/" + entry.path.string : runner.mapping.dest
      self.logger.warning("the configured mode, owner or group does not stay on this file; only its bytes are repaired from now on", metadata: [
        "mapping.name": "\(name)", "file.path": "\(escapeBytes(path.utf8))",
      ])
    }
  }

  /// Cancels the checks still reading files (the daemon stops).
  func cancelDriftChecks() {
    for name in Array(self.driftWork.keys) {
      self.driftWork[name]?.task?.cancel()
      self.driftWork[name]?.task = nil
    }
  }

  /// Takes the result of a check that ran in a task of its own, and wakes the loop.
  private func driftChecked(_ name: String, _ found: DriftFound) {
    self.driftWork[name, default: DriftWork()].task = nil
    self.logger.debug("local files checked", metadata: [
      "mapping.name": "\(name)", "drift.checked": "\(found.checked)", "drift.found": "\(found.drifted.count)",
    ])
    if let verified = found.verified, let runner = self.runners.first(where: { $0.mapping.name == name }),
      runner.driftMarks.writes == found.writes
    {
      runner.driftMarks.published(verified)
    }
    self.driftWork[name]?.found = found.drifted.isEmpty ? nil : found
    // Every file holds what was written, and nothing was written since the check began: a
    // failure an earlier repair reported is over (the file came back by itself: a bind
    // mount removed, say).
    if found.drifted.isEmpty, found.coversEverything, self.failedRepairs[name] != nil,
      let runner = self.runners.first(where: { $0.mapping.name == name }), runner.driftMarks.writes == found.writes,
      self.state[mapping: name].files == found.recorded
    {
      self.repairFailureEnded(name)
      self.logger.notice("local files hold etcd's content again", metadata: ["mapping.name": "\(name)"])
    }
    // An empty request: the loop looks at this result and at what was queued meanwhile.
    self.inbox?.send(.drift(name, []))
  }

  /// A failure a drift repair reported is over: the error it replaced (a failed reload's,
  /// still owed) is reported again, or none.
  private func repairFailureEnded(_ name: String) {
    guard let replaced = self.failedRepairs.removeValue(forKey: name) else { return }
    self.errors[name] = replaced.isEmpty ? nil : replaced
  }

  /// Puts back the files `found` says drifted, logs and counts them, and spaces out the
  /// next check when the mapping's files keep changing.
  private func putBack(_ runner: MappingRunner, _ found: DriftFound) async {
    let name = runner.mapping.name
    let drifted = found.drifted
    let recorded = found.recorded
    let snapshot = self.keySpace
    self.applying.insert(name)
    let outcome = await runner.repair(snapshot, recorded: recorded, drifted: drifted.map(\.path))
    self.applying.remove(name)
    // Only this loop applies mappings and moves the snapshot; what the await let in (the
    // etcd probe, a status request) publishes progress, which `applying` held back.
    var kinds: [ExactString: DriftKind] = [:]
    for entry in drifted {
      let path: String = runner.mapping.kind == .tree ? runner.mapping.dest + "/" + entry.path.string : runner.mapping.dest
      if kinds[ExactString(path)] == nil { kinds[ExactString(path)] = entry.kind }
    }
    switch outcome {
    case .restored(let paths):
      // Every file is etcd's again (the check compared them all, and the repair put back
      // what it found): a failure an earlier repair reported is over. After a check of some
      // files only, another may still be wrong; the next whole check tells.
      if found.coversEverything, self.failedRepairs[name] != nil {
        self.repairFailureEnded(name)
        // Nothing to put back: the files came back by themselves while the repair began (a
        // bind mount removed), and no "put back" line below says the failure is over. Exact
        // for a file and an in-place tree, whose `paths` are the files written; a swapped
        // tree's are the files that no longer differ after its publish, which says less.
        if paths.isEmpty, !(runner.mapping.kind == .tree && runner.mapping.swap == .symlink) {
          self.logger.notice("local files hold etcd's content again", metadata: ["mapping.name": "\(name)"])
        }
      }
      for path in paths {
        self.logger.warning("file changed locally; etcd's content put back", metadata: [
          "mapping.name": "\(name)", "file.path": "\(escapeBytes(path.utf8))", "drift": "\(kinds[ExactString(path)]?.rawValue ?? "changed")",
          "etcd.revision": "\(snapshot.revision)",
        ])
      }
      self.metrics.driftRepaired(name, files: paths.count)
      self.noteUnkeptAttributes(runner, drifted.filter { $0.kind == .attributes }.map(\.path), recorded: recorded)
      guard !paths.isEmpty else { return }
      let now = ContinuousClock.now
      let wasSpacing = self.driftWork[name]?.limit.spacing ?? false
      guard let delay = self.driftWork[name, default: DriftWork()].limit.repaired(at: now) else { return }
      if !wasSpacing {
        self.logger.warning("files keep changing locally; their repairs are spaced out", metadata: [
          "mapping.name": "\(name)", "drift.repairs": "\(DriftRepairLimit.burst + 1)", "drift.window": "\(DriftRepairLimit.window)",
          "retry.in": "\(delay)",
        ])
      }
      // Wake the loop when the next check may run (what was queued meanwhile waits for it).
      let inbox = self.inbox
      Task {
        try? await Task.sleep(until: now + delay)
        inbox?.send(.drift(name, []))
      }
    case .stale:
      // The render no longer gives the recorded bytes (a template that reads the host name
      // or a local file): an ordinary apply brings the files to what it gives now.
      self.logger.notice("file changed locally; the mapping is applied again (its render changed since it was written)", metadata: [
        "mapping.name": "\(name)", "file.path": "\(escapeBytes((kinds.keys.min()?.string ?? runner.mapping.dest).utf8))",
      ])
      // That apply compares every file: one whose record did not change may be the drifted
      // one, and a trusted in-place tree's apply would not look at it.
      self.verified.remove(name)
      self.markDirty([name])
    case .failed(let error):
      // The next change (comparing every file), or the next periodic check, tries again.
      // Until then the mapping reports the failure (status, presence, STATUS=): its files
      // are not etcd's, so the revision it has applied must not move on. A reload failure it
      // replaces comes back when it ends.
      self.verified.remove(name)
      if self.failedRepairs[name] == nil { self.failedRepairs[name] = self.errors[name] ?? "" }
      self.errors[name] = error.code.rawValue
      self.logger.error("file changed locally and could not be put back", metadata: [
        "mapping.name": "\(name)", "file.path": "\(escapeBytes((kinds.keys.min()?.string ?? runner.mapping.dest).utf8))", "error": "\(error)",
      ])
    }
  }
}
