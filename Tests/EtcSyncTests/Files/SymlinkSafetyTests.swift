import EtcSync
import Foundation
import Glibc
import Templates
import Testing

/// Nothing is ever written outside a mapping's root, whatever symlinks are planted under it.
@Suite("Symlinks planted under the root")
struct SymlinkSafetyTests {
  static let file = DesiredFile(bytes: Array("payload".utf8))

  @Test("a symlinked directory component is refused, nothing lands outside")
  func symlinkedDirectory() async throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("outside/victim"), "secret")
    try FileManager.default.createDirectory(atPath: dir("root/a"), withIntermediateDirectories: true)
    try Disk.symlink(dir("outside"), at: dir("root/a/b"))
    try Disk.symlink("../outside", at: dir("root/rel"))
    let writer = AtomicWriter(root: dir("root"))
    for path in ["a/b/victim", "a/b/new/file", "rel/victim", "rel/new"] {
      let error = await #expect(throws: FileError.self) { try await writer.write(Self.file, to: path) }
      #expect(error?.code == .symlinkRefused)
      #expect(error?.description.contains("refusing to follow a symlink") == true)
    }
    #expect(Disk.names(dir("outside")) == ["victim"])
    #expect(Disk.read(dir("outside/victim")) == "secret")
    let deleteError = #expect(throws: FileError.self) { try writer.delete(relativePath: "a/b/victim") }
    #expect(deleteError?.code == .symlinkRefused)
    #expect(Disk.read(dir("outside/victim")) == "secret")
  }

  @Test("a symlink as the target itself is replaced, its target is untouched")
  func symlinkedTarget() async throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("outside/victim"), "secret", mode: 0o600)
    try FileManager.default.createDirectory(atPath: dir("root"), withIntermediateDirectories: true)
    try Disk.symlink(dir("outside/victim"), at: dir("root/target"))
    try Disk.symlink(dir("outside/absent"), at: dir("root/dangling"))
    let writer = AtomicWriter(root: dir("root"))
    #expect(try writer.needsWrite(Self.file, to: "target"))
    #expect(try writer.contents(of: "target") == nil)
    #expect(try await writer.write(Self.file, to: "target") == .replaced)
    #expect(try await writer.write(Self.file, to: "dangling") == .replaced)
    #expect(!Disk.isSymlink(dir("root/target")))
    #expect(Disk.read(dir("root/target")) == "payload")
    // The symlink's 0777 is not "the existing mode": the default applies.
    #expect(Disk.lstat(dir("root/target"))?.st_mode == S_IFREG | 0o644)
    #expect(Disk.read(dir("outside/victim")) == "secret")
    #expect(Disk.names(dir("outside")) == ["victim"])
  }

  @Test("a symlink swapped in between writes is caught on the next write")
  func symlinkAppearsLater() async throws {
    let dir = TemporaryDirectory()
    let writer = AtomicWriter(root: dir("root"))
    try await writer.write(Self.file, to: "conf/app.conf")
    try FileManager.default.removeItem(atPath: dir("root/conf"))
    try FileManager.default.createDirectory(atPath: dir("outside"), withIntermediateDirectories: true)
    try Disk.symlink(dir("outside"), at: dir("root/conf"))
    let error = await #expect(throws: FileError.self) {
      try await writer.write(Self.file, to: "conf/app.conf")
    }
    #expect(error?.code == .symlinkRefused)
    #expect(Disk.names(dir("outside")).isEmpty)
  }

  @Test("the tree swap ignores a planted ..data and never writes through a symlink")
  func treeSwapPlantedLinks() async throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("outside/victim"), "secret")
    try FileManager.default.createDirectory(atPath: dir("root"), withIntermediateDirectories: true)
    try Disk.symlink(dir("outside"), at: dir("root/..data"))
    try Disk.symlink(dir("outside/victim"), at: dir("root/victim"))
    let swap = TreeSwap(root: dir("root"))
    let files: [ExactString: DesiredFile] = ["victim": Self.file, "sub/x": Self.file]
    let outcome = try await swap.publish(files, revision: 7)
    guard case .published(let name) = outcome else {
      Issue.record("expected a publish, got \(outcome)")
      return
    }
    #expect(Disk.link(dir("root/..data")) == name)
    #expect(Disk.link(dir("root/victim")) == "..data/victim")
    #expect(Disk.read(dir("root/victim")) == "payload")
    #expect(Disk.read(dir("outside/victim")) == "secret")
    #expect(Disk.names(dir("outside")) == ["victim"])
  }
}
