import EtcdClient
import Logging
import Templates

#if canImport(Glibc)
import Glibc
#endif

/// The guards of write-back: a destination that is no longer the directory the agent started
/// with, a mass disappearance of files, and the quotas of ``WriteBackLimits``.
extension Agent {
  /// Compares the watched directory's device and inode with those the state file recorded
  /// (recording them the first time, and keeping them across restarts). False while they
  /// differ: the mapping is then stopped (``LocalWork/fault``), reported once, and resumes by
  /// itself when the same directory is back (a remount of the same file system). A new one
  /// is accepted only by the operator: `etcsync run --accept-destination NAME`.
  ///
  /// This check goes by the path; the identity it leaves in the runner
  /// (``MappingRunner/recordedRoot``) is verified again by every writer and reader on the
  /// descriptor it opens, so a directory replaced right after this check is not written
  /// either (the write fails with ``MappingFailure/destinationReplaced``).
  func checkDestination(_ runner: MappingRunner) -> Bool {
    let name = runner.mapping.name
    let scanner = LocalScanner(mapping: runner.mapping)
    let current = scanner.destinationIdentity()
    var work = self.local[name] ?? LocalWork()
    defer {
      self.local[name] = work
      runner.recordedDestination.identity = work.identity
    }
    if work.identity == nil, let stored = self.state.destinations[name], stored.path == scanner.watchedDirectory,
      !self.configuration.acceptDestinations.contains(name)
    {
      // Recorded by an earlier run: an unmounted volume's empty mount point at boot is not
      // that directory, and nothing may be written into it.
      work.identity = DirectoryIdentity(device: stored.device, inode: stored.inode)
    }
    guard let recorded = work.identity else {
      // A destination that does not exist yet is recorded once the first render made it.
      work.identity = current
      if let current {
        let record = DestinationRecord(path: scanner.watchedDirectory, device: current.device, inode: current.inode)
        if let stored = self.state.destinations[name], stored != record {
          let message: Logger.Message = stored.path == record.path
            ? "write-back destination accepted as it is now (--accept-destination)" : "write-back destination recorded for a new path"
          self.logger.notice(message, metadata: [
            "mapping.name": "\(name)", "file.path": "\(scanner.watchedDirectory)", "directory.identity": "\(current)",
            "directory.recorded": "\(DirectoryIdentity(device: stored.device, inode: stored.inode))",
          ])
        }
        if self.state.destinations[name] != record {
          self.state.destinations[name] = record
          self.saveState()
        }
      }
      return true
    }
    if current == recorded {
      if work.fault?.code == .destinationReplaced {
        work.fault = nil
        self.logger.notice("write-back destination is back; the mapping resumes", metadata: [
          "mapping.name": "\(name)", "file.path": "\(scanner.watchedDirectory)", "directory.identity": "\(recorded)",
        ])
        // Everything is compared again before the next render.
        work.pending = nil
        self.markDirty([name])
      }
      return true
    }
    let now = current.map(\.description) ?? "missing"
    let message = "\(scanner.watchedDirectory) is not the directory recorded for this mapping (\(recorded), now \(now)): unmounted, replaced or removed; nothing is pushed from it or written into it until it is back. If the new directory is meant, restart the agent once with `etcsync run --accept-destination \(name)`"
    if work.fault?.code != .destinationReplaced || work.fault?.message != message {
      self.logger.error("write-back destination replaced; the mapping is stopped, its files are untouched", metadata: [
        "mapping.name": "\(name)", "file.path": "\(scanner.watchedDirectory)",
        "directory.identity": "\(recorded)", "directory.now": "\(now)",
      ])
      self.metrics.writeBack(name, "refused")
      // Rendered (that is, reported as failing) at once, not at the next etcd change.
      self.markDirty([name])
    }
    work.fault = MappingError(.destinationReplaced, message, subject: .file(ExactString(scanner.watchedDirectory)))
    return false
  }

