@testable import EtcSync
import Foundation
import Glibc
import Testing

/// ``DirectoryWatcher`` against real files. Every test makes its changes after `init`
/// returned (when the watches exist) and waits for the changes it expects; the deadline in
/// ``collect(_:until:)`` only guards against a hang. Tests that expect something *not* to be
/// reported write a sentinel file afterwards: inotify keeps one ordered queue, so anything
/// reported for the earlier writes arrives before the sentinel.
@Suite struct DirectoryWatcherTests {
  @Test func appendIsReportedOnClose() async throws {
    let sandbox = WatcherSandbox()
    try sandbox.write("f", "one\n")
    let watcher = try DirectoryWatcher(root: sandbox.root, recursive: false)
    defer { watcher.stop() }
    try sandbox.append("f", "two\n")  // `echo two >> f`
    let seen = await collect(watcher) { $0.contains(.written("f")) }
    #expect(seen.contains(.written("f")))
  }

  /// A chain of directories deeper than any key's path (a local user's `mkdir d; cd d` loop,
  /// a bind mount looping back to an ancestor) is watched down to ``maximumPathDepth``
  /// segments and no further: the watcher starts within a limit of that many watches, and a
  /// file at the deepest depth a key can have is still reported.
  @Test func directoriesBeyondTheKeyDepthAreNotWatched() async throws {
    let sandbox = WatcherSandbox()
    let chain = Array(repeating: "d", count: maximumPathDepth + 40).joined(separator: "/")
    try FileManager.default.createDirectory(atPath: sandbox(chain), withIntermediateDirectories: true)
    let watcher = try DirectoryWatcher(root: sandbox.root, recursive: true, maxWatches: maximumPathDepth)
    defer { watcher.stop() }
    #expect(!watcher.limitReached)
    let deepest = Array(repeating: "d", count: maximumPathDepth - 1).joined(separator: "/") + "/f"
    try sandbox.write(deepest, "x\n")
    let seen = await collect(watcher) { $0.contains(.written(deepest)) }
    #expect(seen.contains(.written(deepest)))
  }

