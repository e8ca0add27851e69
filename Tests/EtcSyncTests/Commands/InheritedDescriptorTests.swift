@testable import EtcSync
import Foundation
import Glibc
import Testing

/// Children (check and reload commands, exec mode's child) get stdin, stdout and stderr and no
/// other descriptor: not one the agent inherited without close-on-exec, such as the socket
/// Foundation's `Process` leaves in every process it starts (a child holding it open keeps
/// whoever started the agent waiting for the child as well).
@Suite("Descriptors children inherit", .serialized)
struct InheritedDescriptorTests {
  /// Opens a pipe without close-on-exec for `body`, as a parent would leave one (at whatever
  /// descriptors are free: never over one in use, which another test's socket could be).
  static func withLeakedDescriptor<T>(_ body: () async throws -> T) async rethrows -> T {
    var pair: [Int32] = [-1, -1]
    precondition(pipe(&pair) == 0)
    // Moved to the lowest free descriptors from 64 (F_DUPFD never replaces an open one; the
    // copies do not have close-on-exec), above those the child opens itself.
    let ends = pair.map { fcntl($0, F_DUPFD, 64) }
    pair.forEach { close($0) }
    defer { ends.forEach { close($0) } }
    #expect(ends.allSatisfy { $0 >= 64 && fcntl($0, F_GETFD) == 0 }, "\(ends) are open and inheritable")
    return try await body()
  }

  /// The descriptors `ls` finds open in itself (0, 1, 2, and the one it reads the directory with).
  static func descriptors(_ listing: String) -> [Int] {
    listing.split(separator: "\n").compactMap { Int($0) }.sorted()
  }

  @Test("a command sees only stdin, stdout and stderr")
  func commands() async throws {
    let runner = CommandRunner(options: .init(), logger: .init(label: "test"))
    let result = try await Self.withLeakedDescriptor {
      try await runner.run(["ls", "-1", "/proc/self/fd"], timeout: .seconds(30))
    }
    #expect(result.succeeded, "\(result.outputText)")
    #expect(Self.descriptors(result.outputText) == [0, 1, 2, 3], "\(result.outputText)")
  }

  @Test("exec mode's child sees only stdin, stdout and stderr")
  func execChild() async throws {
    let directory = TemporaryDirectory("etcsync-fds")
    let listing = directory.path + "/fds"
    let pid = try await Self.withLeakedDescriptor {
      try ProcessSpawner.spawnInheritingStdio(["sh", "-c", "exec ls -1 /proc/self/fd > '\(listing)'"], environment: nil)
    }
    ChildProcesses.shared.waitUntilEnded(pid)
    #expect(ChildProcesses.shared.reap(pid) == 0)
    let text = try String(contentsOfFile: listing, encoding: .utf8)
    #expect(Self.descriptors(text) == [0, 1, 2, 3], "\(text)")
  }
}
