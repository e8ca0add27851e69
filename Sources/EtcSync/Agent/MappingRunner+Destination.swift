import Synchronization
import Templates

#if canImport(Glibc)
import Glibc
#endif

/// The watched directory the agent recorded for a write-back mapping (see
/// ``Agent/checkDestination(_:)``), shared by every copy of its runner. The runner's writers
/// verify the root they open against it, on the descriptor, so that a directory put in its
/// place between the agent's check (by path) and the open is never written.
final class RecordedDestination: Sendable {
  private let value = Mutex<DirectoryIdentity?>(nil)

  init() {}

  /// The recorded identity; nil until the destination exists (the first render creates it).
  var identity: DirectoryIdentity? {
    get { self.value.withLock { $0 } }
    set { self.value.withLock { $0 = newValue } }
  }
}

extension MappingRunner {
  /// The identity every write (and write-back read) of this mapping verifies its root
  /// against: the recorded destination of a write-back mapping, nil for the others (and
  /// before a write-back destination exists). The root is a tree's destination, or a file's
  /// directory: the write-back watched directory either way.
  var recordedRoot: DirectoryIdentity? {
    self.mapping.writeBack ? self.recordedDestination.identity : nil
  }

  /// The local scanner of this write-back mapping, verifying what it reads against
  /// ``recordedRoot``.
  func localScanner(owner: uid_t? = nil) -> LocalScanner {
    LocalScanner(mapping: self.mapping, owner: owner, expected: self.recordedRoot)
  }

  /// A writing error as the mapping's failure: a root that is not the recorded one is
  /// ``MappingFailure/destinationReplaced`` (the agent then stops the mapping), the rest as
  /// ``MappingError/init(writing:)`` says.
  static func failure(writing error: any Error) -> MappingError {
    if let file = error as? FileError, file.code == .destinationReplaced {
      return MappingError(.destinationReplaced, "\(file)", subject: .file(ExactString(file.path)))
    }
    return MappingError(writing: error)
  }
}