  @Test func writesAreReportedOnlyOnClose() async throws {
    let sandbox = WatcherSandbox()
    let watcher = try DirectoryWatcher(root: sandbox.root, recursive: false)
    defer { watcher.stop() }
    let fd = open(sandbox("f"), O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
    try #require(fd >= 0)
    #expect(write(fd, "half", 4) == 4)  // created and modified, still open
    try sandbox.write("sentinel", "x\n")
    var seen = await collect(watcher) { $0.contains(.written("sentinel")) }
    #expect(!seen.contains { $0.path == "f" })
    close(fd)
    seen = await collect(watcher) { $0.contains(.written("f")) }
    #expect(seen.contains(.written("f")))
  }

  @Test func renameIntoPlaceIsReported() async throws {
    let sandbox = WatcherSandbox()
    try sandbox.write("f", "old\n")
    let watcher = try DirectoryWatcher(root: sandbox.root, recursive: false)
    defer { watcher.stop() }
    try sandbox.write("f.tmp", "new\n")  // vim / `sed -i`: write a temporary, rename it over
    #expect(rename(sandbox("f.tmp"), sandbox("f")) == 0)
    let seen = await collect(watcher) { $0.contains(.written("f")) }
    #expect(seen.contains(.written("f")))
    #expect(!seen.contains(.removed("f")))
  }

  @Test func deleteIsReported() async throws {
    let sandbox = WatcherSandbox()
    try sandbox.write("f", "x\n")
    let watcher = try DirectoryWatcher(root: sandbox.root, recursive: false)
    defer { watcher.stop() }
    #expect(unlink(sandbox("f")) == 0)
    let seen = await collect(watcher) { $0.contains(.removed("f")) }
    #expect(seen.contains(.removed("f")))
  }

  @Test func newSubdirectoriesAreWatched() async throws {
    let sandbox = WatcherSandbox()
    let watcher = try DirectoryWatcher(root: sandbox.root, recursive: true)
    defer { watcher.stop() }
    try FileManager.default.createDirectory(atPath: sandbox("a/b"), withIntermediateDirectories: true)
    try sandbox.write("a/b/c", "x\n")
    let seen = await collect(watcher) { $0.contains(.written("a/b/c")) }
    #expect(seen.contains(.written("a/b/c")))
  }

  @Test func filesInADirectoryMovedInAreReported() async throws {
    let sandbox = WatcherSandbox()
    for file in ["one", "deep/two", "deep/deeper/three"] { try sandbox.write("outside/new/\(file)", "x\n") }
    let watcher = try DirectoryWatcher(root: sandbox.root, recursive: true)
    defer { watcher.stop() }
    #expect(rename(sandbox("outside/new"), sandbox("new")) == 0)
    let expected: Set<DirectoryChange> = [.written("new/one"), .written("new/deep/two"), .written("new/deep/deeper/three")]
    var seen = await collect(watcher) { expected.isSubset(of: $0) }
    #expect(expected.isSubset(of: seen))
    // Its subdirectories are watched from now on.
    try sandbox.write("new/deep/deeper/four", "x\n")
    seen = await collect(watcher) { $0.contains(.written("new/deep/deeper/four")) }
    #expect(seen.contains(.written("new/deep/deeper/four")))
  }

  @Test func directoriesMovedWithinTheRootKeepBeingWatched() async throws {
    let sandbox = WatcherSandbox()
    try sandbox.write("a/b/old", "x\n")
    let watcher = try DirectoryWatcher(root: sandbox.root, recursive: true)
    defer { watcher.stop() }
    #expect(rename(sandbox("a"), sandbox("z")) == 0)
    try sandbox.write("z/b/new", "x\n")
    let seen = await collect(watcher) { $0.contains(.written("z/b/new")) }
    #expect(seen.contains(.removed("a")))
    #expect(seen.contains(.written("z/b/old")))
    #expect(seen.contains(.written("z/b/new")))
    #expect(!seen.contains { $0.path.hasPrefix("a/") })
  }

  @Test func removedDirectoriesAreReportedAndDropped() async throws {
    let sandbox = WatcherSandbox()
    try sandbox.write("gone/f", "x\n")
    try sandbox.write("moved/f", "x\n")
    let watcher = try DirectoryWatcher(root: sandbox.root, recursive: true)
    defer { watcher.stop() }
    try FileManager.default.removeItem(atPath: sandbox("gone"))
    try FileManager.default.createDirectory(atPath: sandbox("outside"), withIntermediateDirectories: true)
    #expect(rename(sandbox("moved"), sandbox("outside/moved")) == 0)
    try sandbox.append("outside/moved/f", "more\n")  // no longer under the root
    try sandbox.write("sentinel", "x\n")
    let seen = await collect(watcher) { $0.contains(.written("sentinel")) }
    #expect(seen.contains(.removed("gone")))
    #expect(seen.contains(.removed("moved")))
    #expect(!seen.contains { $0.path.hasPrefix("moved/") || $0.path.hasPrefix("outside/moved") })
  }

  @Test func removingTheRootReportsOverflow() async throws {
    let sandbox = WatcherSandbox()
    try sandbox.write("a/f", "x\n")
    let watcher = try DirectoryWatcher(root: sandbox.root, recursive: true)
    defer { watcher.stop() }
    try FileManager.default.removeItem(atPath: sandbox.root)
    let seen = await collect(watcher) { $0.contains(.overflow) }
    #expect(seen.contains(.overflow))
  }

  @Test func nonRecursiveWatcherIgnoresSubdirectories() async throws {
    let sandbox = WatcherSandbox()
    try sandbox.write("old/f", "x\n")
    let watcher = try DirectoryWatcher(root: sandbox.root, recursive: false)
    defer { watcher.stop() }
    try sandbox.append("old/f", "more\n")
    try sandbox.write("new/g", "x\n")
    try sandbox.write("sentinel", "x\n")
    let seen = await collect(watcher) { $0.contains(.written("sentinel")) }
    #expect(seen.contains(.written("sentinel")))
    #expect(!seen.contains { $0.path.contains("/") || $0.path == "new" })
  }

  @Test func symlinkedDirectoriesAreNotFollowed() async throws {
    let sandbox = WatcherSandbox()
    try sandbox.write("outside/x", "x\n")
    #expect(symlink(sandbox("outside"), sandbox("early")) == 0)
    let watcher = try DirectoryWatcher(root: sandbox.root, recursive: true)
    defer { watcher.stop() }
    #expect(symlink(sandbox("outside"), sandbox("late")) == 0)
    try sandbox.append("early/x", "through the early link\n")
    try sandbox.append("late/x", "through the late link\n")
    try sandbox.write("outside/y", "directly\n")
    try sandbox.write("sentinel", "x\n")
    let seen = await collect(watcher) { $0.contains(.written("sentinel")) }
    #expect(seen.contains(.written("sentinel")))
    #expect(!seen.contains { $0.path.hasPrefix("early/") || $0.path.hasPrefix("late/") || $0.path.hasPrefix("outside/") })
  }

  @Test func missingRootThrowsNamingThePath() throws {
    let sandbox = WatcherSandbox()
    let missing = sandbox("missing")
    let error = #expect(throws: DirectoryWatcherError.self) { try DirectoryWatcher(root: missing, recursive: true) }
    #expect(error?.description.contains(missing) == true)
    #expect(error?.description.contains("ENOENT") == true)
    try sandbox.write("file", "x\n")
    let notDirectory = #expect(throws: DirectoryWatcherError.self) {
      try DirectoryWatcher(root: sandbox("file"), recursive: false)
    }
    #expect(notDirectory?.description.contains("ENOTDIR") == true)
  }

