@testable import EtcSync
import Foundation
import Testing

/// ``StartupPages``: the executable's read-only mappings are paged out, which shows in their
/// resident size (this test binary's own, from /proc/self/smaps).
@Suite("Start-up pages")
struct StartupPagesTests {
  /// Resident kB of the mappings backed by this executable, from /proc/self/smaps.
  static func executableResident() throws -> Int {
    let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
    var total = 0
    var inExecutable = false
    for line in try String(contentsOfFile: "/proc/self/smaps", encoding: .utf8).split(separator: "\n") {
      let fields = line.split(separator: " ", omittingEmptySubsequences: true)
      if let first = fields.first, first.contains("-"), fields.count >= 5, first.first?.isHexDigit == true {
        inExecutable = fields.count >= 6 && fields[5...].joined(separator: " ") == executable
      } else if inExecutable, fields.first == "Rss:", fields.count >= 2, let kB = Int(fields[1]) {
        total += kB
      }
    }
    return total
  }

  @Test("the executable's read-only pages are paged out (Linux 5.4+)")
  func pagesOut() throws {
    let before = try Self.executableResident()
    let advised = try #require(StartupPages.pageOutExecutable())
    let after = try Self.executableResident()
    #expect(advised > 0, "madvise(MADV_PAGEOUT) was refused: a kernel older than 5.4?")
    // Other tests run meanwhile and fault some code back in, but far less than was dropped.
    #expect(after < before, "resident \(before) kB before, \(after) kB after")
  }
}
