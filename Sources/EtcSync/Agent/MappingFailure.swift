import Templates

/// Why a mapping failed, as a short code.
///
/// The code and the mapping's name are all of a failure that leaves the journal: systemd's
/// `STATUS=` (readable by every local user), the presence key (readable by everyone with read
/// access to its prefix) and metrics carry them, never the error's text, which can quote a
/// failing command's output or a value from etcd. The text goes to the log: a summary without
/// values at error level, everything at debug level.
public enum MappingFailure: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
  /// The template failed (a missing key, a function error).
  case renderFailed = "render_failed"
  /// A `file` mapping's key does not exist.
  case missingKey = "missing_key"
  /// Keys or values that cannot be laid out (not UTF-8 where text is needed, a key that is
  /// also a table).
  case invalidData = "invalid_data"
  /// Two keys of a tree would be one file on a destination file system that folds case or
  /// Unicode normalization: the batch is refused, the old files stay.
  case nameCollision = "name_collision"
  /// A local edit that could not be pushed holds the file (write-back).
  case held
  /// A write-back destination is no longer the directory the agent started with (unmounted,
  /// replaced, removed): nothing is pushed from it or written into it.
  case destinationReplaced = "destination_replaced"
  /// More of a write-back mapping's files vanished at once than its guard allows: nothing is
  /// pushed or written until they are back (or their keys are deleted in etcd).
  case massDeletion = "mass_deletion"
  /// The `check` command rejected the staged file.
  case checkFailed = "check_failed"
  /// The files could not be written (a full or read-only disk, a busy target).
  case writeFailed = "write_failed"
  /// The `reload` command failed.
  case reloadFailed = "reload_failed"
  /// A `reload` has run longer than expected (half its `commandTimeout`, at most 10 s) and
  /// has not ended yet. Not a result of a batch: ``AgentProgress/lastError`` reports it while
  /// no mapping fails otherwise, so that `status` says why the agent is not ready.
  case reloadOverdue = "reload_overdue"
  /// Any other failure.
  case failed

  /// The code of a planning error.
  public init(_ code: PlanError.Code) {
    if code == .render {
      self = .renderFailed
    } else if code == .missingKey {
      self = .missingKey
    } else if code == .nameCollision {
      self = .nameCollision
    } else {
      self = .invalidData
    }
  }

  /// Whether a failure of this kind may pass by itself, so that the daemon retries it with
  /// the mapping's `retry` backoff instead of waiting for the next change: a full or
  /// read-only disk, a busy target, a check that depends on the machine, a write-back
  /// destination that is remounted or whose files come back. A missing key, a template
  /// error, a held edit or a failed reload waits for the next change.
  public var retryable: Bool {
    switch self {
    case .writeFailed, .checkFailed, .destinationReplaced, .massDeletion: true
    default: false
    }
  }

  /// Whether the error's text may quote values from etcd (a template's error does), so that
  /// only its code is logged above debug level.
  public var quotesValues: Bool { self == .renderFailed }

  public var description: String { self.rawValue }
}

/// A mapping's failure: its code (all that leaves the journal, see ``MappingFailure``), its
/// text for the log, and the key or file it names.
public struct MappingError: Error, Sendable, Hashable, CustomStringConvertible {
  /// What a failure names.
  public enum Subject: Sendable, Hashable {
    /// An etcd key (as the message writes it).
    case key(ExactString)
    /// A file or directory on the local disk.
    case file(ExactString)
  }

  public var code: MappingFailure
  /// The full text: it can quote a command's output or a value from etcd (see
  /// ``MappingFailure/quotesValues``).
  public var message: String
  public var subject: Subject?

  public init(_ code: MappingFailure, _ message: String, subject: Subject? = nil) {
    self.code = code
    self.message = message
    self.subject = subject
  }

  /// A planning error: its code, its text and the key it names.
  public init(planning error: PlanError) {
    self.init(MappingFailure(error.code), error.message, subject: error.key.map { .key(ExactString($0)) })
  }

  /// An error thrown while writing: a rejected check (``MappingFailure/checkFailed``), or a
  /// write that failed; a ``FileError`` names its path. A ``MappingError`` stays as it is.
  public init(writing error: any Error) {
    if let error = error as? MappingError {
      self = error
      return
    }
    let file = error as? FileError
    self.init(file?.code == .checkFailed ? .checkFailed : .writeFailed, "\(error)", subject: file.map { .file(ExactString($0.path)) })
  }

  /// See ``MappingFailure/retryable``.
  public var retryable: Bool { self.code.retryable }

  public var description: String { self.message }

  // The text names keys and paths: compared by its bytes, as they are.
  public static func == (lhs: MappingError, rhs: MappingError) -> Bool {
    lhs.code == rhs.code && lhs.message.utf8.elementsEqual(rhs.message.utf8) && lhs.subject == rhs.subject
  }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(self.code)
    hasher.combine(ExactString(self.message))
    hasher.combine(self.subject)
  }
}
