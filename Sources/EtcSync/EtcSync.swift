/// The etcsync agent library. Today it holds what the command line shares with it; the
/// agent itself (configuration, snapshots, rendering, atomic writes, watching) arrives with
/// the agent issue and lives here, so tests can reach it without the executable.
public enum EtcSync {
  /// The version printed by `etcsync --version` and announced in presence keys.
  public static let version = "0.1.0"
}
