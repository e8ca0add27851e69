import EtcSync
import Foundation
import Glibc
import Templates
import Testing

@Suite("Start-up cleanup of temp files")
struct TemporaryFileCleanupTests {
  @Test("temp files at any depth, stale revision directories and ..data_tmp are removed")
  func removesLeftovers() async throws {
    let dir = TemporaryDirectory()
    let swap = TreeSwap(root: dir("root"))
    try await swap.publish(["a": DesiredFile(bytes: Array("1".utf8))], revision: 1)
    let current = try #require(try swap.currentDirectory())
    try Disk.write(dir("root/.a.etcsync-tmp-0123456789abcdef"), "partial")
    try Disk.write(dir("root/plain/deep/.conf.etcsync-tmp-ff"), "partial")
    try Disk.write(dir("root/plain/deep/keep.conf"), "keep")
    try Disk.write(dir("root/plain/.hidden"), "keep")
    try Disk.write(dir("root/plain/etcsync-tmp-not-ours"), "keep")
    try Disk.write(dir("root/..7.abcdef/x"), "stale tree")
    try Disk.write(dir("root/..notours/x"), "keep")
    try Disk.symlink(current, at: dir("root/..data_tmp"))
    let report = try TemporaryFileCleanup.clean(root: dir("root"))
    #expect(Set(report.removedFiles) == [
      dir("root/.a.etcsync-tmp-0123456789abcdef"), dir("root/plain/deep/.conf.etcsync-tmp-ff"),
      dir("root/..data_tmp"),
    ])
    #expect(report.removedDirectories == [dir("root/..7.abcdef")])
    #expect(Disk.temporaryFiles(dir("root")).isEmpty)
    #expect(Disk.read(dir("root/plain/deep/keep.conf")) == "keep")
    #expect(Disk.read(dir("root/plain/.hidden")) == "keep")
    #expect(Disk.read(dir("root/plain/etcsync-tmp-not-ours")) == "keep")
    #expect(Disk.read(dir("root/..notours/x")) == "keep")
    #expect(Disk.read(dir("root/a")) == "1")
    #expect(try TemporaryFileCleanup.clean(root: dir("root")).isEmpty)
  }

  @Test("symlinks are never followed; a temp-named symlink is removed itself")
  func neverFollowsSymlinks() throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("outside/.x.etcsync-tmp-1"), "outside")
    try Disk.write(dir("outside/target"), "target")
    try FileManager.default.createDirectory(atPath: dir("root"), withIntermediateDirectories: true)
    try Disk.symlink(dir("outside"), at: dir("root/linked"))
    try Disk.symlink(dir("outside/target"), at: dir("root/.t.etcsync-tmp-2"))
    let report = try TemporaryFileCleanup.clean(root: dir("root"))
    #expect(report.removedFiles == [dir("root/.t.etcsync-tmp-2")])
    #expect(Disk.read(dir("outside/.x.etcsync-tmp-1")) == "outside")
    #expect(Disk.read(dir("outside/target")) == "target")
    #expect(Disk.isSymlink(dir("root/linked")))
  }

  @Test("a missing root is not an error")
  func missingRoot() throws {
    let dir = TemporaryDirectory()
    #expect(try TemporaryFileCleanup.clean(root: dir("nope")).isEmpty)
  }
}
