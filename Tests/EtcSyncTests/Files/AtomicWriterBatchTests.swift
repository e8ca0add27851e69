import EtcSync
import Foundation
import Glibc
import Templates
import Testing

@Suite("Atomic writer batches")
struct AtomicWriterBatchTests {
  static func file(_ text: String) -> DesiredFile { DesiredFile(bytes: Array(text.utf8)) }

  @Test("a batch larger than one group writes every file; one failure spares the rest")
  func batch() async throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("root/same"), "same")
    try Disk.write(dir("root/keep/rejected"), "old")
    try Disk.write(dir("outside/x"), "outside")
    try Disk.symlink(dir("outside"), at: dir("root/evil"))
    var files: [ExactString: DesiredFile] = [:]
    for index in 0..<300 { files["d\(index % 7)/sub/f\(index)"] = Self.file("v\(index)") }
    files["same"] = Self.file("same")
    files["evil/x"] = Self.file("pwned")
    files["keep/rejected"] = Self.file("REJECT me")
    let writer = AtomicWriter(root: dir("root"))
    let report = await writer.write(files) { staged in
      if Disk.read(staged)?.hasPrefix("REJECT") == true { throw CommandError(.failed, argv: ["check"]) }
    }
    #expect(report.outcomes.count == 301)
    #expect(report.outcomes["same"] == .unchanged)
    #expect(report.outcomes["d3/sub/f3"] == .created)
    #expect(Set(report.failures.keys) == ["evil/x", "keep/rejected"])
    #expect(report.failures["evil/x"]?.code == .symlinkRefused)
    #expect(report.failures["keep/rejected"]?.code == .checkFailed)
    for index in [0, 127, 128, 255, 299] {
      #expect(Disk.read(dir("root/d\(index % 7)/sub/f\(index)")) == "v\(index)")
    }
    #expect(Disk.read(dir("root/keep/rejected")) == "old")
    #expect(Disk.read(dir("outside/x")) == "outside")
    #expect(Disk.temporaryFiles(dir.path).isEmpty)
    let again = await writer.write(files.filter { !$0.key.string.hasPrefix("evil") && !$0.key.string.hasPrefix("keep") })
    #expect(again.outcomes.values.allSatisfy { $0 == .unchanged } && again.failures.isEmpty)
  }
}
