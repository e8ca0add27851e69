import EtcdClient
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A real etcd process for tests, examples and benchmarks: free loopback ports, a temporary
/// data directory (on tmpfs when `/dev/shm` exists), and the controls fault tests need (kill -9,
/// restart, SIGSTOP/SIGCONT). The binary is `$ETCD_BIN`, else `/usr/bin/etcd` (Debian's
/// `etcd-server`).
public final class EtcdServer: @unchecked Sendable {
  /// The member's name in its cluster.
  public let name: String
  public let clientPort: Int
  public let peerPort: Int
  public let dataDir: String
  public let logFile: String
  /// TLS files when the server was started with TLS.
  public let tls: TestCertificates?
  /// The etcd binary in use.
  public let binary: String
  let initialCluster: String
  let clusterToken: String
  let extraArguments: [String]

  private let lock = NSLock()
  private var process: ChildProcess?
  private var isPaused = false

  /// The client URL, e.g. `http://127.0.0.1:40123`.
  public var endpoint: String { "\(self.tls == nil ? "http" : "https")://127.0.0.1:\(self.clientPort)" }
  public var peerURL: String { "http://127.0.0.1:\(self.peerPort)" }
  /// The OS process ID while running.
  public var pid: Int32? { self.lock.withLock { self.process?.processIdentifier } }

  init(name: String, clientPort: Int, peerPort: Int, dataDir: String, initialCluster: String,
       clusterToken: String, tls: TestCertificates?, extraArguments: [String]) {
    self.name = name
    self.clientPort = clientPort
    self.peerPort = peerPort
    self.dataDir = dataDir
    self.logFile = dataDir + ".log"
    self.initialCluster = initialCluster
    self.clusterToken = clusterToken
    self.tls = tls
    self.extraArguments = extraArguments
    self.binary = ProcessInfo.processInfo.environment["ETCD_BIN"] ?? "/usr/bin/etcd"
  }

  /// Starts a single-member etcd and waits until it serves requests. With `tls`, its
  /// certificate names `serverNames` (openssl's subjectAltName syntax); without `IP:127.0.0.1`,
  /// ``configuration()`` checks it against its first DNS name.
  public static func start(
    tls: Bool = false, serverNames: String = "IP:127.0.0.1,DNS:localhost", arguments: [String] = []
  ) async throws -> EtcdServer {
    try await StartGate.passing {
      var lastError: (any Error)?
      for _ in 0..<3 {  // a port taken between choosing and binding: choose again
        let ports = try freePorts(2)
        let dir = try makeTempDirectory(prefix: "etcd")
        let name = "m0"
        let certs = tls ? try TestCertificates.make(in: dir + "-tls", serverNames: serverNames) : nil
        let server = EtcdServer(
          name: name, clientPort: ports[0], peerPort: ports[1], dataDir: dir + "/data",
          initialCluster: "\(name)=http://127.0.0.1:\(ports[1])", clusterToken: "t-\(ports[0])",
          tls: certs, extraArguments: arguments)
        do {
          try server.launch()
          try await server.waitUntilReady()
          return server
        } catch {
          lastError = error
          server.destroy()
        }
      }
      throw lastError!
    }
  }

  /// Runs `body` with a fresh single-member etcd, and removes it afterwards.
  public static func with<T>(
    tls: Bool = false, serverNames: String = "IP:127.0.0.1,DNS:localhost", arguments: [String] = [],
    _ body: (EtcdServer) async throws -> T
  ) async throws -> T {
    let server = try await EtcdServer.start(tls: tls, serverNames: serverNames, arguments: arguments)
    defer { server.destroy() }
    return try await body(server)
  }

  /// A client configuration for this server (TLS files included when it uses TLS).
  public func configuration() -> EtcdConfiguration {
    var configuration = try! EtcdConfiguration(endpoints: [self.endpoint])
    if let tls = self.tls {
      configuration.tls = EtcdConfiguration.TLS(caFile: tls.caFile, certFile: tls.clientCertFile, keyFile: tls.clientKeyFile)
      // A certificate without 127.0.0.1 is checked against its first DNS name.
      let names = tls.serverNames.split(separator: ",")
      if !names.contains("IP:127.0.0.1"), let dns = names.first(where: { $0.hasPrefix("DNS:") }) {
        configuration.tls?.serverName = String(dns.dropFirst(4))
      }
    }
    configuration.dialTimeout = .seconds(10)
    return configuration
  }

  // MARK: Process control

