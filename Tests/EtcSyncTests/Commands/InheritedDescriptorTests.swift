@testable import EtcSync
import Foundation
import Glibc
import Testing

/// Check and reload commands get stdin, stdout and stderr and no other descriptor: not one the
/// agent inherited without close-on-exec, such as the socket Foundation's `Process` leaves in
/// every process it starts (a command, or a daemon it leaves behind, holding it open keeps
/// whoever waits on it waiting). Exec mode's child gets what the agent inherited, as from any
/// container entrypoint.
@Suite("Descriptors children inherit", .serialized)
struct InheritedDescriptorTests {
  /// Opens a pipe without close-on-exec for `body`, as a parent would leave one (at whatever
  /// descriptors are free: never over one in use, which another test's socket could be).
  static func withLeakedDescriptor<T>(_ body: ([Int32]) async throws -> T) async rethrows -> T {
    var pair: [Int32] = [-1, -1]
    precondition(pipe(&pair) == 0)
    // Moved to the lowest free descriptors from 64 (F_DUPFD never replaces an open one; the
    // copies do not have close-on-exec), above those the child opens itself.
    let ends = pair.map { fcntl($0, F_DUPFD, 64) }
    pair.forEach { close($0) }
    defer { ends.forEach { close($0) } }
    #expect(ends.allSatisfy { $0 >= 64 && fcntl($0, F_GETFD) == 0 }, "\(ends) are open and inheritable")
    return try await body(ends)
  }

  /// The descriptors `ls` finds open in itself (0, 1, 2, and the one it reads the directory with).
  static func descriptors(_ listing: String) -> [Int] {
    listing.split(separator: "\n").compactMap { Int($0) }.sorted()
  }

  @Test("a command sees only stdin, stdout and stderr")
  func commands() async throws {
    let runner = CommandRunner(options: .init(), logger: .init(label: "test"))
    let result = try await Self.withLeakedDescriptor { _ in
      try await runner.run(["ls", "-1", "/proc/self/fd"], timeout: .seconds(30))
    }
    #expect(result.succeeded, "\(result.outputText)")
    #expect(Self.descriptors(result.outputText) == [0, 1, 2, 3], "\(result.outputText)")
  }

  @Test("exec mode's child gets what etcsync inherited without close-on-exec, as from any entrypoint")
  func execChild() async throws {
    let directory = TemporaryDirectory("etcsync-fds")
    let listing = directory.path + "/fds"
    let (pid, leaked) = try await Self.withLeakedDescriptor { ends in
      (try ProcessSpawner.spawnInheritingStdio(["sh", "-c", "exec ls -1 /proc/self/fd > '\(listing)'"], environment: nil), ends)
    }
    ChildProcesses.shared.waitUntilEnded(pid)
    #expect(ChildProcesses.shared.reap(pid) == 0)
    let text = try String(contentsOfFile: listing, encoding: .utf8)
    let seen = Set(Self.descriptors(text))
    #expect(leaked.allSatisfy { seen.contains(Int($0)) }, "the inherited \(leaked) pass through: \(text)")
  }
}
