import EtcdClient
import Synchronization
import Templates

/// A tree mapping's last plan, kept by its runner so that the plan of a later snapshot in
/// which only values changed is the last one with those files replaced, instead of a walk
/// that rebuilds (and hashes) every entry: a one-key change in a 100,000-key tree costs the
/// keys that changed, not the tree (docs/writing.md, "Trees that change one key at a time").
///
/// The update is taken only when it must give what ``MappingPlanner/plan(_:folding:)`` gives:
/// the same snapshot lineage (no re-read of etcd since, see ``KeySpace/lineage``), the same
/// name folding, a later or equal revision, as many keys under the prefix, and
/// every key changed since (mod revision above the cached one) one that was there before
/// (create revision at or below it) whose path or rejection the cached plan already holds.
/// The key set is then the same, so the paths, the rejected keys (their rules read only the
/// key) and the conflicting (held) paths are too; only files' bytes differ. Anything else
/// plans from scratch and caches that.
final class TreePlanCache: Sendable {
  /// One cached plan.
  struct Entry: Sendable {
    var revision: Int64
    /// The snapshot's ``KeySpace/lineage``: revisions compare only within one.
    var lineage: UInt64
    var folding: NameFolding
    /// Keys under the prefix, rejected ones included.
    var count: Int
    var plan: MappingPlan
    /// The content hash of each file of the plan's output.
    var hashes: [ExactString: ContentHash]
    /// The keys the plan rejected, by bytes.
    var rejectedKeys: Set<[UInt8]>
  }

  /// A plan, the hashes of its files, and the paths whose files changed since the cached
  /// plan (nil: planned from scratch).
  struct Planned: Sendable {
    var plan: MappingPlan
    var hashes: [ExactString: ContentHash]
    var changed: Set<ExactString>?
  }

  private let entry = Mutex<Entry?>(nil)

  init() {}

  /// The plan of `keySpace` (see the type's rules). A plan that throws leaves nothing cached.
  func plan(_ keySpace: KeySpace, folding: NameFolding, planner: MappingPlanner) throws(PlanError) -> Planned {
    // Taken out, so that its dictionaries are not shared while they are updated in place.
    let taken = self.entry.withLock { entry -> Entry? in
      let value = entry
      entry = nil
      return value
    }
    if var cached = taken, let planned = Self.update(&cached, keySpace, folding: folding, planner: planner) {
      self.entry.withLock { $0 = cached }
      return planned
    }
    let plan = try planner.plan(keySpace, folding: folding)
    var count = 0
    keySpace.forEach(withPrefix: KeyPrefix(planner.mapping.prefix ?? "")) { _ in
      count += 1
      return true
    }
    let hashes: [ExactString: ContentHash]
    if case .tree(let files) = plan.output { hashes = files.mapValues { ContentHash(of: $0.bytes) } } else { hashes = [:] }
    let entry = Entry(revision: keySpace.revision, lineage: keySpace.lineage, folding: folding, count: count, plan: plan, hashes: hashes,
                      rejectedKeys: Set(plan.rejected.map(\.key)))
    self.entry.withLock { $0 = entry }
    return Planned(plan: plan, hashes: hashes, changed: nil)
  }

  /// `cached` brought to `keySpace` when only values changed; nil (and `cached` to be
  /// dropped) otherwise.
  private static func update(_ cached: inout Entry, _ keySpace: KeySpace, folding: NameFolding, planner: MappingPlanner) -> Planned? {
    guard cached.lineage == keySpace.lineage, cached.folding == folding, keySpace.revision >= cached.revision,
      case .tree(var files) = cached.plan.output
    else { return nil }
    let since = cached.revision
    let prefix = KeyPrefix(planner.mapping.prefix ?? "")
    var count = 0
    var changedKeys: [KeyValue] = []
    // A revision outside etcd's rules (0, or above the snapshot's: a key-value built by hand)
    // cannot say whether it changed.
    var odd = false
    keySpace.forEach(withPrefix: prefix) { kv in
      count += 1
      if kv.modRevision <= 0 || kv.modRevision > keySpace.revision { odd = true }
      if kv.modRevision > since { changedKeys.append(kv) }
      return true
    }
    guard count == cached.count, !odd else { return nil }
    // The output's storage is released from the entry, so that `files` is updated in place.
    cached.plan.output = .tree([:])
    var changed: Set<ExactString> = []
    for kv in changedKeys {
      guard kv.createRevision <= since else { return nil }
      let path: ExactString
      do throws(KeyPathError) {
        path = ExactString(try relativePath(forKey: kv.key, prefix: prefix))
      } catch {
        guard cached.rejectedKeys.contains(kv.key) else { return nil }
        continue
      }
      // A key that conflicts with another (`c` beside `c/d`) stays rejected and held.
      if cached.plan.held.contains(path) { continue }
      guard files[path] != nil else { return nil }
      files[path] = DesiredFile(bytes: kv.value, attributes: planner.attributes)
      cached.hashes[path] = ContentHash(of: kv.value)
      changed.insert(path)
    }
    cached.plan.output = .tree(files)
    cached.revision = keySpace.revision
    return Planned(plan: cached.plan, hashes: cached.hashes, changed: changed)
  }
}