  func arguments() -> [String] {
    let scheme = self.tls == nil ? "http" : "https"
    var args = [
      "--name", self.name, "--data-dir", self.dataDir,
      "--listen-client-urls", "\(scheme)://127.0.0.1:\(self.clientPort)",
      "--advertise-client-urls", "\(scheme)://127.0.0.1:\(self.clientPort)",
      "--listen-peer-urls", self.peerURL, "--initial-advertise-peer-urls", self.peerURL,
      "--initial-cluster", self.initialCluster, "--initial-cluster-token", self.clusterToken,
      "--initial-cluster-state", "new",
      "--heartbeat-interval", "50", "--election-timeout", "500",
      "--logger", "zap", "--log-outputs", "stderr",
    ]
    if let tls = self.tls {
      args += ["--cert-file", tls.serverCertFile, "--key-file", tls.serverKeyFile,
               "--trusted-ca-file", tls.caFile, "--client-cert-auth"]
    }
    return args + self.extraArguments
  }

  func launch() throws {
    OrphanReaper.reap()
    let process = try launchLogged(self.binary, self.arguments(), appendingTo: self.logFile)
    OrphanReaper.register(pid: process.processIdentifier, dataDir: self.dataDir)
    self.lock.withLock {
      self.process = process
      self.isPaused = false
    }
  }

  /// Waits until the member answers a Status request and knows a leader.
  public func waitUntilReady(timeout: Duration = .seconds(30)) async throws {
    let deadline = ContinuousClock.now + timeout
    var configuration = self.configuration()
    configuration.requestTimeout = .seconds(1)
    configuration.retryReads = false
    try await withEtcdClient(configuration) { client in
      while true {
        if let process = self.lock.withLock({ self.process }), !process.isRunning {
          throw TestSupportError("etcd \(self.name) exited during start-up; see \(self.logFile): \(self.logTail())")
        }
        if let status = try? await client.status(timeout: .seconds(1)), status.leader != 0 {
          // The answer must come from this etcd, not from another process on its port.
          if let pid = self.pid, ownsListeningSocket(pid: pid, port: self.clientPort) == false {
            throw TestSupportError("etcd \(self.name)'s client port \(self.clientPort) is held by another process; see \(self.logFile): \(self.logTail())")
          }
          return
        }
        if ContinuousClock.now > deadline {
          throw TestSupportError("etcd \(self.name) not ready after \(timeout); see \(self.logFile): \(self.logTail())")
        }
        try await Task.sleep(for: .milliseconds(50))
      }
    }
  }

  /// Sends a signal to the process.
  public func signal(_ signal: Int32) {
    if let pid = self.pid { kill(pid, signal) }
  }

  /// kill -9, and waits for the process to be gone.
  public func kill9() {
    guard let process = self.lock.withLock({ self.process }) else { return }
    if self.lock.withLock({ self.isPaused }) { process.signal(SIGCONT) }
    process.signal(SIGKILL)
    process.waitUntilExit(within: .seconds(30))
    OrphanReaper.unregister(pid: process.processIdentifier)
    self.lock.withLock { self.process = nil }
  }

  /// SIGTERM, and waits for a clean exit (SIGKILL after 30 s).
  public func stop() {
    guard let process = self.lock.withLock({ self.process }) else { return }
    if self.lock.withLock({ self.isPaused }) { process.signal(SIGCONT) }
    process.terminate()
    if !process.waitUntilExit(within: .seconds(30)) {
      process.signal(SIGKILL)
      process.waitUntilExit(within: .seconds(30))
    }
    OrphanReaper.unregister(pid: process.processIdentifier)
    self.lock.withLock { self.process = nil }
  }

  /// Starts the process again with the same data directory and ports.
  public func restart(waitUntilReady: Bool = true) async throws {
    self.kill9()
    try self.launch()
    if waitUntilReady { try await self.waitUntilReady() }
  }

  /// SIGSTOP: the process keeps its sockets but answers nothing. Returns true once every thread
  /// of the process is stopped (the signal is delivered asynchronously: a request sent right
  /// after `kill` was once answered by a member still running); false after 10 s, or at once
  /// when there is no process or it has exited (gone, or a zombie). It polls every millisecond,
  /// blocking its thread meanwhile (usually for a millisecond or two).
  @discardableResult public func pause() -> Bool {
    self.signal(SIGSTOP)
    self.lock.withLock { self.isPaused = true }
    guard let pid = self.pid else { return false }
    let deadline = ContinuousClock.now + .seconds(10)
    while ContinuousClock.now < deadline {
      if allThreadsStopped(pid: pid) { return true }
      // Gone or a zombie: it will never stop.
      guard let status = readWhole("/proc/\(pid)/status"), !status.contains("\nState:\tZ") else { return false }
      usleep(1000)
    }
    return false
  }

  /// SIGCONT after ``pause()``.
  public func resume() {
    self.signal(SIGCONT)
    self.lock.withLock { self.isPaused = false }
  }