  /// The failed result of a write-back mapping that is stopped, without writing anything;
  /// nil when it may be written. Called right before every render.
  func writeBackStop(_ runner: MappingRunner, revision: Int64) -> MappingResult? {
    guard runner.mapping.writeBack else { return nil }
    _ = self.checkDestination(runner)
    guard let fault = self.local[runner.mapping.name]?.fault else { return nil }
    var result = MappingResult(mapping: runner.mapping.name, revision: revision)
    // Looked at again with the retry backoff (``MappingFailure/retryable``): a remount,
    // restored files.
    result.failure = fault
    return result
  }

  /// A fault when a scan found more of the recorded files (or a document's entries) gone
  /// than ``WriteBackLimits`` allows. Files whose keys are gone from etcd too do not count:
  /// deleting the keys in etcd is how an operator confirms a mass deletion. Before the first
  /// snapshot (the push at start) every vanished file counts.
  func massDeletion(_ runner: MappingRunner, _ scanner: LocalScanner, _ scan: LocalScanner.ScanResult,
                    record: [ExactString: LocalRecord]) -> MappingError? {
    guard scan.changes.contains(where: { $0.value == nil }) else { return nil }
    // A file mapping's one record is `.` (the file itself); a document's `.` is the document,
    // whose entries are the records that count.
    let recorded = runner.mapping.kind == .file ? Array(record.keys) : record.keys.filter { $0 != MappingRunner.wholeFile }
    var vanished = 0
    let known = { (key: [UInt8]) -> Bool in self.keySpace.revision == 0 || self.keySpace[key] != nil }
    if runner.mapping.kind == .tree {
      // Every recorded file, not only the ones inotify reported so far: `rm -r` and an
      // unmount arrive as many events.
      for path in recorded where scanner.stamp(path.string) == nil && known(scanner.key(for: path.string)) {
        vanished += 1
      }
    } else {
      vanished = scan.changes.filter { $0.value == nil && known($0.key) }.count
    }
    let limits = runner.mapping.writeBackLimits
    // Every recorded file gone at once is an empty directory where the files were (an
    // unmounted volume at boot, a replaced one after a SIGHUP), however few they were: a
    // file mapping's one file, a tree of two. Below `deleteFiles` this used to pass, and the
    // push deleted the keys on every host.
    let everything = limits.deleteShare < 1 && vanished > 0 && vanished == recorded.count
    guard everything || limits.isMassDeletion(vanished: vanished, recorded: recorded.count) else { return nil }
    let share = Int((limits.deleteShare * 100).rounded())
    let directory = MappingError.Subject.file(ExactString(scanner.watchedDirectory))
    if everything && !limits.isMassDeletion(vanished: vanished, recorded: recorded.count) {
      return MappingError(
        .massDeletion,
        "all \(vanished) recorded \(runner.mapping.kind == .format ? "entries" : "files") vanished at once: taken for a fault (an unmounted or replaced destination?), not an edit; no delete is pushed and nothing is written until they are back. To delete them, delete the keys in etcd",
        subject: directory)
    }
    return MappingError(
      .massDeletion,
      "\(vanished) of \(recorded.count) recorded \(runner.mapping.kind == .format ? "entries" : "files") vanished at once (more than writeBackLimits.deleteShare \(share)% and at least deleteFiles \(limits.deleteFiles)): taken for a fault (an unmount?), not an edit; no delete is pushed and nothing is written until they are back. To delete them, delete the keys in etcd, or raise writeBackLimits.deleteShare",
      subject: directory)
  }

  /// Refuses what goes beyond the mapping's quotas: a scan with more keys or bytes than
  /// `keysPerScan` and `bytesPerScan` pushes nothing, new keys that would make the prefix
  /// hold more than `maxKeys` are not created, puts that would make it hold more than
  /// `maxBytes` are not made, and a scan beyond what `keysPerMinute` and `bytesPerMinute`
  /// leave pushes nothing until enough has come back. Refused files are kept (renders leave
  /// them alone) and looked at again when they change (or when the rate allows them).
  /// `unread` are the changed files the scan did not read because it was already past
  /// `keysPerScan` or `bytesPerScan` (``LocalScanner/ScanResult/unread``): refused with it.
  func applyQuotas(_ runner: MappingRunner, _ scanner: LocalScanner, _ ready: inout [LocalChange], _ work: inout LocalWork,
                   unread: [LocalProblem] = []) async {
    await self.applyScanAndKeyQuotas(runner, scanner, &ready, &work, unread: unread)
    await self.applyByteQuota(runner, scanner, &ready, &work)
    self.applyRateLimits(runner, &ready, &work)
  }

