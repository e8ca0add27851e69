import EtcdClient
import Synchronization
import Templates

#if canImport(Glibc)
import Glibc
#endif

/// One drift watcher of a directory, kept alive: when the directory is deleted, moved or
/// unmounted (its inotify watcher stops), it is watched again as soon as it exists again.
final class DriftWatch: Sendable {
  /// What a drift watch tells its owner besides batches of changes.
  enum Event: Sendable {
    /// The directory is watched again (after it was lost): changes meanwhile went unseen.
    case rearmed
    /// The watcher reached its limit of inotify watches (see ``DirectoryWatcher``).
    case limit(Int)
    /// The directory can no longer be watched (too many directories): periodic checks only.
    case failed(DirectoryWatcherError)
  }

  private let state: Mutex<(watcher: DirectoryWatcher?, task: Task<Void, Never>?, stopped: Bool)>

  /// Watches `root` with `first` (already started), passes each batch to `changes`, and
  /// re-creates the watcher when the root is lost.
  init(_ first: DirectoryWatcher, root: String, recursive: Bool, maxWatches: Int,
       changes: @escaping @Sendable ([DirectoryChange]) -> Void, event: @escaping @Sendable (Event) -> Void) {
    let state = Mutex<(watcher: DirectoryWatcher?, task: Task<Void, Never>?, stopped: Bool)>((first, nil, false))
    self.state = state
    let task = Task.detached { [self] in
      var watcher: DirectoryWatcher? = first
      var limited = false
      var retry = Backoff(initial: .milliseconds(50), maximum: .seconds(2))
      while !Task.isCancelled {
        if let current = watcher {
          for await batch in current.changes {
            changes(batch)
            if !limited, current.limitReached {
              limited = true
              event(.limit(maxWatches))
            }
            if current.rootLost { break }
          }
          current.stop()
          watcher = nil
          if self.replace(current, with: nil) == false { return }
        }
        try? await Task.sleep(for: retry.next())
        if Task.isCancelled { return }
        do throws(DirectoryWatcherError) {
          let fresh = try DirectoryWatcher(root: root, recursive: recursive, maxWatches: maxWatches)
          guard self.replace(nil, with: fresh) else {
            fresh.stop()
            return
          }
          watcher = fresh
          limited = false
          retry.reset()
          event(.rearmed)
        } catch where error.operation == "watch limit" {
          event(.failed(error))
          return
        } catch where error.errno == ENOENT || error.errno == ENOTDIR {
          continue  // not there (yet): try again
        } catch {
          // Something else (no inotify instance or watch left, no permission): said once,
          // and left to the periodic check.
          event(.failed(error))
          return
        }
      }
    }
    self.state.withLock { $0.task = task }
  }

  /// Swaps the current watcher; false once stopped.
  private func replace(_ old: DirectoryWatcher?, with new: DirectoryWatcher?) -> Bool {
    self.state.withLock { state in
      guard !state.stopped else { return false }
      state.watcher = new
      return true
    }
  }

  /// Stops watching. Idempotent.
  func stop() {
    let (watcher, task) = self.state.withLock { state in
      state.stopped = true
      defer { state.watcher = nil }
      return (state.watcher, state.task)
    }
    task?.cancel()
    watcher?.stop()
  }
}

/// The revision directory a swapped tree's watcher takes as live: changes in any other
/// `..` directory are the agent's (staging a publish before `..data` moves to it, removing
/// the previous one after) and concern no file. Kept in the watcher's event order.
final class LiveRevision: Sendable {
  private let root: String
  private let live = Mutex<String?>(nil)

  init(root: String) {
    self.root = root
    self.reset()
  }

  /// Reads `..data` again.
  func reset() {
    let current = (try? TreeSwap(root: self.root).currentDirectory()) ?? nil
    self.live.withLock { $0 = current }
  }

  /// The paths of `batch` that may concern the tree's files: `..data` itself (it moved),
  /// top-level names, and paths in the live revision directory. Events in a revision
  /// directory before `..data` moves to it came while the agent staged it.
  func filter(_ batch: [DirectoryChange]) -> Set<ExactString> {
    var paths: Set<ExactString> = []
    for change in batch {
      let first = change.path.utf8.split(separator: UInt8(ascii: "/"), maxSplits: 1, omittingEmptySubsequences: false).first
      guard let first, first.starts(with: "..".utf8) else {
        paths.insert(ExactString(change.path))
        continue
      }
      if first.elementsEqual(TreeSwap.dataLinkName.utf8) {
        // Read at once: `..data` may have moved again since, which only makes the events
        // of that later directory count as live (checked, never missed).
        self.reset()
        paths.insert(ExactString(change.path))
      } else if let live = self.live.withLock({ $0 }), first.elementsEqual(live.utf8) {
        paths.insert(ExactString(change.path))
      }
    }
    return paths
  }
}
