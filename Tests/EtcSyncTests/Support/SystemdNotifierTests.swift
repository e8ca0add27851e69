@testable import EtcSync
import Dispatch
import Foundation
import Glibc
import Testing

/// A datagram socket standing in for systemd's notify socket: bound in a fresh temporary
/// directory (or in the abstract namespace), removed with the value.
final class NotifySocket {
  let path: String
  private let fd: Int32
  private let directory: String?

  /// Binds at `name` inside a fresh temporary directory, or at `name` itself when it starts
  /// with "@" (abstract namespace) or "/" (a path chosen by the test; its directory is owned
  /// by the caller).
  init(_ name: String = "notify") throws {
    if name.hasPrefix("@") || name.hasPrefix("/") {
      (path, directory) = (name, nil)
    } else {
      let base = NSTemporaryDirectory().hasSuffix("/") ? NSTemporaryDirectory() : NSTemporaryDirectory() + "/"
      let directory = base + "etcsync-notify-\(UUID().uuidString.prefix(12))"
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
      (path, self.directory) = (directory + "/" + name, directory)
    }
    fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
    try #require(fd >= 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    var bytes = Array(path.utf8)
    let abstract = bytes.first == UInt8(ascii: "@")
    if abstract { bytes[0] = 0 } else { bytes.append(0) }
    try #require(bytes.count <= MemoryLayout.size(ofValue: address.sun_path))
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
    let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
    let result = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    try #require(result == 0, "bind(\(path)): errno \(errno)")
  }

  deinit {
    close(fd)
    if let directory { try? FileManager.default.removeItem(atPath: directory) }
  }

  /// The messages until one starts with `prefix` (that one last), waiting at most `limit` in
  /// all (a hang guard: an agent that keeps sending WATCHDOG=1 would otherwise keep a loop that
  /// waits for STOPPING=1 going forever), polling without holding a thread of the test pool.
  func messages(until prefix: String, within limit: Duration = .seconds(90)) async throws -> [String] {
    try await self.messages(within: limit, until: { $0.hasPrefix(prefix) })
  }

  /// The messages until one satisfies `done` (that one last), waiting at most `limit` in all.
  func messages(within limit: Duration = .seconds(90), until done: (String) -> Bool) async throws -> [String] {
    let deadline = ContinuousClock.now + limit
    var messages: [String] = []
    while true {
      var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
      if poll(&poller, 1, 0) == 1 {
        let message = try self.receive()
        messages.append(message)
        if done(message) { return messages }
        continue
      }
      try #require(ContinuousClock.now < deadline, "the awaited message did not arrive on \(path) within \(limit); got \(messages)")
      try await Task.sleep(for: .milliseconds(10))
    }
  }

  /// The next datagram as text; fails after 60 s (a hang guard, not a timing test: a loaded
  /// CI machine has taken most of 10 s).
  func receive() throws -> String {
    var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    var ready: Int32
    repeat { ready = poll(&poller, 1, 60_000) } while ready < 0 && errno == EINTR
    try #require(ready == 1, "no datagram arrived on \(path)")
    var buffer = [UInt8](repeating: 0, count: 65_536)
    let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
    try #require(count >= 0, "recv: errno \(errno)")
    return String(decoding: buffer[..<count], as: UTF8.self)
  }
}

/// CLOCK_MONOTONIC in microseconds (Dispatch's uptime is that clock on Linux; `timespec`'s
/// fields are ambiguous between Glibc and CoreFoundation under MemberImportVisibility).
private func monotonicMicroseconds() -> UInt64 {
  DispatchTime.now().uptimeNanoseconds / 1_000
}

@Suite("systemd notify protocol")
struct SystemdNotifierTests {
  @Test("ready(status:) sends READY=1 and STATUS= in one datagram")
  func ready() throws {
    let socket = try NotifySocket()
    try #require(SystemdNotifier(socketPath: socket.path).ready(status: "synced revision 42"))
    #expect(try socket.receive() == "READY=1\nSTATUS=synced revision 42")
  }

  @Test("line breaks and NULs in a status become spaces")
  func statusLineBreaks() throws {
    let socket = try NotifySocket()
    let notifier = SystemdNotifier(socketPath: socket.path)
    try #require(notifier.status("one\ntwo\r\nthree\rfour\u{0}five"))
    #expect(try socket.receive() == "STATUS=one two three four five")
    try #require(notifier.ready(status: "bad\nREADY=0"))
    #expect(try socket.receive() == "READY=1\nSTATUS=bad READY=0")
  }

  @Test("an overlong status is cut so the message stays within systemd's buffer")
  func longStatus() throws {
    let socket = try NotifySocket()
    try #require(SystemdNotifier(socketPath: socket.path).ready(status: String(repeating: "é", count: 5_000)))
    let received = try socket.receive()
    #expect(received.hasPrefix("READY=1\nSTATUS=é"))
    #expect(received.utf8.count <= 4_096)
  }

  @Test("watchdog(), stopping() and notify(_:)")
  func otherMessages() throws {
    let socket = try NotifySocket()
    let notifier = SystemdNotifier(socketPath: socket.path)
    try #require(notifier.watchdog())
    #expect(try socket.receive() == "WATCHDOG=1")
    try #require(notifier.stopping())
    #expect(try socket.receive() == "STOPPING=1")
    try #require(notifier.notify(["EXTEND_TIMEOUT_USEC=5000000", "STATUS=x"]))
    #expect(try socket.receive() == "EXTEND_TIMEOUT_USEC=5000000\nSTATUS=x")
  }

