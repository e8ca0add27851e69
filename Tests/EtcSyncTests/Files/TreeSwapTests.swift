import EtcSync
import Foundation
import Glibc
import Templates
import Testing

@Suite("Tree swap")
struct TreeSwapTests {
  static func file(_ text: String, mode: mode_t? = nil) -> DesiredFile {
    DesiredFile(bytes: Array(text.utf8), attributes: FileAttributes(mode: mode))
  }

  static func tree(_ marker: String) -> [ExactString: DesiredFile] {
    ["a": file(marker), "b/c": file(marker), "d/e/f": file(marker)]
  }

  @Test("publishes the ..data layout")
  func layout() async throws {
    let dir = TemporaryDirectory()
    let swap = TreeSwap(root: dir("root"))
    let outcome = try await swap.publish(Self.tree("r1"), revision: 41)
    let name = try #require(try swap.currentDirectory())
    #expect(outcome == .published(directory: name))
    #expect(name.hasPrefix("..41."))
    #expect(Disk.link(dir("root/..data")) == name)
    #expect(Disk.link(dir("root/a")) == "..data/a")
    #expect(Disk.link(dir("root/b")) == "..data/b")
    #expect(Disk.names(dir("root")) == [name, "..data", "a", "b", "d"].sorted())
    #expect(Disk.read(dir("root/d/e/f")) == "r1")
    #expect(!Disk.isSymlink(dir("root/\(name)/b/c")))
    #expect(Disk.lstat(dir("root/\(name)/a"))?.st_mode == S_IFREG | 0o644)
    #expect(Disk.lstat(dir("root/\(name)/d/e"))?.st_mode == S_IFDIR | 0o755)
    #expect(Disk.temporaryFiles(dir.path).isEmpty)
  }

  @Test("an identical tree is not published again")
  func unchanged() async throws {
    let dir = TemporaryDirectory()
    let swap = TreeSwap(root: dir.path)
    try await swap.publish(Self.tree("same"), revision: 1)
    let name = try swap.currentDirectory()
    let inode = Disk.lstat(dir("a"))?.st_ino
    #expect(try await swap.publish(Self.tree("same"), revision: 2) == .unchanged)
    #expect(try swap.currentDirectory() == name)
    #expect(Disk.lstat(dir("a"))?.st_ino == inode)
    var changedMode = Self.tree("same")
    changedMode["a"] = Self.file("same", mode: 0o600)
    #expect(try await swap.publish(changedMode, revision: 3) != .unchanged)
  }

  @Test("names that appear and disappear get and lose their symlinks; foreign entries stay")
  func namesChange() async throws {
    let dir = TemporaryDirectory()
    let swap = TreeSwap(root: dir.path)
    try await swap.publish(Self.tree("r1"), revision: 1)
    let old = try #require(try swap.currentDirectory())
    try Disk.write(dir("foreign.txt"), "mine")
    try Disk.symlink("elsewhere", at: dir("foreign-link"))
    try await swap.publish(["a": Self.file("r2"), "z/y": Self.file("r2")], revision: 2)
    let new = try #require(try swap.currentDirectory())
    #expect(new != old)
    #expect(Disk.names(dir.path) == [new, "..data", "a", "foreign-link", "foreign.txt", "z"].sorted())
    #expect(Disk.read(dir("z/y")) == "r2")
    #expect(Disk.read(dir("foreign.txt")) == "mine")
    #expect(!Disk.exists(dir(old)))
  }

  @Test("the mode of the current tree's file is kept when none is configured")
  func modeInherited() async throws {
    let dir = TemporaryDirectory()
    let swap = TreeSwap(root: dir.path)
    try await swap.publish(["f": Self.file("1", mode: 0o600)], revision: 1)
    try await swap.publish(["f": Self.file("2"), "g": Self.file("2")], revision: 2)
    #expect(Disk.read(dir("f")) == "2")
    let name = try #require(try swap.currentDirectory())
    #expect(Disk.lstat(dir("\(name)/f"))?.st_mode == S_IFREG | 0o600)
    #expect(Disk.lstat(dir("\(name)/g"))?.st_mode == S_IFREG | 0o644)
  }

