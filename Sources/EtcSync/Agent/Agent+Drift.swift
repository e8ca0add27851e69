import Logging
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

// Drift repair (docs/agent.md, "Drift repair"): a file of a mapping without write-back that
// someone changes, deletes or replaces while the daemon runs is put back to the bytes the
// agent wrote at the applied revision. inotify on the destinations' directories finds most
// changes at once; a periodic check of the content hashes finds the rest.
extension Agent {
  /// Starts the inotify watchers of the mappings that repair drift: one per tree (its whole
  /// root), one per directory holding destination files (their parent, since an editor's or
  /// `mv`'s rename replaces the file's inode). A directory that cannot be watched is logged
  /// and left to the periodic check.
  func startDriftWatchers(into inbox: Inbox) -> [DirectoryWatcher] {
    var watchers: [DirectoryWatcher] = []
    // Files of several mappings in one directory share its watcher, by name as bytes.
    var files: [ExactString: [(name: String, file: String)]] = [:]
    var directories: [ExactString] = []
    for runner in self.runners where runner.repairsDrift {
      let name = runner.mapping.name
      if runner.mapping.kind == .tree {
        do {
          let watcher = try DirectoryWatcher(root: runner.mapping.dest, recursive: true)
          watchers.append(watcher)
          Task {
            for await batch in watcher.changes {
              if batch.contains(where: { $0.kind == .overflow }) {
                inbox.send(.drift(name, nil))
              } else {
                inbox.send(.drift(name, Set(batch.map { ExactString($0.path) })))
              }
            }
          }
        } catch {
          self.driftWatchFailed(name, path: runner.mapping.dest, error)
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
        watchers.append(watcher)
        Task {
          for await batch in watcher.changes {
            let lost = batch.contains { $0.kind == .overflow }
            for owner in owners where lost || batch.contains(where: { $0.path.bytesEqual(owner.file) }) {
              inbox.send(.drift(owner.name, lost ? nil : [MappingRunner.wholeFile]))
            }
          }
        }
      } catch {
        for owner in owners { self.driftWatchFailed(owner.name, path: directory.string, error) }
      }
    }
    // A change made between the first sync and the watchers' start raised no event: every
    // file is checked once (through the inbox, so the loop looks at once).
    for runner in self.runners where runner.repairsDrift { inbox.send(.drift(runner.mapping.name, nil)) }
    return watchers
  }

  private func driftWatchFailed(_ name: String, path: String, _ error: any Error) {
    let periodic = self.configuration.driftCheckInterval > .zero
    self.logger.warning(
      periodic ? "local changes cannot be watched; drift is repaired by the periodic check only"
        : "local changes cannot be watched and driftCheckInterval is 0; drift is not repaired",
      metadata: ["mapping.name": "\(name)", "file.path": "\(path)", "error": "\(error)"])
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
  /// its check waits: the coming apply writes (and compares) the files anyway.
  private func driftRepairable(_ name: String) -> Bool {
    !self.schedule.isPending(name) && self.schedule.retry(name) == nil && !self.applying.contains(name)
      && (self.errors[name] == nil || self.errors[name] == MappingFailure.reloadFailed.rawValue)
      && self.state[mapping: name].appliedRevision != 0
  }

  /// Checks the files queued by ``noteDrift(_:paths:)`` of every mapping that can be checked
  /// now, and puts back those that drifted. Runs in the daemon's loop after the due applies,
  /// so it never races one; a check that must wait stays queued.
  func repairDrift() async {
    for runner in self.runners {
      let name = runner.mapping.name
      guard self.drift[name] != nil, self.driftRepairable(name), let request = self.drift.removeValue(forKey: name) else {
        continue
      }
      let recorded = self.state[mapping: name].files
      let candidates = request.everything ? nil : runner.driftCandidates(request.changed, recorded: recorded)
      let drifted = runner.drifted(candidates, recorded: recorded)
      guard !drifted.isEmpty else { continue }
      let snapshot = self.keySpace
      self.applying.insert(name)
      let outcome = await runner.repair(snapshot, recorded: recorded, drifted: drifted.map(\.path))
      self.applying.remove(name)
      // Only this loop applies mappings and moves the snapshot; what the await let in (the
      // etcd probe, a status request) publishes progress, which `applying` held back.
      let kinds = Dictionary(drifted.map { (ExactString(runner.mapping.kind == .tree ? runner.mapping.dest + "/" + $0.path.string : runner.mapping.dest), $0.kind) }) { first, _ in first }
      switch outcome {
      case .restored(let paths):
        for path in paths {
          self.logger.warning("file changed locally; etcd's content put back", metadata: [
            "mapping.name": "\(name)", "file.path": "\(escapeBytes(path.utf8))", "drift": "\(kinds[ExactString(path)]?.rawValue ?? "changed")",
            "etcd.revision": "\(snapshot.revision)",
          ])
        }
        self.metrics.driftRepaired(name, files: paths.count)
      case .stale:
        // The render no longer gives the recorded bytes (a template that reads the host name
        // or a local file): an ordinary apply brings the files to what it gives now.
        self.logger.notice("file changed locally; the mapping is applied again (its render changed since it was written)", metadata: [
          "mapping.name": "\(name)", "file.path": "\(escapeBytes((kinds.keys.min()?.string ?? runner.mapping.dest).utf8))",
        ])
        self.markDirty([name])
      case .failed(let error):
        // The next change, or the next periodic check, tries again.
        self.logger.error("file changed locally and could not be put back", metadata: [
          "mapping.name": "\(name)", "file.path": "\(escapeBytes((kinds.keys.min()?.string ?? runner.mapping.dest).utf8))", "error": "\(error)",
        ])
      }
    }
  }
}
