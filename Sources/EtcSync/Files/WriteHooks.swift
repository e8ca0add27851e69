/// A point between two steps of a write, where a test hook is called.
public enum WriteStep: String, Sendable, CaseIterable {
  /// A writer that verifies its root (``AtomicWriter/Options/rootIdentity``,
  /// ``TreeSwap/Options/rootIdentity``) is about to open it; nothing is written yet. The path
  /// is the root. Only such writers call it: a test replaces the directory here, as an
  /// unmount after the agent's own check would.
  case beforeOpen
  /// The temp file holds all bytes, owner and mode; it is not yet synced.
  case afterTempWrite
  /// The temp file (or, for a tree, the whole staged tree) is synced; `check` runs next.
  case afterFsync
  /// The temp file was renamed over the target (or `..data` was swapped); the directory is
  /// not yet synced.
  case afterRename
}

/// What the writer does after a test hook returns.
public enum WriteHookAction: Sendable {
  /// Go on with the next step.
  case proceed
  /// Stop here as if the process had crashed: the writer throws a
  /// ``FileError/Code/interrupted`` error and cleans nothing up, so temp files stay.
  case abandon
}

/// Test seam: called between the steps of every write with the step and the path it
/// concerns (the temp file, or the staged tree directory). Production code passes nothing.
public typealias WriteHook = @Sendable (_ step: WriteStep, _ path: String) async -> WriteHookAction

/// Checks a staged file (or staged tree directory) before it replaces the target: the
/// mapping's `check` command is wired here by the caller. Throwing rejects the file, and the
/// target stays as it was.
public typealias StagedFileCheck = @Sendable (_ stagedPath: String) async throws -> Void

extension Optional where Wrapped == WriteHook {
  /// Calls the hook, if any, and turns `.abandon` into an ``FileError/Code/interrupted``
  /// error.
  func callAsFunction(_ step: WriteStep, _ path: String) async throws(FileError) {
    guard let hook = self else { return }
    if await hook(step, path) == .abandon {
      throw FileError(.interrupted, path: path, message: "write abandoned by a test hook at \(step)")
    }
  }
}
