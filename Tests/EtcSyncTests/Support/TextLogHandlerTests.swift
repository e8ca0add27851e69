@testable import EtcSync
import Foundation
import Glibc
import Logging
import Testing

@Suite("Text log lines")
struct TextLogHandlerTests {
  @Test("a key with control characters and newlines stays on one escaped line, in message and metadata")
  func escapesEveryField() throws {
    var fds: [Int32] = [0, 0]
    try #require(pipe(&fds) == 0)
    defer { close(fds[0]) }
    var handler = StreamLogHandler(label: "etcsync", stream: EscapingStandardError(fd: fds[1]))
    handler.logLevel = .info
    let logger = Logger(label: "etcsync") { _ in handler }
    let key = "/app/a\u{1b}[2J\nforged line\r\u{9b}"
    logger.warning("key \(key) rejected", metadata: ["etcd.key": "\(key)", "list": .array([.string(key)])])
    close(fds[1])
    var buffer = [UInt8](repeating: 0, count: 65_536)
    let count = read(fds[0], &buffer, buffer.count)
    let text = String(decoding: buffer[..<max(0, count)], as: UTF8.self)
    #expect(text.hasSuffix("\n"))
    #expect(text.dropLast().allSatisfy { !$0.isNewline }, "\(text.debugDescription)")
    #expect(!text.unicodeScalars.contains { $0 == "\u{1b}" || $0 == "\u{9b}" || $0 == "\r" })
    #expect(text.contains(#"etcd.key=/app/a\x1b[2J\nforged line\r\x9b"#), "\(text)")
    #expect(text.contains(#"key /app/a\x1b[2J\nforged line\r\x9b rejected"#), "\(text)")
  }
}
