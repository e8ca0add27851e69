@testable import EtcSync
import EtcdTestSupport
import Foundation
import Glibc
import Synchronization
import Testing

extension ExecModeTests {
  @Test("the orphan reaper (PID 1's) never reaps a registered child: it stays a zombie, its pid taken, until its owner reaps it with its status, while orphans that end meanwhile are reaped")
  func reaperLeavesRegisteredChildren() async throws {
    // The probe makes its process a subreaper and starts the orphan reaper, which would reap
    // other tests' children: it runs alone, in a test process of its own. Its output goes to a
    // file (a pipe would stay open as long as any process that inherited it lives).
    let directory = TemporaryDirectory("etcsync-reaper")
    let logPath = directory("probe.log")
    let process = try ChildProcess(
      [URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path, "--testing-library", "swift-testing", "--filter", "ReaperProbe"],
      environment: ProcessInfo.processInfo.environment.merging(["ETCSYNC_REAPER_PROBE": "1"]) { $1 },
      output: logPath, error: logPath)
    // The limit only bounds a hung probe, which is then killed with what it started.
    let ended = await process.exit(within: .seconds(300))
    let output = Disk.read(logPath) ?? ""
    guard ended else {
      ProcessTree.kill(process)
      Issue.record("the probe still ran after 300 s: \(output)")
      return
    }
    #expect(process.terminationStatus == 0, "\(output)")
    // It ran (not skipped) and passed.
    #expect(output.contains("Test registeredChildStaysAZombie() passed"), "\(output)")
  }
}

/// Runs only in a test process of its own (``ExecModeTests/reaperLeavesRegisteredChildren()``
/// starts one with `ETCSYNC_REAPER_PROBE=1`).
@Suite struct ReaperProbe {
  static let enabled = ProcessInfo.processInfo.environment["ETCSYNC_REAPER_PROBE"] == "1"

  @Test(.enabled(if: ReaperProbe.enabled, "started by ExecModeTests.reaperLeavesRegisteredChildren only"))
  func registeredChildStaysAZombie() throws {
    // As a subreaper, this process gets the orphans of its descendants, as PID 1 does.
    try #require(Self.becomeSubreaper())
    let orphans = Mutex<[pid_t]>([])
    ChildProcesses.shared.startReapingOrphans { pid, _ in orphans.withLock { $0.append(pid) } }

    // A registered child that starts a `sleep` (an orphan once the child is gone), says its
    // pid and exits 7.
    let pidFile = FileManager.default.temporaryDirectory.appendingPathComponent("reaper-probe-\(getpid())").path
    defer { unlink(pidFile) }
    let argv = ["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $! > '\(pidFile).tmp' && mv '\(pidFile).tmp' '\(pidFile)'; exit 7"]
    let pointers = argv.map { strdup($0) } + [nil]
    defer { pointers.forEach { free($0) } }
    let (child, error) = ChildProcesses.shared.spawn { pid in posix_spawnp(&pid, "sh", nil, nil, pointers, environ) }
    try #require(error == 0)

    // The child has ended (waited for without reaping it).
    ChildProcesses.shared.waitUntilEnded(child)
    let sleeper = try #require(Self.waitFor { (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) } })
    // The orphan ends while the child waits for its owner: the reaper reaps it. (No deferred
    // kill: once reaped, its pid may belong to another process.)
    #expect(kill(sleeper, SIGKILL) == 0)
    #expect(Self.waitFor { orphans.withLock { $0.contains(sleeper) } ? true : nil } == true)

    // The ended child is still this process's zombie: its pid is not free for another process.
    var info = siginfo_t()
    #expect(waitid(P_PID, id_t(child), &info, WEXITED | WNOWAIT | WNOHANG) == 0)
    #expect(info._sifields._sigchld.si_pid == child)
    #expect(Self.state(of: child) == "Z")
    #expect(!orphans.withLock { $0.contains(child) })
    // Its owner reaps it with its own status.
    #expect(ChildProcesses.shared.reap(child) == 7 << 8)
    #expect(waitid(P_PID, id_t(child), &info, WEXITED | WNOWAIT | WNOHANG) == -1 && errno == ECHILD)
  }

  /// `prctl(PR_SET_CHILD_SUBREAPER, 1)`. `prctl` is variadic in C, so Swift does not import
  /// it: it is called through a pointer of its fixed-argument shape.
  static func becomeSubreaper() -> Bool {
    typealias Prctl = @convention(c) (Int32, UInt, UInt, UInt, UInt) -> Int32
    guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "prctl") else { return false }
    let prctl = unsafeBitCast(symbol, to: Prctl.self)
    let PR_SET_CHILD_SUBREAPER: Int32 = 36  // <linux/prctl.h>
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
  }

  /// Polls `value` until it is non-nil (the limit only bounds a failing test).
  static func waitFor<T>(_ value: () -> T?) -> T? {
    let deadline = ContinuousClock.now + .seconds(30)
    while ContinuousClock.now < deadline {
      if let value = value() { return value }
      usleep(10_000)
    }
    return nil
  }

  /// The one-letter state of `pid` (`Z` for a zombie), nil once it is gone.
  static func state(of pid: pid_t) -> String? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return nil }
    return stat[stat.index(close, offsetBy: 2)...].split(separator: " ").first.map(String.init)
  }
}