  private func applyScanAndKeyQuotas(_ runner: MappingRunner, _ scanner: LocalScanner, _ ready: inout [LocalChange],
                                     _ work: inout LocalWork, unread: [LocalProblem]) async {
    guard !ready.isEmpty || !unread.isEmpty else { return }
    let name = runner.mapping.name
    let limits = runner.mapping.writeBackLimits
    // Files left unread count by their size: the scan stopped reading once past a limit.
    let bytes = ready.reduce(0) { $0 + ($1.value?.count ?? 0) } + unread.reduce(0) { $0 + Int($1.stamp?.size ?? 0) }
    let files = ready.count + unread.count
    if !unread.isEmpty || files > limits.keysPerScan || bytes > limits.bytesPerScan {
      self.logger.error("local edits exceed the write-back limits; nothing of this scan is pushed, the local files are kept", metadata: [
        "mapping.name": "\(name)", "files": "\(files)", "bytes": "\(bytes)",
        "limit.keysPerScan": "\(limits.keysPerScan)", "limit.bytesPerScan": "\(limits.bytesPerScan)",
      ])
      self.refuse(ready, in: scanner, &work)
      for file in unread { work.refused[file.path] = .some(file.stamp) }
      self.writeBackStats.refused += unread.count
      self.metrics.writeBack(name, "refused", count: files)
      ready = []
      return
    }
    // New files: their push requires that the key does not exist.
    let created = ready.filter { $0.value != nil && $0.base == 0 }
    guard !created.isEmpty else { return }
    // The mapping's own keys only (``Mapping/units``), as for `maxBytes`.
    var existing = 0
    if self.keySpace.revision == 0 {
      // The push at start comes before the first snapshot: etcd counts.
      for range in runner.mapping.ranges {
        existing += Int((try? await self.client.get(range, options: GetOptions(countOnly: true)).count) ?? 0)
      }
    } else {
      self.keySpace.forEach(in: runner.mapping.units) { _ in
        existing += 1
        return existing <= limits.maxKeys
      }
    }
    guard existing + created.count > limits.maxKeys else { return }
    self.logger.error("new local files would exceed writeBackLimits.maxKeys; they are not pushed, the local files are kept", metadata: [
      "mapping.name": "\(name)", "files": "\(created.count)", "etcd.keys": "\(existing)", "limit.maxKeys": "\(limits.maxKeys)",
    ])
    self.refuse(created, in: scanner, &work)
    self.metrics.writeBack(name, "refused", count: created.count)
    let refused = Set(created.map(\.path))
    ready.removeAll { refused.contains($0.path) }
  }

  /// When the puts would make the mapping's keys hold more than `maxBytes` (keys and values),
  /// every put that grows a value is refused; deletes and puts that shrink a value pass.
  private func applyByteQuota(_ runner: MappingRunner, _ scanner: LocalScanner, _ ready: inout [LocalChange],
                              _ work: inout LocalWork) async {
    guard !ready.isEmpty, ready.contains(where: { $0.value != nil }) else { return }
    let limits = runner.mapping.writeBackLimits
    // What the mapping's own keys (``Mapping/units``) hold now: the snapshot's, or etcd's for
    // the push at start, which comes before the first snapshot.
    var current: [[UInt8]: Int] = [:]  // bytes: compared exactly
    if self.keySpace.revision == 0 {
      for range in runner.mapping.ranges {
        guard let snapshot = try? await self.client.getAll(range) else {
          // Unknown: etcd's own answer to the push decides (it is unreachable anyway).
          return
        }
        for kv in snapshot.kvs { current[kv.key] = kv.key.count + kv.value.count }
      }
    } else {
      self.keySpace.forEach(in: runner.mapping.units) { kv in
        current[kv.key] = kv.key.count + kv.value.count
        return true
      }
    }
    let held = current.values.reduce(0, +)
    // What each change adds: its new size less what the key holds now.
    let growth = ready.map { change in (change.value.map { change.key.count + $0.count } ?? 0) - (current[change.key] ?? 0) }
    guard growth.contains(where: { $0 > 0 }) else { return }
    let total = held + growth.reduce(0, +)
    guard total > limits.maxBytes else { return }
    let growing = ready.indices.filter { growth[$0] > 0 }.map { ready[$0] }
    self.logger.error("local edits would exceed writeBackLimits.maxBytes; the growing ones are not pushed, the local files are kept", metadata: [
      "mapping.name": "\(runner.mapping.name)", "files": "\(growing.count)", "etcd.bytes": "\(held)",
      "bytes.after": "\(total)", "limit.maxBytes": "\(limits.maxBytes)",
    ])
    self.refuse(growing, in: scanner, &work)
    self.metrics.writeBack(runner.mapping.name, "refused", count: growing.count)
    let refused = Set(growing.map(\.path))
    ready.removeAll { refused.contains($0.path) }
  }

