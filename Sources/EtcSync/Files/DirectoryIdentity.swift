#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The device and inode of a directory: what tells one directory from another that took its
/// path (an unmounted volume's empty mount point, a directory renamed away and replaced).
///
/// The agent records it for a write-back mapping's watched directory when it starts (and in
/// the state file). The writers and readers verify the root they actually opened against it
/// (``AtomicWriter/Options/rootIdentity``, ``TreeSwap/Options/rootIdentity``): a check of the
/// path alone could be passed by the old directory and then be followed by an open of a new
/// one, since the path is opened again after the check.
public struct DirectoryIdentity: Sendable, Hashable, CustomStringConvertible {
  /// `st_dev`.
  public var device: UInt64
  /// `st_ino`.
  public var inode: UInt64

  /// An identity from its device and inode numbers.
  public init(device: UInt64, inode: UInt64) {
    self.device = device
    self.inode = inode
  }

  /// The identity a `stat` describes.
  init(_ info: stat) {
    self.init(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
  }

  /// `device 8:1 inode 1234`.
  public var description: String { "device \(major(self.device)):\(minor(self.device)) inode \(self.inode)" }

  private func major(_ device: UInt64) -> UInt64 { ((device >> 32) & 0xFFFF_F000) | ((device >> 8) & 0xFFF) }
  private func minor(_ device: UInt64) -> UInt64 { ((device >> 12) & 0xFFFF_FF00) | (device & 0xFF) }
}

extension FileError {
  /// The mapping root opened at `root` is not the directory `expected` (or is gone): nothing
  /// was read or written in it.
  static func rootReplaced(_ root: String, expected: DirectoryIdentity, now: DirectoryIdentity?) -> FileError {
    FileError(
      .destinationReplaced, path: root,
      message: "the directory opened is not the one recorded for this mapping (recorded \(expected), now \(now.map(\.description) ?? "missing")): unmounted or replaced; nothing is read or written in it")
  }
}
