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
