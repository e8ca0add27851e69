import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Logging
import Synchronization
import Testing

/// What every agent test starts with: a fresh etcd, a client to it, and a temporary directory
/// holding the destinations, the state directory and a log that reload and check commands
/// append to.
///
/// Tests call ``start()`` and `defer { h.stop() }` in the test function itself rather than
/// running their body in a `with…{ h in … }` closure: inside a closure, Swift 6.3.1
/// miscompiles a closure literal that follows a `#expect(… { … })` across an `await` (it
/// calls the `#expect`'s closure instead), which made polls pass without ever running.
final class AgentHarness: Sendable {
  let server: EtcdServer
  let client: EtcdClient
  let dir: TemporaryDirectory
  let logs: RecordingLogHandler.Store
  let logger: Logger
  /// etcd's gRPC proxy the client talks through, when started with `throughProxy`.
  let proxy: EtcdGRPCProxy?
  private let runner: Task<Void, any Error>

  private init(server: EtcdServer, client: EtcdClient, proxy: EtcdGRPCProxy? = nil) {
    self.server = server
    self.client = client
    self.proxy = proxy
    self.dir = TemporaryDirectory("etcsync-agent")
    (self.logger, self.logs) = RecordingLogHandler.logger()
    self.runner = Task { try await client.run() }
  }

  /// Starts etcd and a client to it (with `throughProxy`, to etcd's gRPC proxy in front of it).
  static func start(etcdArguments: [String] = [], throughProxy: Bool = false) async throws -> AgentHarness {
    let server = try await EtcdServer.start(arguments: etcdArguments)
    do {
      guard throughProxy else {
        return AgentHarness(server: server, client: try EtcdClient(configuration: server.configuration()))
      }
      let proxy = try await EtcdGRPCProxy.start(inFrontOf: [server])
      do {
        return AgentHarness(server: server, client: try EtcdClient(configuration: proxy.configuration()), proxy: proxy)
      } catch {
        proxy.stop()
        throw error
      }
    } catch {
      server.destroy()
      throw error
    }
  }

  /// Shuts the client down and removes etcd (the temporary directory goes with the harness).
  func stop() {
    client.shutdown()
    runner.cancel()
    proxy?.stop()
    server.destroy()
  }

  var stateDirectory: String { dir("state") }
  var commandLog: String { dir("commands.log") }

  /// A configuration with `mappings`, the harness's state directory and a short command timeout.
  func configuration(_ mappings: [Mapping], wait: WaitSettings? = nil) -> AgentConfiguration {
    AgentConfiguration(mappings: mappings, state: StateSettings(dir: stateDirectory), wait: wait, commandTimeout: .seconds(10))
  }

  func agent(_ configuration: AgentConfiguration, hook: WriteHook? = nil) throws -> Agent {
    try Agent(configuration: configuration, client: client, logger: logger, hook: hook)
  }

  /// `sh -c` appending `line` to the command log: a reload (or check) whose runs can be counted.
  func logCommand(_ line: String, exit status: Int = 0) -> [String] {
    ["sh", "-c", "echo \(line) >> '\(commandLog)'; exit \(status)"]
  }

  /// The command log's lines, in order.
  var commandLines: [String] {
    (Disk.read(commandLog) ?? "").split(separator: "\n").map(String.init)
  }

  func count(_ line: String) -> Int { commandLines.filter { $0 == line }.count }

  @discardableResult
  func put(_ key: String, _ value: String) async throws -> Int64 {
    try await client.put(key, value).header.revision
  }

  @discardableResult
  func put(_ key: [UInt8], _ value: [UInt8]) async throws -> Int64 {
    try await client.put(key, value).header.revision
  }

  @discardableResult
  func delete(_ key: String) async throws -> Int64 {
    try await client.delete(key).header.revision
  }

  /// Log messages recorded at `level` or above.
  func messages(atLeast level: Logger.Level) -> [String] {
    logs.all.filter { $0.0 >= level }.map(\.1)
  }
}

/// A running client to any etcd (a cluster's members, say); `stop()` shuts it down.
final class RunningClient: Sendable {
  let client: EtcdClient
  private let runner: Task<Void, any Error>

  init(_ configuration: EtcdConfiguration) throws {
    let client = try EtcdClient(configuration: configuration)
    self.client = client
    self.runner = Task { try await client.run() }
  }

  func stop() {
    client.shutdown()
    runner.cancel()
  }
}

/// `Agent.run()` in a task of its own; `stop()` cancels it and waits until it has returned.
final class Daemon: Sendable {
  let agent: Agent
  let task: Task<Void, any Error>
  private let ended: EndFlag

  final class EndFlag: Sendable {
    let value = Mutex(false)
  }

  init(_ agent: Agent) {
    let ended = EndFlag()
    self.agent = agent
    self.ended = ended
    self.task = Task {
      defer { ended.value.withLock { $0 = true } }
      try await agent.run()
    }
  }

  /// Whether `run()` has returned or thrown by itself (or after `stop()`).
  var hasEnded: Bool { ended.value.withLock { $0 } }

  /// Cancels the daemon and returns how it ended: nil for a clean stop.
  @discardableResult
  func stop() async -> (any Error)? {
    task.cancel()
    switch await task.result {
    case .success: return nil
    case .failure(let error): return error is CancellationError ? nil : error
    }
  }
}

/// Polls `condition` until it holds; the limit only bounds how long a failing test waits.
func eventually(
  within limit: Duration = .seconds(30), _ condition: () async throws -> Bool
) async rethrows -> Bool {
  let deadline = ContinuousClock.now + limit
  while ContinuousClock.now < deadline {
    if try await condition() { return true }
    try? await Task.sleep(for: .milliseconds(20))
  }
  return try await condition()
}

/// File helpers the agent tests need beyond `Disk`.
enum Bytes {
  /// The bytes of the file at `path` (following symlinks), or nil.
  static func read(_ path: String) -> [UInt8]? {
    FileManager.default.contents(atPath: path).map { [UInt8]($0) }
  }

  static func utf8(_ text: String) -> [UInt8] { Array(text.utf8) }

  /// Inode and modification time: equal before and after means the file was not rewritten.
  static func identity(_ path: String) -> FileIdentity? {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    return FileIdentity(inode: info.st_ino, seconds: info.st_mtim.tv_sec, nanoseconds: info.st_mtim.tv_nsec)
  }

  /// Mode bits (without the type) and owner of the file at `path` (following symlinks).
  static func attributes(_ path: String) -> (mode: mode_t, uid: uid_t, gid: gid_t)? {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    return (info.st_mode & 0o7777, info.st_uid, info.st_gid)
  }
}

struct FileIdentity: Equatable, CustomStringConvertible {
  var inode: UInt
  var seconds: Int
  var nanoseconds: Int
  var description: String { "inode \(inode) mtime \(seconds).\(nanoseconds)" }
}

extension Array where Element == MappingResult {
  /// The result of mapping `name`.
  subscript(mapping name: String) -> MappingResult? { first { $0.mapping == name } }
}
