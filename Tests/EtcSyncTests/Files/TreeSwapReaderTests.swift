import EtcSync
import Foundation
import Glibc
import Synchronization
import Templates
import Testing

/// A reader running on its own thread while trees are swapped in never sees two revisions
/// mixed, nor a partial file.
@Suite("Tree swap under concurrent readers")
struct TreeSwapReaderTests {
  static let paths = ["a", "b/c", "d/e/f", "big"]

  static func content(_ path: String, revision: Int) -> String {
    path == "big" ? String(repeating: "rev-\(revision)\n", count: 8192) : "rev-\(revision)\n"
  }

  static func tree(_ revision: Int) -> [ExactString: DesiredFile] {
    var files: [ExactString: DesiredFile] = [:]
    for path in paths { files[ExactString(path)] = DesiredFile(bytes: Array(content(path, revision: revision).utf8)) }
    if revision % 2 == 1 { files["odd/x"] = DesiredFile(bytes: Array("rev-\(revision)\n".utf8)) }
    return files
  }

  @Test("200 swaps: every pass reads one revision, every file whole")
  func readersSeeOneRevision() async throws {
    let dir = TemporaryDirectory()
    let swap = TreeSwap(root: dir.path)
    try await swap.publish(Self.tree(0), revision: 0)
    let reader = ConsistencyReader(root: dir.path)
    reader.start()
    for revision in 1...200 {
      try await swap.publish(Self.tree(revision), revision: Int64(revision))
    }
    let stats = reader.stop()
    #expect(stats.mixed == 0)
    #expect(stats.partial == 0)
    #expect(stats.consistent > 20, "only \(stats.consistent) complete passes")
    #expect(stats.revisionsSeen > 5)
    #expect(Disk.read(dir("d/e/f")) == "rev-200\n")
    #expect(Disk.names(dir.path).filter { $0.hasPrefix("..") }.count == 2)
    #expect(!Disk.exists(dir("odd")))
  }
}

/// Reads the tree in a loop on a dedicated thread. A pass resolves `..data` once (opens it
/// as a directory) and reads every file relative to that descriptor; it also reads one file
/// through its top-level symlink, which must be whole.
final class ConsistencyReader: Sendable {
  struct Stats {
    var consistent = 0, mixed = 0, partial = 0, vanished = 0
    var revisions = Set<Int>()
    var revisionsSeen: Int { revisions.count }
  }

  let root: String
  private let stopRequested = Mutex(false)
  private let stats = Mutex(Stats())
  private let finished = DispatchSemaphore(value: 0)

  init(root: String) { self.root = root }

  func start() {
    Thread { [self] in
      while !stopRequested.withLock({ $0 }) { pass() }
      finished.signal()
    }.start()
  }

  func stop() -> Stats {
    stopRequested.withLock { $0 = true }
    finished.wait()
    return stats.withLock { $0 }
  }

  private func pass() {
    if let whole = Self.read(AT_FDCWD, "\(root)/a"), Self.revision(of: whole, path: "a") == nil {
      stats.withLock { $0.partial += 1 }
    }
    let fd = open("\(root)/..data", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return stats.withLock { $0.vanished += 1 } }
    defer { close(fd) }
    var revisions = Set<Int>()
    for path in TreeSwapReaderTests.paths {
      guard let text = Self.read(fd, path) else { return stats.withLock { $0.vanished += 1 } }
      guard let revision = Self.revision(of: text, path: path) else {
        return stats.withLock { $0.partial += 1 }
      }
      revisions.insert(revision)
    }
    stats.withLock { stats in
      if revisions.count == 1 { stats.consistent += 1 } else { stats.mixed += 1 }
      stats.revisions.formUnion(revisions)
    }
  }

  /// The revision a file's full content carries, or nil when it is not a whole file.
  static func revision(of text: String, path: String) -> Int? {
    guard text.hasPrefix("rev-"), let line = text.split(separator: "\n").first,
      let revision = Int(line.dropFirst(4)),
      text == TreeSwapReaderTests.content(path, revision: revision)
    else { return nil }
    return revision
  }

  static func read(_ directory: Int32, _ path: String) -> String? {
    let fd = openat(directory, path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
      let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
      if count <= 0 { break }
      bytes += chunk[0..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
  }
}
