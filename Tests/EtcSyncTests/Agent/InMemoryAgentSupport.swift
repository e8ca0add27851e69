import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Logging

// The in-memory etcd is the agent's store in these tests. Declared here, where both are
// visible: EtcdTestSupport does not depend on EtcSync.
extension InMemoryEtcd: PresenceStore {}

/// What an in-memory agent test starts with: an ``InMemoryEtcd``, a temporary directory for
/// destinations and state, and a recording logger. No etcd process.
final class InMemoryHarness: Sendable {
  let etcd = InMemoryEtcd()
  let dir = TemporaryDirectory("etcsync-inmemory")
  let logs: RecordingLogHandler.Store
  let logger: Logger

  init() {
    (self.logger, self.logs) = RecordingLogHandler.logger()
  }

  func configuration(_ mappings: [Mapping]) -> AgentConfiguration {
    AgentConfiguration(mappings: mappings, state: StateSettings(dir: self.dir("state")), commandTimeout: .seconds(10))
  }

  func agent(_ mappings: [Mapping]) throws -> Agent {
    try Agent(configuration: self.configuration(mappings), store: self.etcd, logger: self.logger)
  }

  /// Whether a message was logged.
  func logged(_ message: String) -> Bool {
    self.logs.all.contains { $0.1 == message }
  }

  /// The files of a flat tree at `root` (the `..data` swap's own entries left out, `except`
  /// names too): name bytes → content bytes.
  func files(_ root: String, except: Set<[UInt8]> = []) -> [[UInt8]: [UInt8]] {
    var files: [[UInt8]: [UInt8]] = [:]
    for name in Disk.names(root) where !name.hasPrefix("..") && !except.contains(Array(name.utf8)) {
      files[Array(name.utf8)] = Bytes.read(root + "/" + name) ?? []
    }
    return files
  }

  /// What the store holds under `prefix` at `revision`: the key after the prefix → the value.
  /// Read past the store's request log and injected failures: the agent's reads are the ones
  /// counted and failed.
  func expected(_ prefix: String, at revision: Int64) async throws -> [[UInt8]: [UInt8]] {
    let snapshot = try self.etcd.contents(.prefix(prefix), at: revision)
    let cut = prefix.utf8.count
    return Dictionary(uniqueKeysWithValues: snapshot.kvs.map { (Array($0.key.dropFirst(cut)), $0.value) })
  }

  /// Whether the flat tree at `root` holds exactly the store's keys under `prefix` at `revision`.
  func matches(_ root: String, _ prefix: String, at revision: Int64, except: Set<[UInt8]> = []) async throws -> Bool {
    try await self.files(root, except: except) == self.expected(prefix, at: revision)
  }

  /// Whether every (tree, prefix) pair matches at `revision`; false if the store cannot say.
  func converged(_ trees: [(root: String, prefix: String)], at revision: Int64) async -> Bool {
    for tree in trees {
      guard (try? await self.matches(tree.root, tree.prefix, at: revision)) == true else { return false }
    }
    return true
  }
}
