import Logging

/// Log output: format and threshold.
public struct LogSettings: Sendable, Equatable {
  /// How each log line is written.
  public enum Format: String, Sendable, Hashable, CaseIterable {
    /// Human-readable lines with `key=value` metadata.
    case text
    /// One JSON object per line.
    case json
  }

  /// `text` (default) or `json`.
  public var format: Format
  /// The lowest level logged: trace, debug, info (default), notice, warning, error, critical.
  public var level: Logger.Level

  /// Text logs at `info` by default.
  public init(format: Format = .text, level: Logger.Level = .info) {
    self.format = format
    self.level = level
  }
}
