/// The etcsync agent library: configuration, snapshots, rendering, atomic writes, watching,
/// write-back and presence. The command line is a thin layer over it, so tests reach
/// everything without the executable.
public enum EtcSync {
  /// The version printed by `etcsync --version` and announced in presence keys.
  public static let version = "0.1.0"
}
