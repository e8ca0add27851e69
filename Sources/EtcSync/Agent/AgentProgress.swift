import Foundation
import Templates

/// Where an agent is: the revision all of its files hold, and the mappings failing now.
public struct AgentProgress: Sendable, Hashable {
  /// The revision whose content every mapping's files hold.
  public var appliedRevision: Int64
  /// The failure code (a ``MappingFailure`` raw value) of each failing mapping, by name:
  /// never the error's text, which can quote a command's output or a value from etcd.
  public var errors: [String: String]
  /// Whether the agent is ready: first sync done and etcd answering (see ``Readiness``).
  public var ready: Bool = true
  /// The revision the agent is current through: every change of its ranges up to it is in
  /// its files (written, reloaded, no mapping failing), whether or not one touched them.
  public var currentRevision: Int64 = 0
  /// The latest status request the agent saw (``ProgressRequest``): the revision it asks the
  /// agent to be current through (0: none).
  public var requestedRevision: Int64 = 0
  /// Reloads running longer than expected (see ``Agent/overdueReloadThreshold(timeout:)``):
  /// when each started, by mapping.
  public var overdueReloads: [String: Date] = [:]

  /// The first failing mapping by name with its code, such as `mapping app: check_failed`
  /// (nil when none is failing). A reload running longer than expected counts as
  /// `reload_overdue` (the mapping's name only, never the command or its output), behind a
  /// mapping's own failure.
  public var lastError: String? {
    if let failing = self.errors.min(by: { ExactString($0.key) < ExactString($1.key) }) {
      return "mapping \(failing.key): \(failing.value)"
    }
    return self.overdueReloads.keys.min { ExactString($0) < ExactString($1) }.map { "mapping \($0): \(MappingFailure.reloadOverdue)" }
  }
}
