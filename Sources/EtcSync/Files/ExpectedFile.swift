#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a write-back mapping's writer expects at a path before it replaces or deletes it:
/// what the agent's scan right before the render found there (bytes, or nothing). The agent
/// pushes local edits before it renders; an edit made after that scan would otherwise be
/// overwritten with etcd's value and lost. With an expectation the writer leaves a file that
/// no longer holds it (``AtomicWriter/Outcome/keptEdit``), and the next scan pushes it.
///
/// The file is compared (its content hashed through a descriptor) twice: when the new file is
/// staged, and again right before the rename, after the fsync and the check command. Only an
/// edit made within that last read and the `rename` can still be lost. Comparing `lstat`
/// stamps instead would miss a same-size edit in place: file times have the kernel's coarse
/// clock tick (4 ms), not nanoseconds.
public enum ExpectedFile: Sendable, Hashable {
  /// Nothing stands at the path.
  case absent
  /// A regular file with these bytes.
  case content(ContentHash)
}

extension AtomicWriter {
  /// Files larger than this are not hashed to compare with an expectation: taken for an edit.
  static let expectationReadLimit: Int64 = 64 << 20

  /// Whether `target` (the `lstat` of `name` in `directory`) holds `expected`.
  func holds(_ expected: ExpectedFile, name: String, in directory: FileDescriptor, target: TargetState) -> Bool {
    switch expected {
    case .absent:
      return !target.exists
    case .content(let hash):
      guard let info = target.regular, Int64(info.st_size) <= Self.expectationReadLimit else { return false }
      return hashRegularFile(name, in: directory, info: info, sizeLimit: Self.expectationReadLimit) == .hash(hash)
    }
  }

  /// The directory that holds `relativePath`, opened for a write that expects `expected`: nil
  /// when a file was expected there and its directory is gone (removed since the caller looked,
  /// so not made again); else created as ``Options/createDirectories`` says.
  func openParent(of relativePath: String, expecting expected: ExpectedFile?) throws(FileError) -> (RootedDirectory, String)? {
    if case .content = expected { return try openExistingParent(of: relativePath) }
    return try openParent(of: relativePath, create: options.createDirectories)
  }

  /// Whether `name` in `directory` holds `expected` now: looked at again right before a
  /// rename or unlink.
  func stillHolds(_ expected: ExpectedFile, name: String, in directory: FileDescriptor) -> Bool {
    guard let info = lstatAt(directory, name) else { return expected == .absent && currentErrno() == ENOENT }
    let regular = FileKind(mode: info.st_mode) == .regular ? info : nil
    return holds(expected, name: name, in: directory, target: TargetState(regular: regular, exists: true))
  }
}
