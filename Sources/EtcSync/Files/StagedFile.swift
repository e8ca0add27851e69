#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A temp file beside its target (`.NAME.etcsync-tmp-<random>`), created with `O_EXCL` and
/// `O_NOFOLLOW` relative to the directory descriptor, and invisible under the target's name
/// until ``commit()`` renames it over the target.
struct StagedFile {
  /// The directory holding both the temp file and the target.
  let directory: FileDescriptor
  /// Full path of that directory, for messages and for the `check` command.
  let directoryPath: String
  /// The target's name in the directory.
  let targetName: String
  /// The temp file's name in the directory.
  let name: String
  /// The open temp file.
  let file: FileDescriptor

  /// Full path of the temp file.
  var path: String { joinPath(directoryPath, name) }
  /// Full path of the target.
  var targetPath: String { joinPath(directoryPath, targetName) }

  /// Creates an empty temp file beside `targetName`, with mode 0600 (the owner's alone) or
  /// `mode` (the final one, ``EffectiveAttributes/finalCreationMode(defaultACL:umask:)``).
  static func create(in directory: FileDescriptor, directoryPath: String, targetName: String, mode: mode_t = 0o600)
    throws(FileError) -> StagedFile
  {
    let flags = O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC
    var attempts = 0
    while true {
      let name = TemporaryName.make(for: targetName)
      let fd = retryingEINTR { openat(directory.raw, name, flags, mode) }
      if fd >= 0 {
        return StagedFile(
          directory: directory, directoryPath: directoryPath, targetName: targetName,
          name: name, file: FileDescriptor(fd))
      }
      attempts += 1
      if currentErrno() != EEXIST || attempts >= 8 {
        throw .system(
          .createTemporary, joinPath(directoryPath, name), "cannot create the temporary file")
      }
    }
  }

  /// Writes all bytes (partial writes and `EINTR` handled).
  func write(_ bytes: [UInt8]) throws(FileError) {
    if let error = writeAll(file, bytes) {
      throw FileError(.write, path: path, errno: error, message: "cannot write the temporary file")
    }
  }

  /// `fsync` of the temp file.
  func sync() throws(FileError) {
    if let error = file.sync() {
      throw FileError(.sync, path: path, errno: error, message: "cannot fsync the temporary file")
    }
  }

  /// `renameat` over the target. Never falls back to writing the target in place: a target
  /// that cannot be replaced (a bind mount gives `EBUSY` or `EXDEV`) is an error.
  func commit() throws(FileError) {
    guard renameat(directory.raw, name, directory.raw, targetName) == 0 else {
      let error = currentErrno()
      var message = "cannot rename the staged file over the target"
      if error == EBUSY || error == EXDEV {
        message += " (a bind-mounted target cannot be replaced atomically;"
          + " etcsync never falls back to writing in place)"
      }
      throw FileError(.rename, path: targetPath, errno: error, message: message)
    }
  }

  /// Removes the temp file; errors are ignored (the start-up cleanup catches leftovers).
  func discard() {
    _ = unlinkat(directory.raw, name, 0)
  }
}

/// `fsync` of a directory, so that a rename or unlink in it is durable.
func syncDirectory(_ directory: FileDescriptor, path: String) throws(FileError) {
  if let error = directory.sync() {
    throw FileError(.sync, path: path, errno: error, message: "cannot fsync the directory")
  }
}
