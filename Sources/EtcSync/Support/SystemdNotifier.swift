import Foundation
import Glibc

/// Talks to systemd's notify socket ($NOTIFY_SOCKET), for `Type=notify` units.
///
/// The sd_notify(3) protocol by hand: one `AF_UNIX` datagram of newline-separated
/// `KEY=VALUE` assignments per message, on a fresh socket each time (messages are rare).
/// Failures are reported as `false` and never thrown: losing a notification must not stop
/// the agent.
public final class SystemdNotifier: Sendable {
  /// The socket address: an absolute path, or "@name" for the abstract namespace.
  public let socketPath: String

  /// Systemd reads notifications into a buffer of PIPE_BUF bytes and drops longer messages,
  /// so status texts are cut to this many UTF-8 bytes to keep `READY=1` and friends alive.
  static let maximumStatusBytes = 2048

  /// From the environment: nil when NOTIFY_SOCKET is unset or empty (not under systemd).
  /// `environment` defaults to ProcessInfo's.
  public static func fromEnvironment(
    _ environment: [String: String] = ProcessInfo.processInfo.environment
  ) -> SystemdNotifier? {
    guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty else { return nil }
    return SystemdNotifier(socketPath: path)
  }

  /// For a socket path given directly (tests). A path starting with "@" names a socket in
  /// Linux's abstract namespace.
  public init(socketPath: String) {
    self.socketPath = socketPath
  }

  /// Sends one datagram with the given assignments, e.g. `["READY=1", "STATUS=synced"]`,
  /// joined by newlines. Returns false (never throws) when the message cannot be sent.
  @discardableResult
  public func notify(_ assignments: [String]) -> Bool {
    let message = Array(assignments.joined(separator: "\n").utf8)
    // Systemd ignores messages with NUL bytes; an empty one would say nothing.
    guard !message.isEmpty, !message.contains(0), let address = Self.address(socketPath) else { return false }
    var storage = address.storage
    let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var sent: Int
    repeat {
      sent = withUnsafePointer(to: &storage) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
          message.withUnsafeBytes { bytes in
            sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), socketAddress, address.length)
          }
        }
      }
    } while sent < 0 && errno == EINTR
    return sent == message.count
  }

  /// Tells systemd the service is ready (`READY=1`), with a status line (`STATUS=`).
  @discardableResult
  public func ready(status: String) -> Bool {
    notify(["READY=1", "STATUS=" + Self.statusText(status)])
  }

  /// Updates the status line shown by `systemctl status` (`STATUS=`).
  @discardableResult
  public func status(_ text: String) -> Bool {
    notify(["STATUS=" + Self.statusText(text)])
  }

  /// Tells systemd the service is shutting down (`STOPPING=1`).
  @discardableResult
  public func stopping() -> Bool {
    notify(["STOPPING=1"])
  }

  /// Tells systemd the service is reloading (`RELOADING=1`), with `MONOTONIC_USEC=` set to
  /// CLOCK_MONOTONIC in microseconds, which `Type=notify-reload` (systemd ≥ 253) requires.
  /// Send `ready(status:)` once the reload is done.
  @discardableResult
  public func reloading() -> Bool {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    let microseconds = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
    return notify(["RELOADING=1", "MONOTONIC_USEC=\(microseconds)"])
  }

  /// Pings the service watchdog (`WATCHDOG=1`).
  @discardableResult
  public func watchdog() -> Bool {
    notify(["WATCHDOG=1"])
  }

  /// The watchdog interval from WATCHDOG_USEC, honouring WATCHDOG_PID (used only when that is
  /// unset or equals `getpid()`); nil when no watchdog is set. Agents ping at half of it.
  public static func watchdogInterval(
    _ environment: [String: String] = ProcessInfo.processInfo.environment
  ) -> Duration? {
    guard let text = environment["WATCHDOG_USEC"], let usec = UInt64(text), usec > 0,
          usec <= UInt64(Int64.max) else { return nil }
    if let pidText = environment["WATCHDOG_PID"] {
      guard let pid = pid_t(pidText), pid == getpid() else { return nil }
    }
    return .microseconds(Int64(usec))
  }

  /// `text` fit for a single `STATUS=` line: every line break (which systemd would take as
  /// the start of a new assignment) and NUL becomes a space, every other control character
  /// (C0, DEL, C1, the separators and bidirectional marks, which `systemctl status` would
  /// print to a terminal) is escaped as ``escapeControlCharacters(_:backslashes:)`` writes it,
  /// backslashes too, and it is cut to ``maximumStatusBytes`` on a character boundary (an
  /// escape is never cut in two).
  static func statusText(_ text: String) -> String {
    var result = ""
    var bytes = 0
    for character in text {
      let clean = character.isNewline || character.unicodeScalars.contains("\0")
        ? " " : escapeControlCharacters(String(character), backslashes: true)
      bytes += clean.utf8.count
      if bytes > maximumStatusBytes { break }
      result += clean
    }
    return result
  }

  /// A `sockaddr_un` for `path` and its length, or nil when the path is not absolute or
  /// abstract, or does not fit `sun_path` (a file system path needs room for its NUL).
  private static func address(_ path: String) -> (storage: sockaddr_un, length: socklen_t)? {
    var bytes = Array(path.utf8)
    guard bytes.count >= 2, bytes[0] == UInt8(ascii: "/") || bytes[0] == UInt8(ascii: "@"),
          !bytes.contains(0) else { return nil }
    let abstract = bytes[0] == UInt8(ascii: "@")
    if abstract { bytes[0] = 0 }
    var storage = sockaddr_un()
    storage.sun_family = sa_family_t(AF_UNIX)
    let capacity = MemoryLayout.size(ofValue: storage.sun_path)
    guard bytes.count + (abstract ? 0 : 1) <= capacity else { return nil }
    withUnsafeMutableBytes(of: &storage.sun_path) { $0.copyBytes(from: bytes) }
    let offset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path) ?? MemoryLayout<sa_family_t>.size
    // Abstract names are exactly their bytes; file system paths count their NUL.
    return (storage, socklen_t(offset + bytes.count + (abstract ? 0 : 1)))
  }
}
