import EtcdClient
import Foundation
import Logging
import Templates

// Write-back's push: local edits to etcd as compare-and-swap Txns, and what a lost conflict
// leaves behind.
extension Agent {
  /// Errors that retrying the same push cannot cure.
  static func isPermanent(_ error: EtcdError) -> Bool {
    [.permissionDenied, .requestTooLarge, .tooManyOps, .duplicateKey, .invalidArgument, .authFailed].contains(error.code)
  }

  /// Changes in Txns of at most ``maxTxnOps`` operations and ``writeBackLimit`` bytes.
  static func chunks(_ changes: [LocalChange]) -> [[LocalChange]] {
    var chunks: [[LocalChange]] = []
    var current: [LocalChange] = []
    var bytes = 0
    for change in changes {
      let size = change.key.count + (change.value?.count ?? 0) + 64
      if !current.isEmpty && (current.count == Self.maxTxnOps || bytes + size > Self.writeBackLimit) {
        chunks.append(current)
        current = []
        bytes = 0
      }
      current.append(change)
      bytes += size
    }
    if !current.isEmpty { chunks.append(current) }
    return chunks
  }

  /// One Txn for up to ``maxTxnOps`` changes: every key's mod revision must still be the
  /// local copy's base. When one has moved on, each change is resolved on its own.
  func pushChunk(_ runner: MappingRunner, _ chunk: [LocalChange]) async throws(EtcdError) {
    let compares = chunk.map { Compare(KeyRange(key: $0.key), .modRevision($0.base), .equal) }
    let ops = chunk.map { change in
      change.value.map { Op.put(key: change.key, value: $0) } ?? Op.delete(KeyRange(key: change.key))
    }
    let response = try await self.client.txn(if: compares, then: ops)
    if response.succeeded {
      self.recordAccepted(runner, chunk, at: response.header.revision)
      return
    }
    for change in chunk { try await self.pushOne(runner, change) }
  }

  /// Pushes one change with its compare; on a conflict applies the mapping's policy.
  func pushOne(_ runner: MappingRunner, _ change: LocalChange) async throws(EtcdError) {
    var change = change
    for _ in 0..<5 {
      let op = change.value.map { Op.put(key: change.key, value: $0) } ?? Op.delete(KeyRange(key: change.key))
      let response = try await self.client.txn(
        if: [Compare(KeyRange(key: change.key), .modRevision(change.base), .equal)], then: [op],
        else: [.get(KeyRange(key: change.key))])
      if response.succeeded {
        self.recordAccepted(runner, [change], at: response.header.revision)
        return
      }
      let current = response.responses.first?.get?.kvs.first
      // Already what the local file holds (another agent pushed the same edit): nothing to do.
      if current?.value == change.value {
        self.recordAccepted(runner, [change], at: current?.modRevision ?? response.header.revision, pushed: false)
        return
      }
      let currentRevision = current?.modRevision ?? response.header.revision
      switch runner.mapping.conflict {
      case .localWins:
        self.logger.warning("write-back conflict: the local edit overwrites etcd's newer value (conflict: local-wins)", metadata: [
          "mapping.name": "\(runner.mapping.name)", "etcd.key": "\(escapeBytes(change.key))",
          "base.revision": "\(change.base)", "etcd.revision": "\(currentRevision)",
        ])
        self.writeBackStats.conflicts += 1
        self.metrics.writeBack(runner.mapping.name, "conflict")
        change.base = current?.modRevision ?? 0
        continue
      case .etcdWins:
        await self.lostConflict(runner, change, etcdRevision: currentRevision, keyExists: current != nil)
        return
      }
    }
    throw EtcdError(.unavailable, "key \(escapeBytes(change.key)) kept changing; the local edit is retried later")
  }

  /// Records that the local bytes are now the key's value at `revision`: our push (`pushed`,
  /// logged and counted), or etcd already held them (another agent pushed the same edit).
  func recordAccepted(_ runner: MappingRunner, _ changes: [LocalChange], at revision: Int64, pushed: Bool = true) {
    let name = runner.mapping.name
    var mappingState = self.state[mapping: name]
    for change in changes {
      mappingState.local[change.path] = change.value.map { LocalRecord(hash: ContentHash(of: $0), revision: revision) }
      guard pushed else { continue }
      self.logger.info(change.value == nil ? "local delete pushed" : "local edit pushed", metadata: [
        "mapping.name": "\(name)", "file.path": "\(self.displayPath(runner, change.path))",
        "etcd.key": "\(escapeBytes(change.key))", "etcd.revision": "\(revision)",
      ])
    }
    self.recordDocument(runner, &mappingState)
    self.state.mappings[name] = mappingState
    if pushed {
      self.writeBackStats.pushed += changes.count
      self.metrics.writeBack(name, "pushed", count: changes.count)
    }
    self.local[name, default: LocalWork()].holdUntil = max(self.local[name]?.holdUntil ?? 0, revision)
  }

