import EtcSync
import EtcdTestSupport
import Foundation
import Glibc
import Testing

/// ``StartupPages`` in the process that ships it: `etcsync run`, as a child, gives start-up's
/// pages of its executable back a few seconds after its first apply, which shows in the
/// executable's resident size (/proc/PID/smaps). The test process's own binary is never
/// paged out (that would stall every test running beside it).
@Suite("Start-up pages")
struct StartupPagesTests {
  /// kB of the executable `path` resident in the process (/proc/PID/smaps: the Rss of every
  /// mapping of that file). Only the executable's own pages: the debug build's shared
  /// libraries (Foundation and the like, tens of MB) are not paged out and would hide it.
  static func executableResident(_ pid: pid_t, path: String) -> Int? {
    guard let smaps = Disk.read("/proc/\(pid)/smaps") else { return nil }
    var inBinary = false
    var total = 0
    for line in smaps.split(separator: "\n") {
      let parts = line.split(separator: " ", omittingEmptySubsequences: true)
      if let first = parts.first, first.contains("-"), !first.hasSuffix(":") {
        inBinary = parts.count >= 6 && parts[5...].joined(separator: " ") == path
      } else if inBinary, parts.count >= 3, parts[0] == "Rss:", let kB = Int(parts[1]) {
        total += kB
      }
    }
    return total
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
    let before = try #require(Self.executableResident(pid, path: binary))
    #expect(before > 1024, "the executable's pages were found: \(before) kB")
    // Five seconds after the first apply; what it runs meanwhile comes back, far less.
    let dropped = await eventually(within: .seconds(30)) { (Self.executableResident(pid, path: binary) ?? .max) < before * 3 / 4 }
    #expect(dropped, "executable resident \(before) kB right after the first apply, \(Self.executableResident(pid, path: binary) ?? -1) kB now")
    // And it still works.
    try await h.put("/sp/a", "2")
    #expect(await eventually { Disk.read(h.dir("out/a")) == "2" }, "\(Disk.read(log) ?? "")")
    agent.signal(SIGTERM)
    #expect(await agent.exit(within: .seconds(30)) && agent.terminationStatus == 0)
  }
}
