import EtcSync
import Glibc
import Templates
import Testing

/// The writer's precondition for write-back mappings (``ExpectedFile``): a file that no longer
/// holds what the caller expects (a local edit made after the scan) is neither replaced nor
/// deleted, whether the edit came before the file was staged or between staging and rename.
@Suite("Atomic writer: expected files")
struct ExpectedFileTests {
  static func file(_ text: String) -> DesiredFile { DesiredFile(bytes: Array(text.utf8)) }
  static func hash(_ text: String) -> ExpectedFile { .content(ContentHash(of: Array(text.utf8))) }

  @Test("a batch replaces only files that hold what is expected")
  func batch() async throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("root/recorded"), "old")
    try Disk.write(dir("root/edited"), "edited locally")
    try Disk.write(dir("root/appeared"), "made locally")
    try Disk.write(dir("root/unnamed"), "anything")
    try Disk.write(dir("root/same"), "new")
    let files: [ExactString: DesiredFile] = [
      "recorded": Self.file("new"), "edited": Self.file("new"), "appeared": Self.file("new"),
      "unnamed": Self.file("new"), "same": Self.file("new"), "fresh": Self.file("new"),
    ]
    let expected: [ExactString: ExpectedFile] = [
      "recorded": Self.hash("old"), "edited": Self.hash("old"), "appeared": .absent, "same": Self.hash("old"), "fresh": .absent,
    ]
    let report = await AtomicWriter(root: dir("root")).write(files, expected: expected)
    #expect(report.failures.isEmpty)
    #expect(report.outcomes == [
      "recorded": .replaced, "edited": .keptEdit, "appeared": .keptEdit, "unnamed": .replaced, "same": .unchanged, "fresh": .created,
    ])
    #expect(Disk.read(dir("root/edited")) == "edited locally")
    #expect(Disk.read(dir("root/appeared")) == "made locally")
    for name in ["recorded", "unnamed", "same", "fresh"] { #expect(Disk.read(dir("root/" + name)) == "new") }
    #expect(Disk.temporaryFiles(dir.path).isEmpty)
  }

  @Test("an edit between staging and rename is kept", arguments: ["rename", "in place", "delete", "create"])
  func raced(edit: String) async throws {
    let dir = TemporaryDirectory()
    let target = dir("root/f")
    if edit != "create" { try Disk.write(target, "old") }
    let expected: ExpectedFile = edit == "create" ? .absent : Self.hash("old")
    // The check runs on the staged file right before its rename: the edit lands there.
    let report = await AtomicWriter(root: dir("root")).write(["f": Self.file("new")], check: { _ in
      switch edit {
      case "rename":
        try Disk.write(target + ".tmp-edit", "edited")
        _ = rename(target + ".tmp-edit", target)
      case "in place": try Disk.write(target, "olx")  // same inode and size: only the bytes differ
      case "delete": _ = unlink(target)
      default: try Disk.write(target, "created")
      }
    }, expected: ["f": expected])
    #expect(report.outcomes["f"] == .keptEdit)
    #expect(Disk.read(target) == ["rename": "edited", "in place": "olx", "delete": nil, "create": "created"][edit]!)
    #expect(Disk.temporaryFiles(dir.path).isEmpty)
  }

  @Test("a batch past the syncfs threshold keeps edited files and removes their temp files")
  func largeBatch() async throws {
    let dir = TemporaryDirectory()
    var files: [ExactString: DesiredFile] = [:]
    var expected: [ExactString: ExpectedFile] = [:]
    for index in 0..<40 {
      try Disk.write(dir("root/f\(index)"), "old")
      files["f\(index)"] = Self.file("new")
      expected["f\(index)"] = Self.hash("old")
    }
    try Disk.write(dir("root/f3"), "edited before")
    // Edited after staging, through the check that runs right before each rename.
    let late = dir("root/f30")
    let report = await AtomicWriter(root: dir("root")).write(files, check: { staged in
      if staged.contains("/.f30.") { try? Disk.write(late, "edited late") }
    }, expected: expected)
    #expect(report.failures.isEmpty)
    #expect(report.outcomes["f3"] == .keptEdit && report.outcomes["f30"] == .keptEdit)
    #expect(report.outcomes.values.filter { $0 == .replaced }.count == 38)
    #expect(Disk.read(dir("root/f3")) == "edited before" && Disk.read(late) == "edited late")
    #expect(Disk.read(dir("root/f0")) == "new")
    #expect(Disk.temporaryFiles(dir.path).isEmpty)
  }

  @Test("a recorded file whose directory was removed since is not written, nor its directory made again")
  func removedDirectory() async throws {
    let dir = TemporaryDirectory()
    let writer = AtomicWriter(root: dir("root"))
    try Disk.write(dir("root/keep"), "x")
    let batch = await writer.write(["sub/f": Self.file("new"), "fresh/g": Self.file("new")],
                                   expected: ["sub/f": Self.hash("old"), "fresh/g": .absent])
    #expect(batch.outcomes == ["sub/f": .keptEdit, "fresh/g": .created])
    #expect(!Disk.exists(dir("root/sub")))
    #expect(try await writer.write(Self.file("new"), to: "gone/f", expected: Self.hash("old")) == .keptEdit)
    #expect(!Disk.exists(dir("root/gone")))
  }

  @Test("one file: replaced only while it holds what is expected, also after the fsync")
  func single() async throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("root/f"), "edited locally")
    let writer = AtomicWriter(root: dir("root"))
    #expect(try await writer.write(Self.file("new"), to: "f", expected: Self.hash("old")) == .keptEdit)
    #expect(Disk.read(dir("root/f")) == "edited locally")
    #expect(try await writer.write(Self.file("new"), to: "f", expected: Self.hash("edited locally")) == .replaced)
    #expect(Disk.read(dir("root/f")) == "new")
    // Edited after the comparison, before the rename.
    let target = dir("root/f")
    let racing = AtomicWriter(root: dir("root"), hook: { step, _ in
      if step == .afterFsync { try? Disk.write(target, "edited late") }
      return .proceed
    })
    #expect(try await racing.write(Self.file("newer"), to: "f", expected: Self.hash("new")) == .keptEdit)
    #expect(Disk.read(target) == "edited late")
    #expect(Disk.temporaryFiles(dir.path).isEmpty)
  }

  @Test("a delete removes only a file that holds what is expected")
  func delete() throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("root/a"), "edited")
    try Disk.write(dir("root/b"), "old")
    let writer = AtomicWriter(root: dir("root"))
    #expect(try writer.delete(relativePath: "a", expected: Self.hash("old")) == .keptEdit)
    #expect(try writer.delete(relativePath: "b", expected: Self.hash("old")) == .deleted)
    #expect(try writer.delete(relativePath: "c", expected: Self.hash("old")) == .absent)
    #expect(Disk.read(dir("root/a")) == "edited")
    #expect(Disk.read(dir("root/b")) == nil)
  }
}
