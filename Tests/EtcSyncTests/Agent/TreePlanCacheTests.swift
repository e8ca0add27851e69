@testable import EtcSync
import EtcdClient
import EtcdTestSupport
import Templates
import Testing

/// ``TreePlanCache`` against its oracle, ``MappingPlanner/plan(_:folding:)`` from scratch: after
/// every generated batch (value changes, new keys, deletes, a delete and a create in one
/// revision, rejected keys, a key that conflicts with a directory, case twins, a folding that
/// changes) the cached plan must equal the planner's, its hashes must be its files' hashes, and
/// `changed` must name exactly the files whose bytes changed. Pure logic: the snapshot is built
/// with etcd's create/mod revision rules, as the watch delivers them.
@Suite("Tree plan cache")
struct TreePlanCacheTests {
  /// A snapshot driven the way the agent's watch drives it: create revisions kept across puts.
  struct Snapshot {
    var space = KeySpace(revision: 1)
    var created: [[UInt8]: Int64] = [:]

    mutating func batch(_ changes: [(key: [UInt8], value: [UInt8]?)]) {
      let revision = self.space.revision + 1
      var events: [WatchEvent] = []
      for change in changes {
        if let value = change.value {
          let create = self.created[change.key] ?? revision
          self.created[change.key] = create
          events.append(WatchEvent(kind: .put, kv: KeyValue(key: change.key, value: value, createRevision: create,
                                                            modRevision: revision, version: 1)))
        } else if self.created.removeValue(forKey: change.key) != nil {
          events.append(WatchEvent(kind: .delete, kv: KeyValue(key: change.key, value: [], modRevision: revision)))
        }
      }
      if events.isEmpty { self.space.advance(to: revision) } else { self.space.apply(events) }
    }
  }

  static let planner = MappingPlanner(mapping: Mapping(name: "t", kind: .tree, prefixes: ["/t/"], dest: "/srv/t", swap: .inPlace),
                                      template: nil, attributes: FileAttributes())

  static func files(_ plan: MappingPlan) -> [ExactString: DesiredFile] {
    guard case .tree(let files) = plan.output else { return [:] }
    return files
  }

  /// Checks the cache's plan of `snapshot` against the planner's; returns whether it was an update.
  @discardableResult
  static func check(_ cache: TreePlanCache, _ snapshot: Snapshot, folding: NameFolding = .exact,
                    previous: [ExactString: DesiredFile], sourceLocation: Testing.SourceLocation = #_sourceLocation) -> Bool {
    let oracle = Result { () throws(PlanError) in try Self.planner.plan(snapshot.space, folding: folding) }
    let cached = Result { () throws(PlanError) in try cache.plan(snapshot.space, folding: folding, planner: Self.planner) }
    switch (oracle, cached) {
    case (.failure(let expected), .failure(let got)):
      #expect(expected.code == got.code && expected.message == got.message, sourceLocation: sourceLocation)
      return false
    case (.success(let expected), .success(let got)):
      let files = Self.files(got.plan)
      #expect(files == Self.files(expected), "files", sourceLocation: sourceLocation)
      #expect(got.plan.rejected == expected.rejected, "rejected", sourceLocation: sourceLocation)
      #expect(got.plan.held == expected.held, "held", sourceLocation: sourceLocation)
      #expect(got.hashes == files.mapValues { ContentHash(of: $0.bytes) }, "hashes", sourceLocation: sourceLocation)
      if let changed = got.changed {
        let differing = Set(files.keys.filter { previous[$0]?.bytes != files[$0]?.bytes })
        #expect(differing.isSubset(of: changed), "changed names every file whose bytes changed", sourceLocation: sourceLocation)
        #expect(changed.allSatisfy { files[$0] != nil }, sourceLocation: sourceLocation)
      }
      return got.changed != nil
    default:
      Issue.record("cache and planner disagree on failing: \(oracle) vs \(cached)", sourceLocation: sourceLocation)
      return false
    }
  }