  /// A document's own record follows the bytes the scan read once its entries are pushed, so
  /// the next render (etcd's canonical form of the same entries) is not taken for an edit. Not
  /// the bytes on disk now: a second edit saved while the push travelled is another edit,
  /// found by the next scan.
  func recordDocument(_ runner: MappingRunner, _ mappingState: inout MappingState) {
    let whole = MappingRunner.wholeFile
    guard runner.mapping.kind == .format, case .content(let hash) = self.local[runner.mapping.name]?.observed?[whole] else { return }
    mappingState.local[whole] = LocalRecord(hash: hash, revision: mappingState.local[whole]?.revision ?? 0)
  }

  /// etcd wins: the local bytes are kept beside the file as `NAME.conflict.REV`, and the
  /// next render writes etcd's value over the file.
  func lostConflict(_ runner: MappingRunner, _ change: LocalChange, etcdRevision: Int64, keyExists: Bool) async {
    let name = runner.mapping.name
    var copy = "-"
    if runner.mapping.kind == .format {
      // The whole edited document is what the user wrote; keep that.
      if case .bytes(let bytes, _) = runner.localScanner().readLocal(".", limit: LocalScanner.documentLimit) {
        copy = await self.keepConflictCopy(runner, path: ".", bytes: bytes, revision: etcdRevision) ?? "-"
      }
    } else if let value = change.value {
      copy = await self.keepConflictCopy(runner, path: change.path.string, bytes: value, revision: etcdRevision) ?? "-"
    }
    self.logger.warning("write-back conflict: etcd changed the key since the local copy; etcd wins", metadata: [
      "mapping.name": "\(name)", "file.path": "\(self.displayPath(runner, change.path))",
      "etcd.key": "\(escapeBytes(change.key))", "base.revision": "\(change.base)",
      "etcd.revision": "\(etcdRevision)", "conflict.copy": "\(copy)",
    ])
    self.writeBackStats.conflicts += 1
    self.metrics.writeBack(name, "conflict")
    var work = self.local[name] ?? LocalWork()
    work.overwrite[change.path] = .some(change.value.map { ContentHash(of: $0) })
    // Wait for etcd's value to reach the snapshot before rendering it over the edit. A
    // deleted key has no revision of its own to wait for: its delete arrives anyway.
    if keyExists { work.holdUntil = max(work.holdUntil, etcdRevision) }
    self.local[name] = work
    self.markDirty([name])
  }

  /// Writes `bytes` beside the file as `NAME.conflict.REV`; returns its path.
  func keepConflictCopy(_ runner: MappingRunner, path: String, bytes: [UInt8], revision: Int64) async -> String? {
    let file = DesiredFile(bytes: bytes, attributes: runner.planner.attributes)
    var options = AtomicWriter.Options()
    options.createDirectories = false
    // Written only into the directory the agent recorded (verified on its descriptor).
    options.rootIdentity = runner.recordedRoot
    var target: String
    let writer: AtomicWriter
    if runner.mapping.kind == .tree {
      writer = AtomicWriter(root: runner.mapping.dest, options: options)
      target = path + ".conflict.\(revision)"
    } else {
      let (fileWriter, name) = AtomicWriter.forFile(runner.mapping.dest, options: options)
      writer = fileWriter
      target = name + ".conflict.\(revision)"
    }
    // An earlier copy is never replaced: a second losing edit gets `.1`, `.2`, …
    var unique = target
    var counter = 0
    var info = stat()
    while lstat((writer.root == "/" ? "" : writer.root) + "/" + unique, &info) == 0 {
      counter += 1
      unique = target + ".\(counter)"
    }
    target = unique
    do {
      try await writer.write(file, to: target)
      return writer.root == "/" ? "/" + target : writer.root + "/" + target
    } catch {
      self.logger.error("cannot keep the conflicting local edit", metadata: [
        "mapping.name": "\(runner.mapping.name)", "file.path": "\(target)", "error": "\(error)",
      ])
      return nil
    }
  }
}
