import EtcdClient
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// etcd's own gRPC proxy (`etcd grpc-proxy start`, from the same binary as ``EtcdServer``) in
/// front of a server or cluster, on a free loopback port: the fan-out tier a fleet of agents
/// talks to. It coalesces identical watches, numbers watches itself and caches reads, so a
/// client that works against etcd may still misbehave through it.
public final class EtcdGRPCProxy: @unchecked Sendable {
  /// The proxy's listen port on 127.0.0.1.
  public let port: Int
  /// The etcd client endpoints it forwards to (`host:port`).
  public let backends: [String]
  public let logFile: String
  public let binary: String

  private let lock = NSLock()
  private var process: ChildProcess?

  /// The client URL, e.g. `http://127.0.0.1:40123`.
  public var endpoint: String { "http://127.0.0.1:\(self.port)" }
  /// The OS process ID while running.
  public var pid: Int32? { self.lock.withLock { self.process?.processIdentifier } }

  init(port: Int, backends: [String], logFile: String, binary: String) {
    self.port = port
    self.backends = backends
    self.logFile = logFile
    self.binary = binary
  }

  /// Starts a proxy in front of `servers` (plain-text members) and waits until it forwards
  /// requests.
  public static func start(inFrontOf servers: [EtcdServer]) async throws -> EtcdGRPCProxy {
    guard let first = servers.first else { throw TestSupportError("a gRPC proxy needs at least one etcd member") }
    return try await StartGate.passing {
      var lastError: (any Error)?
      for _ in 0..<3 {  // a port taken between choosing and binding: choose again
        let port = try freePorts(1)[0]
        let proxy = EtcdGRPCProxy(
          port: port, backends: servers.map { "127.0.0.1:\($0.clientPort)" },
          logFile: first.dataDir + "-grpc-proxy-\(port).log", binary: first.binary)
        do {
          try proxy.launch()
          try await proxy.waitUntilReady()
          return proxy
        } catch {
          lastError = error
          proxy.stop()
        }
      }
      throw lastError!
    }
  }

  /// A client configuration that talks to the proxy only.
  public func configuration() -> EtcdConfiguration {
    var configuration = try! EtcdConfiguration(endpoints: [self.endpoint])
    configuration.dialTimeout = .seconds(10)
    return configuration
  }

  func launch() throws {
    let process = try launchLogged(self.binary, [
      "grpc-proxy", "start", "--endpoints", self.backends.joined(separator: ","),
      "--listen-addr", "127.0.0.1:\(self.port)", "--advertise-client-url", "127.0.0.1:\(self.port)",
    ], appendingTo: self.logFile)
    OrphanReaper.register(pid: process.processIdentifier, dataDir: self.logFile)
    self.lock.withLock { self.process = process }
  }

  /// Waits until a read through the proxy is answered by etcd (with auth on, refused).
  public func waitUntilReady(timeout: Duration = .seconds(30)) async throws {
    let deadline = ContinuousClock.now + timeout
    var configuration = self.configuration()
    configuration.requestTimeout = .seconds(2)
    configuration.retryReads = false
    try await withEtcdClient(configuration) { client in
      while true {
        if let process = self.lock.withLock({ self.process }), !process.isRunning {
          throw TestSupportError("etcd grpc-proxy exited during start-up; see \(self.logFile): \(self.logTail())")
        }
        do {
          _ = try await client.get("/etcsync-test-support/ready")
          return
        } catch let error as EtcdError where error.code == .permissionDenied {
          // etcd has auth on and refused the anonymous read: the proxy forwarded it.
          return
        } catch {}
        if ContinuousClock.now > deadline {
          throw TestSupportError("etcd grpc-proxy not ready after \(timeout); see \(self.logFile): \(self.logTail())")
        }
        try await Task.sleep(for: .milliseconds(50))
      }
    }
  }

  /// Kills the proxy (SIGKILL) and waits for it to be gone; its clients see their streams end.
  public func stop() {
    guard let process = self.lock.withLock({ self.process }) else { return }
    process.signal(SIGKILL)
    process.waitUntilExit(within: .seconds(30))
    OrphanReaper.unregister(pid: process.processIdentifier)
    self.lock.withLock { self.process = nil }
  }

  /// Starts the proxy again on the same port.
  public func restart() async throws {
    self.stop()
    try self.launch()
    try await self.waitUntilReady()
  }

  /// The last lines of the proxy's log, for error messages.
  public func logTail(lines: Int = 5) -> String {
    lastLines(of: self.logFile, lines)
  }

  deinit {
    if let process = self.process, process.isRunning { kill(process.processIdentifier, SIGKILL) }
  }
}
