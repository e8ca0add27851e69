import Foundation
import Logging

/// Runs a mapping's `check` and `reload` commands.
///
/// A command is an argv, never a shell line: a shell runs only when the user writes one
/// (`[sh, -c, "…"]`). `{{.NAME}}` placeholders are substituted (see
/// ``ArgumentSubstitution``), nothing else. Each command runs as the leader of its own process
/// group; when its timeout expires (or the calling task is cancelled) the whole group gets
/// SIGTERM, then SIGKILL after ``Options/killGracePeriod``. Stdout and stderr are captured
/// together (the last ``Options/outputLimit`` bytes) and logged. Waiting happens on a
/// dedicated thread, so no cooperative thread is blocked.
///
/// Members of the group still running after the leader exited normally (a daemon it started
/// in the background) are left alone; their output is no longer read.
public struct CommandRunner: Sendable {
  /// Limits and environment of the commands.
  public struct Options: Sendable, Hashable {
    /// How many bytes of output to keep (the last ones).
    public var outputLimit: Int
    /// Time between SIGTERM and SIGKILL when a command is stopped.
    public var killGracePeriod: Duration
    /// The commands' environment; nil inherits the agent's.
    public var environment: [String: String]?

    /// Creates options; defaults keep 64 KiB of output with a 2 s grace period.
    public init(
      outputLimit: Int = 64 * 1024, killGracePeriod: Duration = .seconds(2),
      environment: [String: String]? = nil
    ) {
      self.outputLimit = outputLimit
      self.killGracePeriod = killGracePeriod
      self.environment = environment
    }
  }

  /// Limits and environment.
  public var options: Options
  /// Where commands and their output are logged (attach `mapping.name` metadata).
  public var logger: Logger

  /// Creates a runner.
  public init(options: Options = Options(), logger: Logger = Logger(label: "etcsync.command")) {
    self.options = options
    self.logger = logger
  }

  /// Runs `argv` after substituting `{{.NAME}}` with `substitutions[NAME]`, and returns how
  /// it ended. Throws only when the command cannot start; a failing command is a result.
  public func run(
    _ argv: [String], substitutions: [String: String] = [:], timeout: Duration
  ) async throws(CommandError) -> CommandResult {
    let argv = try ArgumentSubstitution.checkedSubstitute(argv, with: substitutions)
    guard !argv.isEmpty else { throw CommandError(.emptyArgv, argv: argv) }
    let process = try ProcessSpawner.spawn(argv, environment: options.environment)
    logger.debug(
      "command started",
      metadata: ["command.argv": .array(argv.map { .string($0) }), "command.pid": "\(process.pid)"])
    let limits = ProcessSupervisor.Limits(
      timeout: timeout, killGracePeriod: options.killGracePeriod, outputLimit: options.outputLimit)
    let outcome = await Self.supervise(process, limits: limits)
    let result = CommandResult(
      argv: argv, termination: .init(rawStatus: outcome.rawStatus), timedOut: outcome.timedOut,
      cancelled: outcome.cancelled, output: outcome.output.bytes,
      droppedOutputBytes: outcome.output.dropped, duration: outcome.duration)
    log(result)
    return result
  }

  /// A ``StagedFileCheck`` that runs `argv` with `{{.src}}` set to the staged path (and the
  /// other `substitutions`, such as `{{.dest}}`) and fails with a ``CommandError/Code/failed``
  /// error unless the command succeeds.
  public func stagedFileCheck(
    _ argv: [String], timeout: Duration, substitutions: [String: String] = [:]
  ) -> StagedFileCheck {
    { stagedPath in
      var values = substitutions
      values["src"] = stagedPath
      let result = try await run(argv, substitutions: values, timeout: timeout)
      guard result.succeeded else {
        throw CommandError(.failed, argv: result.argv, result: result)
      }
    }
  }

  /// Runs the supervision on a thread of its own and forwards task cancellation to it.
  private static func supervise(_ process: SpawnedProcess, limits: ProcessSupervisor.Limits)
    async -> ProcessSupervisor.Outcome
  {
    let supervisor = ProcessSupervisor()
    return await withTaskCancellationHandler {
      await withCheckedContinuation { continuation in
        let thread = Thread {
          continuation.resume(returning: supervisor.supervise(process, limits: limits))
        }
        thread.name = "etcsync-command"
        thread.start()
      }
    } onCancel: {
      supervisor.cancel()
    }
  }

  private func log(_ result: CommandResult) {
    var metadata: Logger.Metadata = [
      "command.argv": .array(result.argv.map { .string($0) }),
      "command.status": "\(result.termination)",
      "command.duration_ms": "\(result.duration / .milliseconds(1))",
    ]
    // A command's output can hold secrets (a check that prints the staged file): it is logged
    // at debug level only, on a line of its own.
    if !result.output.isEmpty {
      var output: Logger.Metadata = ["command.argv": metadata["command.argv"]!, "command.output": "\(result.outputText)"]
      if result.droppedOutputBytes > 0 { output["command.output_dropped_bytes"] = "\(result.droppedOutputBytes)" }
      logger.debug("command output", metadata: output)
    }
    if result.succeeded {
      logger.info("command succeeded", metadata: metadata)
    } else {
      metadata["command.timed_out"] = "\(result.timedOut)"
      logger.warning("command failed", metadata: metadata)
    }
  }
}
