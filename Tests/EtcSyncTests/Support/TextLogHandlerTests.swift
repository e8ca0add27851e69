@testable import EtcSync
import Foundation
import Glibc
import Logging
import Testing

@Suite("Text log lines")
struct TextLogHandlerTests {
  /// The one line `log` writes through a ``TextLogHandler`` on a pipe.
  static func line(_ log: (Logger) -> Void) throws -> String {
    var fds: [Int32] = [0, 0]
    try #require(pipe(&fds) == 0)
    defer { close(fds[0]) }
    var handler = TextLogHandler(label: "etcsync", fd: fds[1], metadataProvider: nil)
    handler.logLevel = .info
    log(Logger(label: "etcsync") { _ in handler })
    close(fds[1])
    var buffer = [UInt8](repeating: 0, count: 65_536)
    let count = read(fds[0], &buffer, buffer.count)
    return String(decoding: buffer[..<max(0, count)], as: UTF8.self)
  }

  @Test("a key with control characters and newlines stays on one escaped line, in message and metadata")
  func escapesEveryField() throws {
    let key = "/app/a\u{1b}[2J\nforged line\r\u{9b}"
    let text = try Self.line { $0.warning("key \(key) rejected", metadata: ["etcd.key": "\(key)", "list": .array([.string(key)])]) }
    #expect(text.hasSuffix("\n"))
    #expect(text.dropLast().allSatisfy { !$0.isNewline }, "\(text.debugDescription)")
    #expect(!text.unicodeScalars.contains { $0 == "\u{1b}" || $0 == "\u{9b}" || $0 == "\r" })
    // A space in the value: quoted.
    #expect(text.contains(#"etcd.key="/app/a\x1b[2J\nforged line\r\x9b""#), "\(text)")
    #expect(text.contains(#"key /app/a\x1b[2J\nforged line\r\x9b rejected"#), "\(text)")
    #expect(text.contains(" warning etcsync: "), "\(text)")
  }

  @Test("a backslash is escaped: a key holding the two characters \\n never reads as an escaped newline")
  func backslashes() throws {
    let text = try Self.line { $0.info("key /a\\nb and /a\nb", metadata: ["literal": "/a\\nb", "newline": "/a\nb"]) }
    #expect(text.contains(#"literal=/a\\nb newline=/a\nb"#), "\(text)")
    #expect(text.contains(#"key /a\\nb and /a\nb"#), "\(text)")
  }

  @Test("a metadata value with a space, = or \" is quoted (\" escaped), so it cannot look like a field of its own; simple values stay bare")
  func quoting() throws {
    let text = try Self.line {
      $0.info("m", metadata: [
        "a.key": "/app/x mapping.name=evil", "b.eq": "k=v", "c.quote": #"say "hi""#, "d.plain": "/app/x-1",
        "e.empty": "", "f.both": #"\" x"#,
      ])
    }
    #expect(text.contains(#": a.key="/app/x mapping.name=evil" b.eq="k=v" c.quote="say \"hi\"" d.plain=/app/x-1 e.empty="" f.both="\\\" x" [EtcSyncTests] m"#), "\(text)")
    // Read back: the fields between ": " and " [": exactly six, each key=value.
    #expect(!text.contains(" mapping.name=evil "), "\(text)")
  }

  @Test("the handler's own metadata and an error are written as fields too")
  func handlerMetadata() throws {
    var fds: [Int32] = [0, 0]
    try #require(pipe(&fds) == 0)
    defer { close(fds[0]) }
    var handler = TextLogHandler(label: "etcsync", fd: fds[1], metadataProvider: nil)
    handler[metadataKey: "mapping.name"] = "web app"
    Logger(label: "etcsync") { _ in handler }.info("hello")
    close(fds[1])
    var buffer = [UInt8](repeating: 0, count: 4_096)
    let text = String(decoding: buffer[..<max(0, read(fds[0], &buffer, buffer.count))], as: UTF8.self)
    #expect(text.contains(#" info etcsync: mapping.name="web app" [EtcSyncTests] hello"#), "\(text)")
  }
}