  @Test("a failing check keeps the old tree and removes the staged one")
  func failingCheck() async throws {
    let dir = TemporaryDirectory()
    let swap = TreeSwap(root: dir.path)
    try await swap.publish(Self.tree("r1"), revision: 1)
    let before = Disk.names(dir.path)
    let staged = StepLog()
    let error = await #expect(throws: FileError.self) {
      try await swap.publish(Self.tree("r2"), revision: 2) { path in
        staged.append(Disk.read("\(path)/b/c") ?? "-")
        throw CommandError(.failed, argv: ["check"])
      }
    }
    #expect(error?.code == .checkFailed)
    #expect(staged.entries == ["r2"])
    #expect(Disk.names(dir.path) == before)
    #expect(Disk.read(dir("b/c")) == "r1")
  }

  @Test("a real directory where a symlink must go is a conflict, detected before writing")
  func conflict() async throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("a/own"), "not etcsync's")
    let error = await #expect(throws: FileError.self) {
      try await TreeSwap(root: dir.path).publish(Self.tree("r1"), revision: 1)
    }
    #expect(error?.code == .conflict)
    #expect(Disk.names(dir.path) == ["a"])
  }

  @Test("invalid paths and file/directory conflicts are refused")
  func invalidTrees() async throws {
    let dir = TemporaryDirectory()
    let swap = TreeSwap(root: dir.path)
    for files: [ExactString: DesiredFile] in [["..data": Self.file("x")], ["a/../b": Self.file("x")], ["a": Self.file("x"), "a/b": Self.file("y")]] {
      let error = await #expect(throws: FileError.self) { try await swap.publish(files, revision: 1) }
      #expect(error?.code == .invalidPath)
    }
    #expect(Disk.names(dir.path).isEmpty)
  }

  @Test("an abandoned publish leaves the old tree current; cleanup removes the leftover")
  func simulatedCrash() async throws {
    let dir = TemporaryDirectory()
    try await TreeSwap(root: dir.path).publish(Self.tree("r1"), revision: 1)
    let crashing = TreeSwap(root: dir.path) { step, _ in step == .afterFsync ? .abandon : .proceed }
    let error = await #expect(throws: FileError.self) {
      try await crashing.publish(Self.tree("r2"), revision: 2)
    }
    #expect(error?.code == .interrupted)
    #expect(Disk.read(dir("a")) == "r1")
    #expect(Disk.names(dir.path).filter { $0.hasPrefix("..2.") }.count == 1)
    let report = try TemporaryFileCleanup.clean(root: dir.path)
    #expect(report.removedDirectories.count == 1)
    #expect(Disk.names(dir.path).filter { $0.hasPrefix("..2.") }.isEmpty)
    #expect(Disk.read(dir("d/e/f")) == "r1")
  }

  @Test("the per-file strategy writes changed files and deletes deleted keys only")
  func perFileStrategy() async throws {
    let dir = TemporaryDirectory()
    let writer = TreeWriter(root: dir.path, strategy: .perFile)
    var report = try await writer.apply(Self.tree("r1"), deleted: [], revision: 1)
    #expect(report.written == ["a", "b/c", "d/e/f"])
    var next = Self.tree("r1")
    next["a"] = Self.file("r2")
    next["d/e/f"] = nil
    report = try await writer.apply(next, deleted: ["d/e/f"], revision: 2)
    #expect(report.written == ["a"] && report.unchanged == 1 && report.deleted == ["d/e/f"])
    #expect(Disk.names(dir.path) == ["a", "b"])
    #expect(!Disk.isSymlink(dir("a")))
    let swapped = try await TreeWriter(root: dir("other"), strategy: .atomicSwap)
      .apply(next, deleted: [], revision: 2)
    #expect(swapped.publishedDirectory != nil)
  }
}
