import EtcSync
import EtcdTestSupport
import Foundation
import Glibc
import Testing

/// ``StartupPages`` in the process that ships it: `etcsync run`, as a child, gives start-up's
/// pages of its executable back a few seconds after its first apply, which shows in its
/// file-backed resident size (/proc/PID/smaps_rollup). The test process's own binary is never
/// paged out (that would stall every test running beside it).
@Suite("Start-up pages")
struct StartupPagesTests {
  /// kB of the process's resident memory that is not anonymous (its files' pages: the binary).
  static func fileBacked(_ pid: pid_t) -> Int? {
    guard let rollup = Disk.read("/proc/\(pid)/smaps_rollup") else { return nil }
    var fields: [String: Int] = [:]
    for line in rollup.split(separator: "\n") {
      let parts = line.split(separator: " ", omittingEmptySubsequences: true)
      if parts.count >= 3, parts[2] == "kB", let kB = Int(parts[1]) { fields[String(parts[0].dropLast())] = kB }
    }
    guard let rss = fields["Rss"], let anonymous = fields["Anonymous"] else { return nil }
    return rss - anonymous
  }

  @Test("etcsync run pages start-up's part of its binary out after the first apply (Linux 5.4+, binary owner)")
  func pagesOut() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try await h.put("/sp/a", "1")
    let config = h.dir("run.yaml")
    try Disk.write(config, """
      etcd:
        endpoints: [\(h.server.endpoint)]
      state:
        dir: \(h.dir("state"))
      mappings:
        - name: tree
          kind: tree
          prefix: /sp/
          dest: \(h.dir("out"))
      """)
    // A copy of its own: the kernel leaves pages alone that another process maps too, and the
    // other tests run `etcsync` beside this one.
    let binary = h.dir("etcsync")
    try FileManager.default.copyItem(atPath: EtcsyncProcess.binary, toPath: binary)
    let log = h.dir("run.log")
    _ = FileManager.default.createFile(atPath: log, contents: nil)
    let agent = try ChildProcess([binary, "run", "-c", config], output: log, error: log)
    defer { if agent.isRunning { ProcessTree.kill(agent) } }
    let pid = agent.processIdentifier
    #expect(await eventually { Disk.read(h.dir("out/a")) == "1" }, "\(Disk.read(log) ?? "")")
    // Right after the first apply: start-up's pages are all still there.
    let before = try #require(Self.fileBacked(pid))
    // Five seconds after the first apply; what it runs meanwhile comes back, far less.
    let dropped = await eventually(within: .seconds(30)) { (Self.fileBacked(pid) ?? .max) < before * 3 / 4 }
    #expect(dropped, "file-backed resident \(before) kB right after the first apply, \(Self.fileBacked(pid) ?? -1) kB now")
    // And it still works.
    try await h.put("/sp/a", "2")
    #expect(await eventually { Disk.read(h.dir("out/a")) == "2" }, "\(Disk.read(log) ?? "")")
    agent.signal(SIGTERM)
    #expect(await agent.exit(within: .seconds(30)) && agent.terminationStatus == 0)
  }
}
