import EtcSync
import Foundation
import Glibc
import Templates
import Testing

/// A new revision hard-links the files the current one already holds as wanted
/// (`TreeSwap.Options.reuseUnchanged`), and writes the rest: checked by inode against the
/// previous revision, and by content against the wanted tree.
@Suite("Tree swap: unchanged files reused")
struct TreeSwapReuseTests {
  static func file(_ text: String, mode: mode_t? = nil) -> DesiredFile {
    DesiredFile(bytes: Array(text.utf8), attributes: FileAttributes(mode: mode))
  }

  /// The inode of a file of the revision `..data` points at.
  static func inode(_ root: String, _ path: String) -> ino_t? {
    Disk.lstat(root + "/..data/" + path)?.st_ino
  }

  @Test("one changed key: its file is new, the others are the previous revision's files, linked; the tree reads as wanted")
  func linksUnchanged() async throws {
    let dir = TemporaryDirectory()
    let swap = TreeSwap(root: dir("root"))
    let first: [ExactString: DesiredFile] = ["a": Self.file("1"), "b/c": Self.file("2"), "d/e/f": Self.file("3", mode: 0o600)]
    try await swap.publish(first, revision: 1)
    let before = ["a", "b/c", "d/e/f"].map { Self.inode(dir("root"), $0) }
    var second = first
    second["b/c"] = Self.file("changed")
    second["g"] = Self.file("new")
    try await swap.publish(second, revision: 2)
    #expect(Self.inode(dir("root"), "a") == before[0], "unchanged: linked")
    #expect(Self.inode(dir("root"), "d/e/f") == before[2], "unchanged, mode 0600: linked")
    #expect(Self.inode(dir("root"), "b/c") != before[1], "changed: written")
    #expect(Disk.read(dir("root/a")) == "1" && Disk.read(dir("root/b/c")) == "changed" && Disk.read(dir("root/d/e/f")) == "3")
    #expect(Disk.read(dir("root/g")) == "new")
    #expect(Disk.lstat(dir("root/..data/d/e/f"))?.st_mode == S_IFREG | 0o600)
    // The previous revision is gone: each file has one link again.
    #expect(Disk.lstat(dir("root/..data/a"))?.st_nlink == 1)
    #expect(Disk.names(dir("root")).filter { $0.hasPrefix("..") && $0 != "..data" }.count == 1)
  }

  @Test("a file whose mode or bytes differ from the wanted one is written, never linked")
  func differentAttributesOrBytesAreWritten() async throws {
    let dir = TemporaryDirectory()
    let swap = TreeSwap(root: dir("root"))
    try await swap.publish(["a": Self.file("x", mode: 0o644), "b": Self.file("y")], revision: 1)
    let a = Self.inode(dir("root"), "a")
    // Changed in place behind the agent's back (a local edit of the live file).
    try Disk.write(dir("root/..data/b"), "edited")
    let b = Self.inode(dir("root"), "b")
    try await swap.publish(["a": Self.file("x", mode: 0o640), "b": Self.file("y")], revision: 2)
    #expect(Self.inode(dir("root"), "a") != a, "another mode: a new file")
    #expect(Disk.lstat(dir("root/..data/a"))?.st_mode == S_IFREG | 0o640)
    #expect(Self.inode(dir("root"), "b") != b, "the edited file is not carried over")
    #expect(Disk.read(dir("root/b")) == "y")
  }

  @Test("reuseUnchanged off (write-back mappings): every file of a new revision is written")
  func reuseOff() async throws {
    let dir = TemporaryDirectory()
    let swap = TreeSwap(root: dir("root"), options: .init(reuseUnchanged: false))
    try await swap.publish(["a": Self.file("1"), "b": Self.file("2")], revision: 1)
    let a = Self.inode(dir("root"), "a")
    try await swap.publish(["a": Self.file("1"), "b": Self.file("3")], revision: 2)
    #expect(Self.inode(dir("root"), "a") != a)
    #expect(Disk.read(dir("root/a")) == "1" && Disk.read(dir("root/b")) == "3")
  }
}