  /// Kills the process and deletes its directories.
  public func destroy() {
    self.kill9()
    let parent = (self.dataDir as NSString).deletingLastPathComponent
    try? FileManager.default.removeItem(atPath: parent)
    try? FileManager.default.removeItem(atPath: parent + "-tls")
  }

  /// The last lines of the member's log, for error messages.
  public func logTail(lines: Int = 5) -> String {
    lastLines(of: self.logFile, lines)
  }

  deinit {
    if let process = self.process, process.isRunning {
      process.signal(SIGCONT)
      process.signal(SIGKILL)
    }
  }
}

/// Starts `binary` with its output (stdout and stderr) appended to `logFile`, no stdin.
func launchLogged(_ binary: String, _ arguments: [String], appendingTo logFile: String) throws -> ChildProcess {
  try ChildProcess([binary] + arguments, output: logFile, error: logFile)
}

/// The last `lines` lines of a log file, for error messages.
func lastLines(of logFile: String, _ lines: Int) -> String {
  let text = (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
  return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
}

/// A failure of the test support itself (etcd did not start, openssl failed, …).
public struct TestSupportError: Error, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}

/// Free TCP ports on 127.0.0.1, found by binding port 0.
public func freePorts(_ count: Int) throws -> [Int] {
  var sockets: [Int32] = []
  defer { sockets.forEach { close($0) } }
  var ports: [Int] = []
  var tries = 0
  while ports.count < count {
    tries += 1
    guard tries < 1000 else { throw TestSupportError("no free port after \(tries) tries") }
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestSupportError("socket() failed: errno \(errno)") }
    sockets.append(fd)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &addr) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    guard bound else { throw TestSupportError("bind() failed: errno \(errno)") }
    let port = Int(UInt16(bigEndian: addr.sin_port))
    // A port this process handed out before may be bound again later (a member restarted
    // after stop); never hand it to another server (the socket stays open while choosing).
    if handedOutPorts.withLock({ $0.insert(port).inserted }) { ports.append(port) }
  }
  return ports
}

/// Every port ``freePorts(_:)`` returned in this process.
private let handedOutPorts = Mutex<Set<Int>>([])

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port` (nil: /proc cannot
/// tell). A server whose port another process took in the moment between choosing and
/// binding exits, and a client would reach that other process instead.
func ownsListeningSocket(pid: Int32, port: Int) -> Bool? {
  // /proc files report a size of 0: read to the end by hand, not by the reported size.
  guard let table = readWhole("/proc/net/tcp"),
    let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")
  else { return nil }
  let suffix = ":" + String(port, radix: 16, uppercase: true).leftPadded(to: 4)
  var inodes: Set<Substring> = []
  for line in table.split(separator: "\n").dropFirst() {
    let fields = line.split(separator: " ")
    // local address, state 0A (LISTEN), inode
    if fields.count > 9, fields[3] == "0A", fields[1].hasSuffix(suffix) { inodes.insert(fields[9]) }
  }
  for fd in fds {
    guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"),
      target.hasPrefix("socket:[")
    else { continue }
    if inodes.contains(target.dropFirst(8).dropLast()) { return true }
  }
  return false
}

/// A file's whole text, read until end of file.
private func readWhole(_ path: String) -> String? {
  let fd = open(path, O_RDONLY | O_CLOEXEC)
  guard fd >= 0 else { return nil }
  defer { close(fd) }
  var bytes: [UInt8] = []
  var chunk = [UInt8](repeating: 0, count: 65_536)
  while true {
    let got = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    if got < 0 { if errno == EINTR { continue }; return nil }
    if got == 0 { break }
    bytes.append(contentsOf: chunk[0..<got])
  }
  return String(decoding: bytes, as: UTF8.self)
}

extension String {
  fileprivate func leftPadded(to width: Int) -> String {
    String(repeating: "0", count: max(0, width - self.count)) + self
  }
}

/// A new empty directory under /dev/shm (tmpfs: no fsync cost) or the temp directory.
public func makeTempDirectory(prefix: String) throws -> String {
  let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
  var template = Array("\(base)/\(prefix)-XXXXXX".utf8CString)
  guard let result = mkdtemp(&template) else { throw TestSupportError("mkdtemp failed: errno \(errno)") }
  return String(cString: result)
}

/// Whether every thread of `pid` is in the stopped state (`T` in `/proc/PID/task/TID/stat`).
func allThreadsStopped(pid: Int32) -> Bool {
  guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task"), !tasks.isEmpty else { return false }
  for task in tasks {
    // "PID (comm) S ...": the state is the field after the last ")" (a name may hold one).
    guard let stat = readWhole("/proc/\(pid)/task/\(task)/stat"), let close = stat.utf8.lastIndex(of: UInt8(ascii: ")")),
      stat.utf8[stat.utf8.index(after: close)...].dropFirst().first == UInt8(ascii: "T")
    else { return false }
  }
  return true
}
