import EtcdClient
import Logging

/// How far the daemon is current, and the status requests it answers.
///
/// "Current through R" means the watch has delivered every change of the agent's ranges up to
/// R, whether or not one touched them, and every file holds them. It is published (see
/// `publishProgress()`) only while no mapping is waiting, being applied or reloaded, or
/// failing, like the applied revision: never before the files and reloads for every change up
/// to R are done.
struct CurrentThrough {
  /// The revision published as current through.
  var published: Int64 = 0
  /// The latest status request seen: the revision it asks the agent to be current through.
  var requested: Int64 = 0
  /// The revision of the latest request: the snapshot is checked up to it.
  var checkThrough: Int64 = 0
  /// Wakes the check loop (set while the daemon runs).
  var wake: AsyncStream<Void>.Continuation?
}

extension Agent {
  /// How long the check loop waits for the watch to bring changes it found, before checking
  /// again.
  static let currentCheckPause: Duration = .milliseconds(100)

  /// Watches the presence prefix's request key (``ProgressRequest``) while the daemon runs, and
  /// checks the snapshot up to each request; nil without presence.
  func startProgressRequests() -> Task<Void, Never>? {
    guard let prefix = self.configuration.presence?.prefix else { return nil }
    let key = ProgressRequest.key(prefix: prefix)
    let (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    self.current.wake = wake
    let client = self.client
    let logger = self.logger
    return Task {
      await withTaskGroup(of: Void.self) { group in
        group.addTask {
          do {
            for try await response in client.watch(.key(key)) {
              for event in response.events where event.kind == .put {
                await self.progressRequested(
                  at: event.revision, target: ProgressRequest.target(value: event.kv.value, revision: event.revision))
              }
            }
          } catch {
            guard !Task.isCancelled else { return }
            // The agent keeps syncing; `status` then sees it current only as far as changes
            // in its ranges (and etcd's periodic progress notifications) carry it.
            logger.warning("status requests cannot be watched; status sees this agent current only as far as changes reach it",
                           metadata: ["etcd.key": "\(key)", "error": "\(error)"])
          }
        }
        group.addTask {
          for await _ in wakes { await self.checkCurrent() }
        }
        await group.next()
        group.cancelAll()
      }
      wake.finish()
    }
  }

  /// A status request at `revision` asks the agent to be current through `target`.
  ///
  /// An agent already current through `target` reads nothing: a `--wait-revision` asks again
  /// every second, and each ask is a revision of its own that every agent would otherwise
  /// check its ranges up to (one read per range per agent per ask across a fleet).
  func progressRequested(at revision: Int64, target: Int64) {
    let satisfied = target > 0 && target <= self.current.published
    if target > self.current.requested {
      self.current.requested = target
      // Presence learns of the request: it answers at once if the agent is current already.
      self.publishProgress()
    }
    guard !satisfied else { return }
    self.current.checkThrough = max(self.current.checkThrough, revision)
    self.current.wake?.yield()
  }

  /// Brings the snapshot's revision up to the latest request's where nothing in the agent's
  /// ranges changed in between. Where something did, the changes are on their way through the
  /// watch: checked again once the snapshot has moved.
  func checkCurrent() async {
    // The check that found changes (or could not read): repeated only once the watch has
    // moved the snapshot, or a newer request came (`status` asks again every second).
    var found: (from: Int64, through: Int64) = (-1, -1)
    var idle = 0
    while !Task.isCancelled {
      let from = self.keySpace.revision
      let through = self.current.checkThrough
      guard from < through else { return }
      if from == found.from && through == found.through {
        // Give up after a minute without the watch moving (etcd unreachable): the next
        // request wakes this again.
        idle += 1
        if idle > 600 { return }
        try? await Task.sleep(for: Self.currentCheckPause)
        continue
      }
      idle = 0
      let same = await self.unchanged(from: from, through: through)
      // Re-checked after the await: the watch may have moved the snapshot meanwhile, and what
      // was read describes `from` only.
      if same, self.keySpace.revision == from {
        self.advanceUnchanged(from: from, to: through)
        self.publishProgress()
      } else {
        found = (from, through)
      }
    }
  }

  /// Whether every range of the agent holds at `through` exactly what the snapshot holds at
  /// `from`: no key modified after `from`, and as many keys (so none deleted). One
  /// linearizable read per range, keys only; false when etcd does not answer.
  private func unchanged(from: Int64, through: Int64) async -> Bool {
    // Two mappings of one prefix read it once.
    var seen: Set<KeyRange> = []
    for range in self.ranges where seen.insert(range).inserted {
      var options = GetOptions(revision: through, keysOnly: true)
      options.minModRevision = from + 1
      do {
        let response = try await self.client.get(range, options: options)
        // etcd counts the range before the filter: the count is every key at `through`.
        guard response.kvs.isEmpty, response.count == Int64(self.keySpace.count(in: range)) else { return false }
      } catch {
        self.logger.debug("current-through check failed", metadata: ["error": "\(error)"])
        return false
      }
    }
    return true
  }
}
