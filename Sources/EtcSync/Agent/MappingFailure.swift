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

  /// The code of an error thrown while writing: a rejected check, or a write that failed.
  public init(writing error: any Error) {
    self = (error as? FileError)?.code == .checkFailed ? .checkFailed : .writeFailed
  }

  /// Whether the error's text may quote values from etcd (a template's error does), so that
  /// only its code is logged above debug level.
  public var quotesValues: Bool { self == .renderFailed }

  public var description: String { self.rawValue }
}
