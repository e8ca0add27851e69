import EtcSync
import Foundation
import Glibc
import Testing

/// `AtomicWriter.hash(_:sizeLimit:)`, which drift checks use: streamed, bounded, no symlinks.
@Suite("Atomic writer: streamed hash")
struct AtomicWriterHashTests {
  @Test("the streamed hash equals the hash of the bytes, across 64 KiB chunks")
  func equalsWholeHash() throws {
    let dir = TemporaryDirectory()
    var bytes = [UInt8]()
    for index in 0..<(200 * 1024 + 17) { bytes.append(UInt8(truncatingIfNeeded: index &* 31 &+ 7)) }
    try Disk.write(dir("root/small"), "hello")
    try Data(bytes).write(to: URL(fileURLWithPath: dir("root/big")))
    let writer = AtomicWriter(root: dir("root"))
    #expect(writer.hash("big", sizeLimit: 1 << 20) == .hash(ContentHash(of: bytes)))
    #expect(writer.hash("small", sizeLimit: 5) == .hash(ContentHash(of: Array("hello".utf8))))
    #expect(writer.hash("small", sizeLimit: 4) == .tooLarge)
    #expect(writer.hash("missing", sizeLimit: 10) == .absent)
    #expect(writer.hash("gone/missing", sizeLimit: 10) == .absent)
  }

  @Test("a huge sparse file is not read, a symlink or FIFO is unreadable, never followed")
  func boundedAndNoFollow() throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("root/x"), "x")
    // 64 GiB of holes: reading it whole would take minutes and all memory.
    #expect(truncate(dir("root/x"), 64 << 30) == 0)
    try Disk.write(dir("outside"), "secret")
    try Disk.symlink(dir("outside"), at: dir("root/link"))
    #expect(mkfifo(dir("root/fifo"), 0o600) == 0)
    let writer = AtomicWriter(root: dir("root"))
    #expect(writer.hash("x", sizeLimit: 1 << 30) == .tooLarge)
    #expect(writer.hash("link", sizeLimit: 1 << 30) == .unreadable)
    #expect(writer.hash("fifo", sizeLimit: 1 << 30) == .unreadable)
  }
}
