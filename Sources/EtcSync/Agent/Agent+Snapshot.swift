import EtcdClient
import Foundation
import Logging
import Synchronization
import Templates

// The ranges the agent reads, and the snapshot it reads them into.
extension Agent {
  // MARK: Ranges

  /// Every range a mapping reads: its prefixes, or its one key.
  nonisolated var ranges: [KeyRange] {
    self.configuration.mappings.flatMap(\.ranges)
  }

  /// The smallest range holding every mapping's range.
  nonisolated var coveringRange: KeyRange {
    let ranges = self.ranges
    let start = ranges.map(\.key).min { $0.lexicographicallyPrecedes($1) } ?? [0]
    let ends = ranges.map { $0.rangeEnd.isEmpty ? $0.key + [0] : $0.rangeEnd }
    let end = ends.contains([0]) ? [0] : (ends.max { $0.lexicographicallyPrecedes($1) } ?? [0])
    return KeyRange(key: start, rangeEnd: end)
  }

  nonisolated func mappings(touching key: [UInt8]) -> [String] {
    self.configuration.mappings.filter { mapping in
      if mapping.kind == .file { return mapping.key.map { Array($0.utf8) == key } ?? false }
      return mapping.prefixes.contains { KeyPrefix($0).contains(key) }
    }.map(\.name)
  }

  /// Reads every mapping's ranges at one revision: the first range's first page fixes it.
  func readSnapshot() async throws(EtcdError) -> KeySpace {
    var revision: Int64 = 0
    var kvs: [KeyValue] = []
    for range in self.ranges {
      if let report = self.progressReporter {
        // Page by page, so that a big prefix shows its progress.
        revision = try await self.client.forEachPage(range, revision: revision) { page in
          kvs += page
          report("read \(kvs.count) keys")
        }
      } else {
        let snapshot = try await self.client.getAll(range, revision: revision)
        revision = snapshot.revision
        // Taken as it is when it is the only range (no second 100k-entry array).
        if kvs.isEmpty { kvs = snapshot.kvs } else { kvs += snapshot.kvs }
      }
    }
    if revision == 0 { revision = try await self.client.status().revision }
    return KeySpace(revision: revision, kvs: kvs)
  }

  /// Refuses an etcd that is not the one the files came from: another cluster ID, or a
  /// revision behind the applied one (a cluster restored from an older backup, or wiped).
  /// Applying it silently would roll every file back; the operator decides, by removing the
  /// state file.
  func checkCluster() async throws {
    let status = try await self.client.status()
    self.clusterID = status.header.clusterID
    let applied = self.state.appliedRevision
    if let known = self.state.clusterID, known != status.header.clusterID {
      throw AgentError(.etcd, "etcd cluster \(String(status.header.clusterID, radix: 16)) is not the cluster \(String(known, radix: 16)) the files came from (restored or replaced?); refusing to apply it. Remove \(self.stateFile.path) to accept the new cluster")
    }
    if status.header.revision < applied {
      throw AgentError(.etcd, "etcd's revision \(status.header.revision) is behind the applied revision \(applied) (a cluster restored from an older backup, or wiped?); refusing to roll the files back. Remove \(self.stateFile.path) to accept it")
    }
    if self.state.clusterID != status.header.clusterID {
      self.state.clusterID = status.header.clusterID
      self.saveState()
    }
  }

  /// What `sync` would change in every mapping, without writing: bytes, mode and owner.
  public func diff() async throws -> [FileChange] {
    self.state = self.stateFile.load()
    self.keySpace = try await self.readSnapshot()
    var changes: [FileChange] = []
    for runner in self.runners {
      changes += try runner.diff(self.keySpace, previous: self.state[mapping: runner.mapping.name].files)
    }
    return changes
  }
}

extension Mapping {
  /// The keys the mapping reads, by the prefix rule, as disjoint pieces in key order: its one
  /// key for a `file` mapping (not its siblings: `/app/config2` beside `/app/config`), else
  /// its prefixes' (see ``KeyPrefix``).
  var units: [(key: [UInt8], exact: Bool)] {
    if self.kind == .file, let key = self.key { return [(Array(key.utf8), true)] }
    return self.prefixes.flatMap { KeyPrefix($0).units }
  }

  /// ``units`` as etcd ranges.
  var ranges: [KeyRange] {
    self.units.map { $0.exact ? KeyRange.key($0.key) : KeyRange.prefix($0.key) }
  }
}