  @Test func stopEndsTheStreamAndIsIdempotent() async throws {
    let sandbox = WatcherSandbox()
    let watcher = try DirectoryWatcher(root: sandbox.root, recursive: true)
    let consumer = Task { for await _ in watcher.changes {}; return true }
    try sandbox.write("f", "x\n")
    watcher.stop()
    watcher.stop()
    let ended = await withDeadline { await consumer.value }
    #expect(ended == true)
    let again = await withDeadline { for await _ in watcher.changes {}; return true }
    #expect(again == true)
  }

  @Test("a tree with more directories than maxWatches throws naming the limit; one that grows past it reports overflow once")
  func watchLimit() async throws {
    let sandbox = WatcherSandbox()
    for directory in ["a", "b", "c"] { try sandbox.write("\(directory)/f", "x\n") }
    let error = #expect(throws: DirectoryWatcherError.self) { try DirectoryWatcher(root: sandbox.root, recursive: true, maxWatches: 3) }
    #expect(error?.description.contains("limit of 3 inotify watches") == true, "\(String(describing: error))")
    // Root, a, b, c: exactly at the limit of 4.
    let watcher = try DirectoryWatcher(root: sandbox.root, recursive: true, maxWatches: 4)
    defer { watcher.stop() }
    #expect(!watcher.limitReached)
    try sandbox.write("d/f", "x\n")
    try sandbox.write("e/f", "x\n")
    try sandbox.write("sentinel", "x\n")
    let seen = await collect(watcher) { $0.contains(.written("sentinel")) }
    #expect(seen.contains(.overflow))
    #expect(watcher.limitReached)
    #expect(!watcher.rootLost)
    // The directories still watched go on reporting.
    try sandbox.append("a/f", "more\n")
    let later = await collect(watcher) { $0.contains(.written("a/f")) }
    #expect(later.contains(.written("a/f")))
  }

