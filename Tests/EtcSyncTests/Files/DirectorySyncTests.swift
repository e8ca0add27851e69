import EtcdClient
import EtcdTestSupport
import Foundation
import Testing

/// A directory created by the agent is only durable once its parent is fsynced. Observed
/// from outside with strace: every successful `mkdir`/`mkdirat` of `etcsync sync` is
/// followed by an `fsync` of the directory it was made in.
@Suite("New directories are fsynced in their parents",
       .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/strace")))
struct DirectorySyncTests {
  @Test("file, in-place tree and swapped tree mappings creating nested directories")
  func parentsSynced() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/f/motd", "hello")
    try await h.put("/t/a/b/c", "1")
    try await h.put("/t/a/d/e", "2")
    try await h.put("/t/top", "3")
    let config = h.dir("sync.yaml")
    try Disk.write(config, """
      etcd: {endpoints: [\(h.server.endpoint)]}
      state: {dir: \(h.dir("new/state"))}
      mappings:
        - {name: file, kind: file, key: /f/motd, dest: \(h.dir("new/etc/deep/motd"))}
        - {name: inplace, kind: tree, prefix: /t/, dest: \(h.dir("new/inplace")), swap: in-place}
        - {name: swapped, kind: tree, prefix: /t/, dest: \(h.dir("new/swapped"))}
      """)
    let log = h.dir("strace.log")
    let run = try await EtcsyncProcess.runTool([
      "/usr/bin/strace", "-f", "-qq", "-y", "-e", "trace=mkdir,mkdirat,fsync", "-o", log,
      EtcsyncProcess.binary, "sync", "-c", config,
    ])
    #expect(run.status == 0, "\(run.error)")
    #expect(Disk.read(h.dir("new/inplace/a/b/c")) == "1")
    let calls = try Self.calls(log)
    let made = calls.enumerated().compactMap { index, call in call.madeIn.map { (index, $0) } }
    #expect(made.count >= 8, "\(calls)")
    for (index, parent) in made {
      let synced = calls[(index + 1)...].contains { $0.synced == parent }
      #expect(synced, "a directory made in \(parent) but \(parent) never fsynced afterwards")
    }
  }

  /// 300 files: groups of 128, 128 and 44, each synced by `syncfs`; 266: the last group of 10
  /// is fsynced file by file, after the group before it was settled by a `syncfs` of its own.
  @Test("every staged file of a large tree is durable before its rename, every rename before the sync ends",
        arguments: [(count: 300, syncfsGroups: 3), (count: 266, syncfsGroups: 2)])
  func largeTreeRenamesFollowTheirSync(count: Int, syncfsGroups: Int) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    for i in 0..<count { try await h.put("/t/k\(1000 + i)", "value \(i)") }
    let config = h.dir("sync.yaml")
    try Disk.write(config, """
      etcd: {endpoints: [\(h.server.endpoint)]}
      state: {dir: \(h.dir("state"))}
      mappings:
        - {name: inplace, kind: tree, prefix: /t/, dest: \(h.dir("inplace")), swap: in-place}
      """)
    let log = h.dir("strace.log")
    let run = try await EtcsyncProcess.runTool([
      "/usr/bin/strace", "-f", "-qq", "-y", "-e", "trace=openat,write,fsync,fdatasync,syncfs,rename,renameat,renameat2",
      "-o", log, EtcsyncProcess.binary, "sync", "-c", config,
    ])
    #expect(run.status == 0, "\(run.error)")
    #expect(Disk.read(h.dir("inplace/k\(1000 + count - 1)")) == "value \(count - 1)")
    let trace = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map(String.init)
    // strace shows resolved paths.
    let root = URL(fileURLWithPath: h.dir("inplace")).resolvingSymlinksInPath().path
    var lastWrite: [String: Int] = [:]
    var rootSyncs: [Int] = []  // lines of a `syncfs`, or of the root directory's fsync
    var fsynced: [String: [Int]] = [:]
    var renamesIntoRoot: [Int] = []
    var syncfsCalls = 0
    for (index, line) in trace.enumerated() where !line.contains("= -1") {
      if let path = Self.firstPath(line, after: "write(") {
        lastWrite[path] = index
      } else if let path = Self.firstPath(line, after: "fsync(") ?? Self.firstPath(line, after: "fdatasync(") {
        fsynced[path, default: []].append(index)
        if path == root { rootSyncs.append(index) }
      } else if line.contains("syncfs(") {
        syncfsCalls += 1
        rootSyncs.append(index)
      } else if line.contains("rename"), let directory = Self.firstPath(line, after: "rename"),
                let from = line.split(separator: "\"", omittingEmptySubsequences: false).dropFirst().first
      {
        let staged = directory + "/" + from
        // The tree's files (the state file is saved without fsync, docs/agent.md).
        guard from.contains(".etcsync-tmp-"), directory == root else { continue }
        renamesIntoRoot.append(index)
        // Made durable after its last write: by a `syncfs`, or by an fsync of the file itself.
        let written = lastWrite[staged] ?? -1
        let durable = trace[(written + 1)..<index].contains { $0.contains("syncfs(") && !$0.contains("= -1") }
          || (fsynced[staged] ?? []).contains { $0 > written && $0 < index }
        #expect(written >= 0 && durable, "\(staged) renamed at line \(index) without a sync after its last write at \(written)")
      }
    }
    #expect(renamesIntoRoot.count == count)
    // The renames are durable before the sync ends: a sync follows the last of them.
    #expect(rootSyncs.contains { $0 > (renamesIntoRoot.max() ?? Int.max) }, "no sync after the last rename")
    if Self.syncfsIsTrusted(root) {
      // One `syncfs` before each large group's renames, and one after the last large group's.
      #expect(syncfsCalls == syncfsGroups + 1, "\(syncfsCalls) syncfs calls")
    }
  }

  /// Whether the batch writer syncs `path`'s file system with `syncfs`: Linux 5.8 or later
  /// and ext4, XFS, btrfs or tmpfs (`FileSystemSync`).
  static func syncfsIsTrusted(_ path: String) -> Bool {
    var name = utsname()
    guard uname(&name) == 0 else { return false }
    let release = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
    guard numbers.count == 2, (numbers[0], numbers[1]) >= (5, 8) else { return false }
    let process = Process()
    let pipe = Pipe()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/stat")
    process.arguments = ["-f", "-c", "%T", path]
    process.standardOutput = pipe
    guard (try? process.run()) != nil else { return false }
    let type = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return ["ext2/ext3", "xfs", "btrfs", "tmpfs"].contains(type.trimmingCharacters(in: .whitespacesAndNewlines))
  }

  /// The path strace's `-y` shows for the first descriptor after `call`.
  static func firstPath(_ line: String, after call: String) -> String? {
    guard let range = line.range(of: call), let open = line[range.upperBound...].firstIndex(of: "<"),
          let close = line[open...].firstIndex(of: ">")
    else { return nil }
    return String(line[line.index(after: open)..<close])
  }

  /// One traced call: the directory a `mkdir` succeeded in, or the directory an `fsync` synced.
  struct Call: CustomStringConvertible {
    var madeIn: String?
    var synced: String?
    var description: String { madeIn.map { "mkdir in \($0)" } ?? "fsync \(synced ?? "?")" }
  }

  /// Parses strace's `-y` output: `mkdirat(5</p>, "n", 0755) = 0`, `mkdir("/p/n", 0755) = 0`,
  /// `fsync(7</p>) = 0`. Directories fsynced by path only (no fd path shown) are skipped.
  static func calls(_ path: String) throws -> [Call] {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    var calls: [Call] = []
    for line in text.split(separator: "\n").map(String.init) {
      guard line.hasSuffix("= 0") else { continue }
      if let range = line.range(of: "mkdirat("), let open = line[range.upperBound...].firstIndex(of: "<"),
         let close = line[open...].firstIndex(of: ">")
      {
        calls.append(Call(madeIn: String(line[line.index(after: open)..<close])))
      } else if let range = line.range(of: "mkdir(\"") {
        let rest = line[range.upperBound...]
        guard let quote = rest.firstIndex(of: "\"") else { continue }
        calls.append(Call(madeIn: (String(rest[..<quote]) as NSString).deletingLastPathComponent))
      } else if let range = line.range(of: "fsync("), let open = line[range.upperBound...].firstIndex(of: "<"),
                let close = line[open...].firstIndex(of: ">")
      {
        calls.append(Call(synced: String(line[line.index(after: open)..<close])))
      }
    }
    return calls
  }
}