  @Test("reloading() sends RELOADING=1 with the monotonic clock in microseconds")
  func reloading() throws {
    let socket = try NotifySocket()
    let before = monotonicMicroseconds()
    try #require(SystemdNotifier(socketPath: socket.path).reloading())
    let after = monotonicMicroseconds()
    let lines = try socket.receive().split(separator: "\n", omittingEmptySubsequences: false)
    try #require(lines.count == 2)
    #expect(lines[0] == "RELOADING=1")
    #expect(lines[1].hasPrefix("MONOTONIC_USEC="))
    let value = try #require(UInt64(lines[1].dropFirst("MONOTONIC_USEC=".count)))
    #expect(value >= before && value <= after)
  }

  @Test("an abstract \"@name\" address")
  func abstractNamespace() throws {
    let socket = try NotifySocket("@etcsync-notify-test-\(UUID().uuidString)")
    try #require(SystemdNotifier(socketPath: socket.path).ready(status: "abstract"))
    #expect(try socket.receive() == "READY=1\nSTATUS=abstract")
  }

  @Test("a file system path of the longest length sun_path can hold (107 bytes)")
  func longestPath() throws {
    let base = NSTemporaryDirectory().hasSuffix("/") ? NSTemporaryDirectory() : NSTemporaryDirectory() + "/"
    let directory = base + "etcsync-n-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let padding = 107 - directory.utf8.count - 1
    try #require(padding > 0, "temporary directory path too long for this test")
    let path = directory + "/" + String(repeating: "s", count: padding)
    let socket = try NotifySocket(path)
    try #require(SystemdNotifier(socketPath: path).watchdog())
    #expect(try socket.receive() == "WATCHDOG=1")
  }

  @Test("fromEnvironment: nil without NOTIFY_SOCKET, a notifier with it")
  func fromEnvironment() throws {
    #expect(SystemdNotifier.fromEnvironment([:]) == nil)
    #expect(SystemdNotifier.fromEnvironment(["NOTIFY_SOCKET": ""]) == nil)
    let socket = try NotifySocket()
    let notifier = try #require(SystemdNotifier.fromEnvironment(["NOTIFY_SOCKET": socket.path]))
    #expect(notifier.socketPath == socket.path)
    try #require(notifier.status("from the environment"))
    #expect(try socket.receive() == "STATUS=from the environment")
  }

  @Test("watchdogInterval reads WATCHDOG_USEC and honours WATCHDOG_PID")
  func watchdogInterval() {
    #expect(SystemdNotifier.watchdogInterval(["WATCHDOG_USEC": "2000000"]) == .seconds(2))
    #expect(SystemdNotifier.watchdogInterval(["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "\(getpid())"]) == .seconds(2))
    let other = getpid() == 1 ? 2 : getpid() - 1
    #expect(SystemdNotifier.watchdogInterval(["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "\(other)"]) == nil)
    #expect(SystemdNotifier.watchdogInterval(["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "me"]) == nil)
    #expect(SystemdNotifier.watchdogInterval(["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": ""]) == nil)
    #expect(SystemdNotifier.watchdogInterval([:]) == nil)
    #expect(SystemdNotifier.watchdogInterval(["WATCHDOG_PID": "\(getpid())"]) == nil)
    for garbage in ["", "soon", "2s", "-1", "0", "1.5", "99999999999999999999999"] {
      #expect(SystemdNotifier.watchdogInterval(["WATCHDOG_USEC": garbage]) == nil, "\(garbage)")
    }
  }

  @Test("unusable addresses return false instead of throwing")
  func failures() throws {
    let socket = try NotifySocket()
    let directory = (socket.path as NSString).deletingLastPathComponent
    #expect(!SystemdNotifier(socketPath: directory + "/missing").ready(status: "x"))
    _ = FileManager.default.createFile(atPath: directory + "/plain", contents: Data())
    #expect(!SystemdNotifier(socketPath: directory + "/plain").watchdog())
    #expect(!SystemdNotifier(socketPath: "/" + String(repeating: "x", count: 107)).watchdog())
    #expect(!SystemdNotifier(socketPath: directory + "/" + String(repeating: "x", count: 200)).watchdog())
    #expect(!SystemdNotifier(socketPath: "@" + String(repeating: "x", count: 108)).watchdog())
    #expect(!SystemdNotifier(socketPath: "relative/notify").watchdog())
    #expect(!SystemdNotifier(socketPath: "@").watchdog())
    #expect(!SystemdNotifier(socketPath: socket.path).notify([]))
    #expect(!SystemdNotifier(socketPath: socket.path).notify(["STATUS=a\u{0}b"]))
  }

  @Test("statusText: line breaks and NUL become spaces, every other control character and backslash is escaped, and an escape is never cut")
  func statusTextEscapes() {
    #expect(SystemdNotifier.statusText("a\nb\r\nc\u{0}d") == "a b c d")
    #expect(SystemdNotifier.statusText("x\u{1b}[2J\u{7f}\u{9b}\u{202e}\t\\n") == #"x\x1b[2J\x7f\x9b\u{202e}\t\\n"#)
    #expect(SystemdNotifier.statusText("plain é 日本") == "plain é 日本")
    let long = SystemdNotifier.statusText(String(repeating: "a", count: SystemdNotifier.maximumStatusBytes - 2) + "\u{1b}\u{1b}")
    #expect(long == String(repeating: "a", count: SystemdNotifier.maximumStatusBytes - 2), "the 4-byte escape does not fit whole")
    #expect(!SystemdNotifier.statusText(String(repeating: "\u{1b}", count: 5_000)).unicodeScalars.contains { $0.value < 0x20 })
    #expect(SystemdNotifier.statusText(String(repeating: "\u{1b}", count: 5_000)).utf8.count <= SystemdNotifier.maximumStatusBytes)
  }
}
