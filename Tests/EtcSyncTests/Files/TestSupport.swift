import EtcdTestSupport
import Foundation
import Glibc
import Logging
import Synchronization
import Testing

/// A fresh directory under the system temp directory, removed (with everything in it) when
/// the value goes away.
final class TemporaryDirectory: Sendable {
  let path: String

  init(_ label: String = "etcsync") {
    let base = NSTemporaryDirectory().hasSuffix("/") ? NSTemporaryDirectory() : NSTemporaryDirectory() + "/"
    path = base + "\(label)-\(UUID().uuidString.prefix(12))"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  }

  // FileManager gives up on a tree deeper than PATH_MAX (the hostile tests' deep paths) and
  // on some of the symlink-escape layouts; `rm -rf` walks with descriptors and removes them.
  deinit {
    if (try? FileManager.default.removeItem(atPath: path)) == nil, FileManager.default.fileExists(atPath: path) {
      let remove = Process()
      remove.executableURL = URL(fileURLWithPath: "/bin/rm")
      remove.arguments = ["-rf", "--", path]
      if (try? remove.run()) != nil { remove.waitUntilExit() }
    }
  }

  /// `path/relative`.
  func callAsFunction(_ relative: String) -> String { "\(path)/\(relative)" }
}

/// Test file helpers working with plain POSIX calls, independent of the code under test.
enum Disk {
  static func write(_ path: String, _ text: String, mode: mode_t = 0o644) throws {
    let directory = (path as NSString).deletingLastPathComponent
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    chmod(path, mode)
  }

  static func read(_ path: String) -> String? {
    guard let data = FileManager.default.contents(atPath: path) else { return nil }
    return String(decoding: data, as: UTF8.self)
  }

  static func lstat(_ path: String) -> stat? {
    var info = stat()
    return Glibc.lstat(path, &info) == 0 ? info : nil
  }

  static func exists(_ path: String) -> Bool { lstat(path) != nil }

  static func isSymlink(_ path: String) -> Bool {
    guard let info = lstat(path) else { return false }
    return info.st_mode & S_IFMT == S_IFLNK
  }

  static func names(_ directory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
  }

  static func link(_ path: String) -> String? {
    try? FileManager.default.destinationOfSymbolicLink(atPath: path)
  }

  static func symlink(_ target: String, at path: String) throws {
    try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: target)
  }

  /// Every entry below `directory`, recursively, relative to it.
  static func allEntries(_ directory: String) -> [String] {
    (FileManager.default.subpaths(atPath: directory) ?? []).sorted()
  }

  /// Temp file names anywhere below `directory`.
  static func temporaryFiles(_ directory: String) -> [String] {
    allEntries(directory).filter { $0.contains(".etcsync-tmp-") }
  }
}

/// Runs a program to completion (test setup only: mount, umount, id), its output through a
/// temporary file (never a pipe, which a child started meanwhile by another test could hold
/// open); at most 300 s, then it is killed.
@discardableResult
func runTool(_ argv: [String]) -> (status: Int32, output: String) {
  let directory = TemporaryDirectory("etcsync-tool")
  let output = directory("output")
  let process: ChildProcess
  // Through env(1), so that argv may start with NAME=VALUE assignments.
  do { process = try ChildProcess(["/usr/bin/env"] + argv, output: output, error: output) } catch { return (-1, "\(error)") }
  guard process.waitUntilExit(within: .seconds(300)) else {
    ProcessTree.kill(process)
    return (-1, "\(argv) still ran after 300 s; killed")
  }
  return (process.terminationStatus, Disk.read(output) ?? "")
}

/// A LogHandler that keeps every record, for assertions on warnings.
struct RecordingLogHandler: LogHandler {
  final class Store: Sendable {
    let records = Mutex<[(Logger.Level, String)]>([])
    let details = Mutex<[(message: String, metadata: [String: String])]>([])
    var all: [(Logger.Level, String)] { records.withLock { $0 } }
    /// The metadata of every record with `message`, values as text.
    func metadata(of message: String) -> [[String: String]] {
      details.withLock { $0.filter { $0.message == message }.map(\.metadata) }
    }
  }

  let store: Store
  var metadata: Logger.Metadata = [:]
  var logLevel: Logger.Level = .trace

  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  func log(event: LogEvent) {
    store.records.withLock { $0.append((event.level, event.message.description)) }
    let merged = self.metadata.merging(event.metadata ?? [:]) { $1 }
    store.details.withLock { $0.append((event.message.description, merged.mapValues { "\($0)" })) }
  }

  /// A logger whose records land in a new store.
  static func logger() -> (Logger, Store) {
    let store = Store()
    return (Logger(label: "test") { _ in RecordingLogHandler(store: store) }, store)
  }
}