  /// A scan needing more keys or bytes than `keysPerMinute` and `bytesPerMinute` have left
  /// pushes nothing: its files are held (kept, reported) until the buckets have refilled
  /// enough, then scanned again. A scan larger than a whole minute's worth stays refused
  /// until its files change.
  private func applyRateLimits(_ runner: MappingRunner, _ ready: inout [LocalChange], _ work: inout LocalWork) {
    guard !ready.isEmpty else { return }
    let limits = runner.mapping.writeBackLimits
    let now = ContinuousClock.now
    let keys = ready.count
    let bytes = ready.reduce(0) { $0 + ($1.value?.count ?? 0) }
    var keyBucket = work.keyBucket ?? TokenBucket(perMinute: limits.keysPerMinute, now: now)
    var byteBucket = work.byteBucket ?? TokenBucket(perMinute: limits.bytesPerMinute, now: now)
    defer {
      work.keyBucket = keyBucket
      work.byteBucket = byteBucket
    }
    keyBucket.refill(now: now)
    byteBucket.refill(now: now)
    if keyBucket.holds(keys), byteBucket.holds(bytes) {
      keyBucket.take(keys)
      byteBucket.take(bytes)
      return
    }
    let retryAt = keyBucket.available(keys, after: now).flatMap { keysAt in byteBucket.available(bytes, after: now).map { max(keysAt, $0) } }
    let scanner = runner.localScanner()
    self.logger.error("local edits exceed writeBackLimits.keysPerMinute or bytesPerMinute; nothing of this scan is pushed yet, the local files are kept", metadata: [
      "mapping.name": "\(runner.mapping.name)", "files": "\(keys)", "bytes": "\(bytes)",
      "limit.keysPerMinute": "\(limits.keysPerMinute)", "limit.bytesPerMinute": "\(limits.bytesPerMinute)",
      "retry": retryAt.map { "in \($0 - now)" } ?? "when the files change (more than a minute's worth)",
    ])
    self.refuse(ready, in: scanner, &work)
    self.metrics.writeBack(runner.mapping.name, "refused", count: ready.count)
    if let retryAt {
      work.rateHeld.formUnion(ready.map(\.path))
      work.rateRetryAt = retryAt
      // The daemon looks again then (``releaseRateHeld(_:now:)``); `etcsync sync` does not.
      self.inbox?.tick(at: retryAt)
    }
    ready = []
  }

  /// The files a rate limit held, once the buckets allow them: no longer refused, and scanned
  /// again. Returns when to look again while they wait.
  func releaseRateHeld(_ name: String, now: ContinuousClock.Instant) -> ContinuousClock.Instant? {
    guard var work = self.local[name], let at = work.rateRetryAt else { return nil }
    guard now >= at else { return at }
    for path in work.rateHeld { work.refused[path] = nil }
    if let pending = work.pending { work.pending = pending.union(work.rateHeld) }
    work.first = work.first ?? now
    work.last = now
    work.rateHeld = []
    work.rateRetryAt = nil
    // Their scan decides: pushed, the watch renders the mapping; refused again, it stays held.
    self.local[name] = work
    return nil
  }

  private func refuse(_ changes: [LocalChange], in scanner: LocalScanner, _ work: inout LocalWork) {
    for change in changes { work.refused[change.path] = .some(change.stamp ?? scanner.stamp(change.path.string)) }
    self.writeBackStats.refused += changes.count
  }
}
