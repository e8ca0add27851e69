import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Logging
import Testing

/// The daemon on a disk that fills up or turns read-only: the old file stays intact, no temp
/// file is left, no reload runs, and once the disk recovers the agent retries by itself and
/// converges. Needs root with CAP_SYS_ADMIN to mount (CI has it); skipped elsewhere.
@Suite("Faults: a full or read-only disk under the daemon", .serialized)
struct DiskFaultTests {
  static func mount(_ argv: [String]) throws {
    let result = runTool(["mount"] + argv)
    if result.status != 0 { try Test.cancel("cannot mount here (needs root and CAP_SYS_ADMIN): \(result.output)") }
  }

  @Test("ENOSPC on a 64 KiB tmpfs, then space again", arguments: ["enospc", "erofs"])
  func diskFault(kind: String) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let mountPoint = h.dir("mnt")
    try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
    try Self.mount(["-t", "tmpfs", "-o", "size=64k", "tmpfs", mountPoint])
    defer { runTool(["umount", "-l", mountPoint]) }
    let mapping = Mapping(name: "f", kind: .file, key: "/d/f", dest: mountPoint + "/f", reload: h.logCommand("reload"))
    try await h.put("/d/f", "old")
    let daemon = Daemon(try h.agent(h.configuration([mapping])))
    #expect(await eventually { Disk.read(mountPoint + "/f") == "old" && h.count("reload") == 1 })

    let big = String(repeating: "x", count: 200 * 1024)
    if kind == "erofs" {
      try Self.mount(["-o", "remount,ro", mountPoint])
      try await h.put("/d/f", "new")
    } else {
      try await h.put("/d/f", big)
    }
    let failure = "mapping failed; its files are unchanged"
    #expect(await eventually { h.messages(atLeast: .error).contains(failure) })
    let reported = h.logs.metadata(of: failure).first?["error"] ?? ""
    #expect(reported.contains(kind == "erofs" ? "Read-only file system" : "No space left on device"), "\(reported)")
    #expect(Disk.read(mountPoint + "/f") == "old", "the old file is intact")
    #expect(Disk.temporaryFiles(mountPoint).isEmpty, "no temp file is left")
    #expect(h.count("reload") == 1, "no reload for a write that failed")
    // The disk recovers: the agent retries on its own, without a new change in etcd.
    try Self.mount(["-o", kind == "erofs" ? "remount,rw" : "remount,size=1m", mountPoint])
    let expected = kind == "erofs" ? "new" : big
    #expect(await eventually { Disk.read(mountPoint + "/f") == expected }, "log: \(h.messages(atLeast: .warning))")
    #expect(await eventually { h.count("reload") == 2 })
    #expect(Disk.temporaryFiles(mountPoint).isEmpty)
    #expect(await daemon.stop() == nil)
  }

  @Test("a reload that hangs is killed at its timeout and reported; the daemon goes on applying changes")
  func hangingReload() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let mapping = Mapping(name: "f", kind: .file, key: "/d/f", dest: h.dir("f"),
                          reload: ["sh", "-c", "echo started >> '\(h.commandLog)'; exec sleep 600"], commandTimeout: .seconds(1))
    try await h.put("/d/f", "1")
    let agent = try h.agent(h.configuration([mapping]))
    let daemon = Daemon(agent)
    #expect(await eventually { await agent.history.count >= 1 })
    let first = try #require(await agent.history.first)
    #expect(first.error?.hasPrefix("reload failed") == true, "\(first.error ?? "-")")
    #expect(Disk.read(h.dir("f")) == "1")
    // Still running: the next change is written (and its reload times out the same way).
    try await h.put("/d/f", "2")
    #expect(await eventually { Disk.read(h.dir("f")) == "2" && h.count("started") == 2 })
    #expect(!daemon.hasEnded)
    #expect(await daemon.stop() == nil)
  }
}
