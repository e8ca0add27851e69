/// How a command ended, with its captured output.
public struct CommandResult: Sendable, Hashable, CustomStringConvertible {
  /// How the command's process ended.
  public enum Termination: Sendable, Hashable, CustomStringConvertible {
    /// It exited with this status.
    case exited(Int32)
    /// A signal ended it.
    case signaled(Int32)

    public var description: String {
      switch self {
      case .exited(let status): "exit status \(status)"
      case .signaled(let signal): "killed by signal \(signal)"
      }
    }
  }

  /// The argv that ran, after `{{.NAME}}` substitution.
  public var argv: [String]
  /// How the process ended.
  public var termination: Termination
  /// Whether the timeout expired (the process group was then killed).
  public var timedOut: Bool
  /// Whether the run was cancelled (the process group was then killed).
  public var cancelled: Bool
  /// The last bytes of stdout and stderr, interleaved as written.
  public var output: [UInt8]
  /// How many bytes of output were dropped from the start to keep ``output`` bounded.
  public var droppedOutputBytes: Int
  /// Wall-clock time from spawn until the process was reaped.
  public var duration: Duration

  /// Whether the command exited with status 0 in time.
  public var succeeded: Bool { !timedOut && !cancelled && termination == .exited(0) }

  /// ``output`` as text (invalid UTF-8 replaced).
  public var outputText: String { String(decoding: output, as: UTF8.self) }

  public var description: String {
    let how = timedOut ? "timed out, \(termination)" : cancelled ? "cancelled, \(termination)" : "\(termination)"
    return "\(argv.first ?? "?"): \(how)"
  }
}

/// A command could not run, or (from ``CommandRunner/stagedFileCheck(_:timeout:)``) ran and
/// failed.
public struct CommandError: Error, Sendable, CustomStringConvertible {
  /// What went wrong.
  public enum Code: String, Sendable, Hashable {
    /// The argv is empty.
    case emptyArgv
    /// The process could not be started (`ENOENT` for a missing program, `EACCES`…).
    case spawnFailed
    /// The command ran but did not succeed; ``CommandError/result`` tells how.
    case failed
    /// A placeholder's value would have been interpreted by a shell (see
    /// ``ArgumentSubstitution/checkedSubstitute(_:with:)``); the command did not run.
    case unsafeSubstitution
  }

  /// What went wrong.
  public var code: Code
  /// The argv, after substitution.
  public var argv: [String]
  /// The errno of a failed spawn.
  public var errno: Int32?
  /// The result of a command that ran and failed.
  public var result: CommandResult?
  /// Why an ``Code/unsafeSubstitution`` was refused.
  public var detail: String?

  /// Creates an error.
  public init(_ code: Code, argv: [String], errno: Int32? = nil, result: CommandResult? = nil, detail: String? = nil) {
    self.code = code
    self.argv = argv
    self.errno = errno
    self.result = result
    self.detail = detail
  }

  /// What went wrong, without the command's output: a check or reload can print secrets (the
  /// staged file's content, say), and this text reaches the mapping's error, which the log
  /// shows at error level. ``detailedDescription`` adds the output.
  public var description: String {
    let program = escapeBytes((argv.first ?? "").utf8)
    switch code {
    case .emptyArgv: return "command has an empty argv"
    case .unsafeSubstitution: return detail ?? "refusing an unsafe substitution into a shell script"
    case .spawnFailed:
      return "cannot start \"\(program)\": \(errno.map(FileError.errnoText) ?? "unknown error")"
    case .failed:
      guard let result else { return "\"\(program)\" failed" }
      return "\"\(program)\" failed: \(result)"
    }
  }

  /// ``description`` with the last 512 bytes of the command's output, escaped: for the log at
  /// debug level only.
  public var detailedDescription: String {
    guard code == .failed, let output = result?.output, !output.isEmpty else { return self.description }
    return self.description + "; output: \(escapeBytes(output.suffix(512)))"
  }
}