  @Test func rootLostIsSetWhenTheRootGoes() async throws {
    let sandbox = WatcherSandbox()
    let watcher = try DirectoryWatcher(root: sandbox.root, recursive: false)
    defer { watcher.stop() }
    #expect(!watcher.rootLost)
    #expect(rename(sandbox.root, sandbox.path + "/moved") == 0)
    let seen = await collect(watcher) { $0.contains(.overflow) }
    #expect(seen.contains(.overflow))
    #expect(watcher.rootLost)
  }

  /// More watchers than the default `fs.inotify.max_user_instances` (128): a leaked inotify
  /// descriptor (or reader thread keeping one alive) would make `init` fail with EMFILE.
  @Test func descriptorsAreReleased() throws {
    let sandbox = WatcherSandbox()
    for _ in 0..<150 { try DirectoryWatcher(root: sandbox.root, recursive: true).stop() }
    for _ in 0..<150 { _ = try DirectoryWatcher(root: sandbox.root, recursive: true) }  // deinit stops
  }
}

/// A fresh directory from `mkdtemp` under the temp directory, with a `root` inside it to
/// watch (so tests have room outside the root); removed with everything in it at the end.
private final class WatcherSandbox: Sendable {
  let path: String
  var root: String { "\(path)/root" }

  init() {
    let base = NSTemporaryDirectory().hasSuffix("/") ? NSTemporaryDirectory() : NSTemporaryDirectory() + "/"
    var template = Array("\(base)etcsync-watch-XXXXXX".utf8CString)
    precondition(mkdtemp(&template) != nil, "mkdtemp failed")
    path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    precondition(mkdir(root, 0o755) == 0)
  }

  deinit { try? FileManager.default.removeItem(atPath: path) }

  /// The absolute path of `relative` below the root (`outside/...` is beside it instead).
  func callAsFunction(_ relative: String) -> String {
    relative.hasPrefix("outside") ? "\(path)/\(relative)" : "\(root)/\(relative)"
  }

  /// Creates (or truncates) the file and writes `text`, creating missing directories.
  func write(_ relative: String, _ text: String) throws {
    let file = self(relative)
    try FileManager.default.createDirectory(
      atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try put(file, text, flags: O_WRONLY | O_CREAT | O_TRUNC)
  }

  /// `echo text >> file`: open with `O_APPEND`, write, close.
  func append(_ relative: String, _ text: String) throws {
    try put(self(relative), text, flags: O_WRONLY | O_CREAT | O_APPEND)
  }

  private func put(_ file: String, _ text: String, flags: Int32) throws {
    let fd = open(file, flags | O_CLOEXEC, 0o644)
    try #require(fd >= 0, "open \(file): \(String(cString: strerror(errno)))")
    defer { close(fd) }
    let bytes = Array(text.utf8)
    #expect(Glibc.write(fd, bytes, bytes.count) == bytes.count)
  }
}

/// Runs `body`, or gives up after 60 s (a hang guard only, wide for a loaded CI machine) and
/// returns nil.
private func withDeadline<T: Sendable>(_ body: @escaping @Sendable () async -> T) async -> T? {
  await withTaskGroup(of: T?.self) { group in
    group.addTask { await body() }
    group.addTask { try? await Task.sleep(for: .seconds(60)); return nil }
    let first = await group.next() ?? nil
    group.cancelAll()
    return first
  }
}

/// Collects batches until `done` holds for everything seen so far; records an issue if the
/// stream ends or the deadline passes first.
private func collect(
  _ watcher: DirectoryWatcher, until done: @escaping @Sendable ([DirectoryChange]) -> Bool,
  sourceLocation: SourceLocation = #_sourceLocation
) async -> [DirectoryChange] {
  let seen = await withDeadline {
    var seen: [DirectoryChange] = []
    for await batch in watcher.changes {
      seen += batch
      if done(seen) { break }
    }
    return seen
  }
  if seen.map(done) != true {
    Issue.record("expected changes did not arrive; saw \(seen ?? [])", sourceLocation: sourceLocation)
  }
  return seen ?? []
}
