#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Logging

/// The JSON file that keeps ``SyncState`` across restarts (default
/// `/var/lib/etcsync/state.json`).
///
/// ``save(_:)`` is atomic and durable: temp file beside it (mode 0600), fsync, rename,
/// fsync of the directory; missing directories are created (0755). ``load()`` never fails:
/// a missing file is a first start, and an unreadable, corrupt or newer-format file is
/// logged as a warning and treated as empty (the agent then rewrites what differs and
/// reloads once, which is safe).
public struct StateFile: Sendable {
  /// Where the state lives unless configured otherwise.
  public static let defaultPath = "/var/lib/etcsync/state.json"

  /// The state file's path.
  public let path: String
  /// Where load problems are reported.
  public var logger: Logger
  /// fsync the file and its directory on save (tests may turn it off).
  public var fsync: Bool
  /// Each path table's order at the last save, shared by the copies of this handle.
  let order = StateJSON.PathOrder()

  /// Creates a handle on the state file at `path`.
  public init(
    path: String = StateFile.defaultPath, logger: Logger = Logger(label: "etcsync.state"),
    fsync: Bool = true
  ) {
    self.path = path
    self.logger = logger
    self.fsync = fsync
  }

  /// The saved state; empty when there is none or it cannot be trusted (see the type's
  /// documentation). Also removes temp files a crash left beside it.
  public func load() -> SyncState {
    removeLeftoverTemporaryFiles()
    let bytes: [UInt8]
    switch readFile() {
    case .success(let read): bytes = read
    case .failure(let error) where error.value == ENOENT:
      logger.info("no state file yet; starting from an empty state", metadata: ["state.path": "\(path)"])
      return SyncState()
    case .failure(let error):
      warn("state file cannot be read; starting from an empty state", FileError.errnoText(error.value))
      return SyncState()
    }
    let state: SyncState
    do {
      state = try JSONDecoder().decode(SyncState.self, from: Data(bytes))
    } catch {
      warn("state file is corrupt; starting from an empty state", "\(error)")
      return SyncState()
    }
    guard state.version <= SyncState.currentVersion else {
      warn("state file has a newer format; starting from an empty state", "version \(state.version)")
      return SyncState()
    }
    return state
  }

  /// Writes `state` atomically and durably.
  public func save(_ state: SyncState) throws(FileError) {
    let bytes = StateJSON.encode(state, order: self.order)
    let (directoryPath, name) = split()
    let directory = try RootedDirectory(root: directoryPath, create: true, mode: 0o755)
    let staged = try StagedFile.create(
      in: directory.directory, directoryPath: directoryPath, targetName: name)
    do throws(FileError) {
      try staged.write(bytes)
      if fchmod(staged.file.raw, 0o600) != 0 {
        throw FileError.system(.setMode, staged.path, "cannot set the mode")
      }
      if fsync { try staged.sync() }
      try staged.commit()
    } catch {
      staged.discard()
      throw error
    }
    if fsync { try syncDirectory(directory.directory, path: directoryPath) }
  }

  private func readFile() -> Result<[UInt8], Errno> {
    let fd = retryingEINTR { open(path, O_RDONLY | O_CLOEXEC) }
    guard fd >= 0 else { return .failure(Errno(value: currentErrno())) }
    return readAll(FileDescriptor(fd))
  }

  /// The directory and file name of ``path``.
  private func split() -> (String, String) {
    guard let (directory, name) = splitLastSlash(path) else { return (".", path) }
    return (directory.isEmpty ? "/" : directory, name)
  }

  private func removeLeftoverTemporaryFiles() {
    let (directoryPath, name) = split()
    guard let directory = try? RootedDirectory(root: directoryPath, create: false, mode: 0o755),
      let entries = try? listDirectory(directory.directory, path: directoryPath)
    else { return }
    let prefix = Array(("." + name + TemporaryName.marker).utf8.prefix(maximumSegmentBytes - 30))
    for entry in entries
    where entry.kind == .regular && entry.bytes.starts(with: prefix) && isTemporaryFileName(entry.bytes) {
      _ = unlinkat(directory.directory.raw, entry.cName, 0)
    }
  }

  private func warn(_ message: Logger.Message, _ detail: String) {
    logger.warning(message, metadata: ["state.path": "\(path)", "error": "\(detail)"])
  }
}
