import EtcSync
import Foundation
import Glibc
import Logging
import Testing

@Suite("Command runner")
struct CommandRunnerTests {
  static let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
  static let runner = CommandRunner(options: .init(killGracePeriod: .milliseconds(500)), logger: quiet)

  @Test("stdout and stderr are captured together")
  func capturesOutput() async throws {
    let result = try await Self.runner.run(
      ["sh", "-c", "echo out; echo err >&2; echo more"], timeout: .seconds(10))
    #expect(result.succeeded)
    #expect(result.termination == .exited(0))
    #expect(result.outputText == "out\nerr\nmore\n")
    #expect(result.droppedOutputBytes == 0)
  }

  @Test("a non-zero exit and a signal are reported, not thrown")
  func failures() async throws {
    let exited = try await Self.runner.run(["sh", "-c", "echo no >&2; exit 3"], timeout: .seconds(10))
    #expect(exited.termination == .exited(3))
    #expect(!exited.succeeded && !exited.timedOut)
    #expect(exited.outputText == "no\n")
    let killed = try await Self.runner.run(["sh", "-c", "kill -9 $$"], timeout: .seconds(10))
    #expect(killed.termination == .signaled(SIGKILL))
  }

  @Test("the timeout kills the whole process group, grandchildren included")
  func timeoutKillsGroup() async throws {
    // The timeout must come after sh has started its grandchild and said its pid: 2 s, as a
    // loaded CI machine can take longer than 300 ms to start sh at all.
    let result = try await Self.runner.run(
      ["sh", "-c", "sleep 100 & echo $!; sleep 100"], timeout: .seconds(2))
    #expect(result.timedOut)
    #expect(!result.succeeded)
    #expect(result.termination == .signaled(SIGTERM))
    let grandchild = try #require(Int32(result.outputText.trimmingCharacters(in: .whitespacesAndNewlines)))
    #expect(await Self.isGone(grandchild), "grandchild \(grandchild) survived")
  }

  @Test("a group that ignores SIGTERM gets SIGKILL after the grace period")
  func sigkillAfterGrace() async throws {
    let start = ContinuousClock.now
    // 2 s: the SIGTERM must come after sh has set its trap (a loaded machine can take more
    // than 200 ms to get there).
    let result = try await Self.runner.run(
      ["sh", "-c", "trap '' TERM; sleep 100 & echo $!; sleep 100; echo survived"],
      timeout: .seconds(2))
    let elapsed = ContinuousClock.now - start
    #expect(result.timedOut)
    #expect(result.termination == .signaled(SIGKILL))
    #expect(elapsed >= .milliseconds(2450), "SIGKILL only after the grace period")
    #expect(!result.outputText.contains("survived"))
    let grandchild = try #require(Int32(result.outputText.split(separator: "\n").first ?? ""))
    #expect(await Self.isGone(grandchild))
  }

  @Test("{{.src}} is substituted; key data with shell metacharacters stays literal")
  func substitutionIsLiteral() async throws {
    let dir = TemporaryDirectory()
    let marker = dir("pwned")
    let hostile = "$(touch \(marker)); `touch \(marker)`; touch \(marker) | && > 'q' \"d\" * ~ {{.src}}"
    let result = try await Self.runner.run(
      ["printf", "[%s][%s]", "{{.src}}", "x{{ .src }}y{{.other}}"],
      substitutions: ["src": hostile], timeout: .seconds(10))
    #expect(result.succeeded)
    #expect(result.outputText == "[\(hostile)][x\(hostile)y{{.other}}]")
    #expect(!Disk.exists(marker))
  }

  @Test("output is bounded to the last bytes")
  func boundedOutput() async throws {
    let runner = CommandRunner(options: .init(outputLimit: 1024), logger: Self.quiet)
    let result = try await runner.run(
      ["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' a; echo END"], timeout: .seconds(10))
    #expect(result.output.count == 1024)
    #expect(result.outputText.hasSuffix("aaaaEND\n"))
    #expect(result.droppedOutputBytes == 300_004 - 1024)
  }

