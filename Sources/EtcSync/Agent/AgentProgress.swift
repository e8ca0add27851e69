import Foundation

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
  /// (nil when none is failing).
  public var lastError: String? {
    self.errors.sorted { $0.key < $1.key }.first.map { "mapping \($0.key): \($0.value)" }
  }
}