  @Test("value changes update the cached plan; new, deleted and swapped keys plan from scratch")
  func cases() {
    let cache = TreePlanCache()
    var snapshot = Snapshot()
    snapshot.batch((0..<20).map { (Array("/t/d\($0 % 3)/k\($0)".utf8), Array("v\($0)".utf8)) }
      + [(Array("/t/bad//x".utf8), Array("x".utf8)), (Array("/t/c".utf8), Array("c".utf8)), (Array("/t/c/d".utf8), Array("cd".utf8))])
    #expect(!Self.check(cache, snapshot, previous: [:]), "the first plan is from scratch")
    var previous = Self.files(try! Self.planner.plan(snapshot.space))

    snapshot.batch([(Array("/t/d1/k1".utf8), Array("new".utf8))])
    #expect(Self.check(cache, snapshot, previous: previous), "a value change is an update")
    previous = Self.files(try! Self.planner.plan(snapshot.space))

    // A rejected key's and a held key's value change: an update that changes no file.
    snapshot.batch([(Array("/t/bad//x".utf8), Array("y".utf8)), (Array("/t/c".utf8), Array("c2".utf8))])
    #expect(Self.check(cache, snapshot, previous: previous))

    // A progress notification: no change at all.
    snapshot.batch([])
    #expect(Self.check(cache, snapshot, previous: previous))

    snapshot.batch([(Array("/t/new".utf8), Array("n".utf8))])
    #expect(!Self.check(cache, snapshot, previous: previous), "a new key plans from scratch")
    previous = Self.files(try! Self.planner.plan(snapshot.space))

    // One delete and one create in one revision: as many keys as before, not the same ones.
    snapshot.batch([(Array("/t/d0/k0".utf8), nil), (Array("/t/d0/k0b".utf8), Array("b".utf8))])
    #expect(!Self.check(cache, snapshot, previous: previous))
    previous = Self.files(try! Self.planner.plan(snapshot.space))

    // Deleted and put again in one batch: a new create revision.
    snapshot.batch([(Array("/t/d2/k2".utf8), nil)])
    #expect(!Self.check(cache, snapshot, previous: previous))
    previous = Self.files(try! Self.planner.plan(snapshot.space))
    snapshot.batch([(Array("/t/d2/k2".utf8), Array("again".utf8))])
    #expect(!Self.check(cache, snapshot, previous: previous))
    previous = Self.files(try! Self.planner.plan(snapshot.space))

    // Another folding: from scratch; a collision under it fails as the planner does, and
    // leaves nothing cached.
    let folding = NameFolding(foldsCase: true, normalizes: false)
    snapshot.batch([(Array("/t/d1/k1".utf8), Array("fold".utf8))])
    #expect(!Self.check(cache, snapshot, folding: folding, previous: previous))
    snapshot.batch([(Array("/t/D1/k1".utf8), Array("twin".utf8))])
    #expect(!Self.check(cache, snapshot, folding: folding, previous: previous))
    snapshot.batch([(Array("/t/d1/k1".utf8), Array("after".utf8))])
    #expect(!Self.check(cache, snapshot, previous: previous), "after a failed plan, from scratch")

    // A snapshot older than the cached plan (a new agent's): from scratch.
    var older = Snapshot()
    older.batch([(Array("/t/d1/k1".utf8), Array("old".utf8))])
    #expect(!Self.check(cache, older, previous: [:]))
  }

  @Test("generated batches: the cached plan always equals the planner's", arguments: [1, 2, 3, 4] as [UInt64])
  func generated(seed: UInt64) {
    var random = SplitMix64(seed: seed)
    let cache = TreePlanCache()
    var snapshot = Snapshot()
    // A small key universe, so that puts hit existing keys, deletes hit, and conflicts arise.
    let names: [[UInt8]] = ["a", "b", "c", "a/x", "d/e", "d/f", "d", "bad//k", "..data", "é", "e\u{301}", "f/g/h"].map { Array("/t/\($0)".utf8) }
    var previous: [ExactString: DesiredFile] = [:]
    var updates = 0
    for step in 0..<400 {
      var changes: [(key: [UInt8], value: [UInt8]?)] = []
      for _ in 0..<Int.random(in: 0...3, using: &random) {
        let key = names[Int.random(in: 0..<names.count, using: &random)]
        let live = snapshot.created[key] != nil
        // Mostly value changes of live keys, as a configuration tree sees them.
        if live, Int.random(in: 0..<10, using: &random) < 8 {
          changes.append((key, Array("v\(step)-\(Int.random(in: 0..<3, using: &random))".utf8)))
        } else if live {
          changes.append((key, nil))
        } else {
          changes.append((key, Array("n\(step)".utf8)))
        }
      }
      snapshot.batch(changes)
      if Self.check(cache, snapshot, previous: previous) { updates += 1 }
      previous = (try? Self.planner.plan(snapshot.space)).map(Self.files) ?? [:]
    }
    #expect(updates > 100, "most batches are value changes: \(updates) updates")
  }
}