  @Test("stdin is /dev/null, the environment can be set, a background child does not hang the run")
  func environmentAndStdin() async throws {
    #expect(try await Self.runner.run(["cat"], timeout: .seconds(5)).succeeded)
    let runner = CommandRunner(
      options: .init(environment: ["GREETING": "hi there", "PATH": "/usr/bin:/bin"]), logger: Self.quiet)
    let result = try await runner.run(["sh", "-c", "echo \"$GREETING\""], timeout: .seconds(5))
    #expect(result.outputText == "hi there\n")
    let start = ContinuousClock.now
    // A command that leaves a daemon behind returns when the command exits, not when the
    // daemon does: the bound only separates "returned" from "waited for the 60 s child".
    let daemon = try await Self.runner.run(["sh", "-c", "sleep 60 & echo started"], timeout: .seconds(120))
    #expect(daemon.succeeded && daemon.outputText == "started\n")
    #expect(ContinuousClock.now - start < .seconds(30))
  }

  @Test("a missing program and an empty argv are thrown errors")
  func spawnErrors() async throws {
    let missing = await #expect(throws: CommandError.self) {
      try await Self.runner.run(["/nonexistent/etcsync-cmd", "x"], timeout: .seconds(1))
    }
    #expect(missing?.code == .spawnFailed)
    #expect(missing?.errno == ENOENT)
    #expect(missing?.description.contains("ENOENT") == true)
    let empty = await #expect(throws: CommandError.self) {
      try await Self.runner.run([], timeout: .seconds(1))
    }
    #expect(empty?.code == .emptyArgv)
  }

  @Test("cancelling the task kills the process group")
  func cancellation() async throws {
    let task = Task { try await Self.runner.run(["sleep", "100"], timeout: .seconds(100)) }
    try await Task.sleep(for: .milliseconds(200))
    task.cancel()
    let result = try await task.value
    #expect(result.cancelled && !result.timedOut && !result.succeeded)
  }

  @Test("a check command wired into the writer vets the staged file")
  func stagedFileCheck() async throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("app.conf"), "good")
    let check = Self.runner.stagedFileCheck(
      ["sh", "-c", "grep -q '^good' \"$1\" || { echo \"bad config in $1\"; exit 1; }", "check", "{{.src}}"],
      timeout: .seconds(10))
    let writer = AtomicWriter(root: dir.path)
    let error = await #expect(throws: FileError.self) {
      try await writer.write(DesiredFile(bytes: Array("evil".utf8)), to: "app.conf", check: check)
    }
    #expect(error?.code == .checkFailed)
    let cause = try #require(error?.cause as? CommandError)
    #expect(cause.code == .failed && cause.result?.termination == .exited(1))
    #expect(cause.result?.outputText.contains(".app.conf.etcsync-tmp-") == true)
    #expect(Disk.read(dir("app.conf")) == "good")
    #expect(Disk.temporaryFiles(dir.path).isEmpty)
    let ok = try await writer.write(DesiredFile(bytes: Array("good v2".utf8)), to: "app.conf", check: check)
    #expect(ok == .replaced)
    #expect(Disk.read(dir("app.conf")) == "good v2")
  }

  /// Whether `pid` is gone or a zombie (PID 1 here may reap orphans late), polling briefly.
  static func isGone(_ pid: Int32) async -> Bool {
    for _ in 0..<50 {
      guard let stat = ConsistencyReader.read(AT_FDCWD, "/proc/\(pid)/stat"), !stat.isEmpty else {
        return true
      }
      if let close = stat.lastIndex(of: ")"),
        stat[stat.index(close, offsetBy: 2)] == "Z"
      {
        return true
      }
      try? await Task.sleep(for: .milliseconds(20))
    }
    return false
  }
}
