import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Synchronization
import Testing

/// Whether the long variants run (`scripts/faults`, `make faults`): 30 s faults and the
/// 1,000 ops/s churn. `.ci/run` runs the short ones.
let faultsLong = ProcessInfo.processInfo.environment["ETCSYNC_FAULTS_LONG"] == "1"

/// One fault scenario: a real `etcsync run` process mirroring `/f/` into a swapped tree and a
/// templated file, a writer that puts every key in one Txn per generation, and a reader that
/// reads both in a tight loop the whole time. `verify()` is the check every scenario ends with.
final class FaultScenario: @unchecked Sendable {
  static let keys = 12
  let name: String
  let dir: TemporaryDirectory
  let endpoints: [String]
  let metricsPort: Int
  let client: RunningClient
  private(set) var agent: EtcsyncProcess?
  let reader: TreeReader
  /// Generation → revision of each acknowledged write.
  private let written = Mutex<[(generation: Int, revision: Int64)]>([])
  /// Every generation a write was sent for, acknowledged or not: a write that timed out on
  /// the client while etcd was stopped may still be applied once etcd runs again.
  private let attempted = Mutex<Set<Int>>([])
  /// What the scenario ends on, once etcd has settled (see ``finish(_:faultEnded:sourceLocation:)``).
  private var settled: (generation: Int, revision: Int64)?
  var started = ContinuousClock.now

  /// `user` and `password`, when etcd has auth on.
  let auth: (user: String, password: String)?

  init(_ name: String, endpoints: [String], clientConfiguration: EtcdConfiguration, auth: (user: String, password: String)? = nil) throws {
    self.name = name
    self.auth = auth
    self.dir = TemporaryDirectory("etcsync-fault")
    self.endpoints = endpoints
    self.metricsPort = try freePorts(1)[0]
    self.client = try RunningClient(clientConfiguration)
    try Disk.write(self.dir("lines.tmpl"), "{{ range gets \"/f/*\" }}{{ .Value }}\n{{ end }}end\n")
    self.reader = TreeReader(tree: self.dir("tree"), file: self.dir("lines"))
  }

  var configPath: String { self.dir("etcsync.yaml") }

  /// Writes the configuration and starts the agent (again, after a kill).
  func startAgent() throws {
    let endpoints = self.endpoints.map { "\"\($0)\"" }.joined(separator: ", ")
    var auth = ""
    if let credentials = self.auth {
      try Disk.write(self.dir("password"), credentials.password)
      auth = "\n  auth: {user: \(credentials.user), passwordFile: \(self.dir("password"))}"
    }
    try Disk.write(self.configPath, """
      etcd:
        endpoints: [\(endpoints)]
        dialTimeout: 2s
        requestTimeout: 3s\(auth)
      state:
        dir: \(self.dir("state"))
      metrics:
        listen: 127.0.0.1:\(self.metricsPort)
      mappings:
        - name: tree
          kind: tree
          prefix: /f/
          dest: \(self.dir("tree"))
        - name: lines
          kind: template
          prefix: /f/
          template: \(self.dir("lines.tmpl"))
          dest: \(self.dir("lines"))
      """)
    self.agent = try EtcsyncProcess(["run", "-c", self.configPath, "--timeout", "60s"], log: self.dir("agent-\(Int.random(in: 0..<1_000_000)).log"))
  }

  func killAgent() { self.agent?.kill9() }

  /// Puts generation `g` into every key, in one Txn (one revision).
  @discardableResult
  func write(_ generation: Int) async throws -> Int64 {
    let ops = (0..<Self.keys).map { index in
      Op.put("/f/k\(index < 10 ? "0" : "")\(index)", "g\(generation)")
    }
    self.attempted.withLock { _ = $0.insert(generation) }
    let response = try await self.client.client.txn(if: [], then: ops)
    self.written.withLock { $0.append((generation, response.header.revision)) }
    return response.header.revision
  }

  /// Writes generations as fast as etcd takes them (up to `rate` per second), ignoring
  /// failures (the fault is on), until cancelled.
  func churn(from start: Int, rate: Int) -> Task<Int, Never> {
    Task {
      var generation = start
      while !Task.isCancelled {
        generation += 1
        _ = try? await self.write(generation)
        try? await Task.sleep(for: .nanoseconds(1_000_000_000 / rate))
      }
      return generation
    }
  }

  /// The last state the writer produced: the settled end state once ``finish`` has run,
  /// before that the acknowledged write with the highest revision.
  var lastWrite: (generation: Int, revision: Int64)? {
    if let settled = self.settled { return settled }
    return self.written.withLock { $0.max { $0.revision < $1.revision } }
  }

  /// The agent's applied revision, from its metrics (nil while it does not answer).
  func appliedRevision() async -> Int64? {
    guard let scrape = await OperationsTests.get(self.metricsPort, "/metrics")?.body else { return nil }
    return OperationsTests.sample(scrape, "etcsync_applied_revision").map { Int64($0) }
  }

  /// Whether the agent answers /readyz with 200.
  func isReady() async -> Bool {
    await OperationsTests.get(self.metricsPort, "/readyz")?.status == 200
  }

  /// Stops the writer, writes one last generation (every key), and runs ``verify(since:sourceLocation:)``.
  @discardableResult
  func finish(_ churn: Task<Int, Never>, faultEnded: ContinuousClock.Instant,
              sourceLocation: SourceLocation = #_sourceLocation) async throws -> Duration {
    churn.cancel()
    let generation = await churn.value
    let final = try await self.write(generation + 1_000_000)
    // Writes that timed out on the client during the fault can still be applied after the
    // final one (they sat in a stopped etcd's socket or in raft). The end state is what etcd
    // holds once its revision stops moving, and it must come from a write the scenario sent.
    var state = try await self.prefixState()
    while true {
      try await Task.sleep(for: .milliseconds(500))
      let again = try await self.prefixState()
      if again.revision == state.revision { break }
      state = again
    }
    let generations = Set(state.values.map { Int($0.dropFirst()) ?? -1 })
    #expect(generations.count == 1, "\(self.name): etcd holds a mixed generation: \(state)", sourceLocation: sourceLocation)
    let generationNow = generations.first ?? -1
    let sent = self.attempted.withLock { $0.contains(generationNow) }
    #expect(sent && (generationNow == generation + 1_000_000 || state.revision > final),
            "\(self.name): etcd's end state \(state) is not the final write (revision \(final)) nor a later-applied one",
            sourceLocation: sourceLocation)
    if state.revision > final {
      print("\(self.name): writes that timed out during the fault were applied after the final one (revision \(final)); etcd settled at \(state.revision)")
    }
    self.settled = (generationNow, state.revision)
    return try await self.verify(since: faultEnded, sourceLocation: sourceLocation)
  }

  /// The current revision of etcd and the values under `/f/` (a linearizable read).
  private func prefixState() async throws -> (revision: Int64, values: [String]) {
    let response = try await self.client.client.get(.prefix("/f/"))
    return (response.header.revision, response.kvs.map(\.valueString))
  }

  /// The end of every scenario: waits until the agent reports the last written revision,
  /// then checks that the files equal `etcdctl get --prefix /f/ --rev=R` for that R, that the
  /// reader never saw a partial file or a mixed tree, that no update was lost, and that no
  /// temp file is left. Returns the time from `since` to convergence.
  func verify(since: ContinuousClock.Instant, sourceLocation: SourceLocation = #_sourceLocation) async throws -> Duration {
    let last = try #require(self.lastWrite, sourceLocation: sourceLocation)
    let converged = await eventually(within: .seconds(90)) {
      guard let applied = await self.appliedRevision(), applied >= last.revision else { return false }
      return self.reader.current()?.tree == last.generation
    }
    // Converged when the reader first saw the tree at the final generation (the settling
    // check in `finish` may come later than that).
    let held = self.reader.treeHeld()
    let took = held.generation == last.generation ? max(.zero, (held.since ?? .now) - since) : ContinuousClock.now - since
    #expect(converged, "\(self.name): the agent did not reach revision \(last.revision); log: \(self.agent?.log ?? "-")",
            sourceLocation: sourceLocation)
    let applied = await self.appliedRevision() ?? 0
    // The files equal etcdctl's view of the prefix at the revision the agent reports.
    let expected = try etcdctlPrefix("/f/", revision: applied, endpoint: self.endpoints,
                                     user: self.auth.map { "\($0.user):\($0.password)" })
    #expect(expected.count == Self.keys, "\(self.name): etcdctl: \(expected)", sourceLocation: sourceLocation)
    for (key, value) in expected {
      let name = String(key.dropFirst(3))
      #expect(Disk.read(self.dir("tree/" + name)) == value, "\(self.name): tree/\(name)", sourceLocation: sourceLocation)
    }
    let lines = expected.sorted { $0.key < $1.key }.map(\.value).joined(separator: "\n") + "\nend\n"
    #expect(Disk.read(self.dir("lines")) == lines, "\(self.name): lines", sourceLocation: sourceLocation)
    // Nothing lost: the last acknowledged generation is what the files hold.
    #expect(expected.values.allSatisfy { $0 == "g\(last.generation)" }, "\(self.name): lost the last update", sourceLocation: sourceLocation)
    let report = self.reader.stop()
    #expect(report.violations.isEmpty, "\(self.name): the reader saw \(report.violations.prefix(3))", sourceLocation: sourceLocation)
    #expect(report.reads > 0, sourceLocation: sourceLocation)
    #expect(Disk.temporaryFiles(self.dir("tree")).isEmpty && Disk.temporaryFiles(self.dir("")).filter { !$0.contains("state") }.isEmpty,
            "\(self.name): temp files left", sourceLocation: sourceLocation)
    FaultReport.shared.add(self.name, converged: converged, took: took, reads: report.reads, violations: report.violations.count)
    return took
  }

  func stop() {
    _ = self.reader.stop()
    self.agent?.signal(SIGTERM)
    if let agent = self.agent {
      let deadline = Date().addingTimeInterval(10)
      while agent.process.isRunning && Date() < deadline { usleep(20_000) }
      agent.kill9()
    }
    self.client.stop()
  }
}

/// `etcdctl get --prefix PREFIX --rev=R` (Debian's etcdctl, API v3): key → value.
func etcdctlPrefix(_ prefix: String, revision: Int64, endpoint: [String], user: String? = nil) throws -> [String: String] {
  let etcdctl = FileManager.default.isExecutableFile(atPath: "/usr/bin/etcdctl") ? "/usr/bin/etcdctl" : "etcdctl"
  let credentials = user.map { ["--user", $0] } ?? []
  let result = runTool(["ETCDCTL_API=3", etcdctl, "--endpoints", endpoint.joined(separator: ",")] + credentials + ["get", "--prefix", prefix, "--rev=\(revision)"])
  guard result.status == 0 else { throw AgentError(.etcd, "etcdctl failed: \(result.output)") }
  let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
  var pairs: [String: String] = [:]
  var index = 0
  while index + 1 < lines.count, !lines[index].isEmpty {
    pairs[lines[index]] = lines[index + 1]
    index += 2
  }
  return pairs
}

/// Reads the swapped tree (through one `..data` target at a time, as a Kubernetes reader
/// does) and the templated file in a tight loop on a thread of its own. A violation is a file
/// that is not one whole generation (partial), or a tree mixing generations.
final class TreeReader: @unchecked Sendable {
  struct Report { var reads: Int; var violations: [String] }
  final class Box: Sendable {
    let state = Mutex<(running: Bool, reads: Int, violations: [String], tree: Int?, file: Int?, treeSince: ContinuousClock.Instant?)>(
      (true, 0, [], nil, nil, nil))
  }
  private let box = Box()
  private let thread: Thread
  private let done = DispatchSemaphore(value: 0)

  init(tree: String, file: String) {
    let box = self.box
    let done = self.done
    self.thread = Thread {
      let state = box
      while state.state.withLock({ $0.running }) {
        let treeGeneration = Self.readTree(tree)
        let fileGeneration = Self.readFile(file)
        state.state.withLock { s in
          s.reads += 1
          if case .failure(let why) = treeGeneration { s.violations.append("tree: \(why)") }
          if case .failure(let why) = fileGeneration { s.violations.append("file: \(why)") }
          if case .success(let g?) = treeGeneration {
            if s.tree != g { s.treeSince = .now }
            s.tree = g
          }
          if case .success(let g?) = fileGeneration { s.file = g }
        }
      }
      done.signal()
    }
    self.thread.start()
  }

  struct Violation: Error, CustomStringConvertible { var description: String }

  /// The generation the whole tree holds (nil: nothing readable right now, which is no violation).
  static func readTree(_ root: String) -> Result<Int?, Violation> {
    guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: root + "/..data") else { return .success(nil) }
    let directory = target.hasPrefix("/") ? target : root + "/" + target
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return .success(nil) }
    var generations = Set<String>()
    for name in names {
      // The directory may be retired while it is read: a vanished file is a stale read, not a violation.
      guard let data = FileManager.default.contents(atPath: directory + "/" + name) else { return .success(nil) }
      generations.insert(String(decoding: data, as: UTF8.self))
    }
    guard !generations.isEmpty else { return .success(nil) }
    // A directory retired (and being removed) while it was read is a stale read, as it is for
    // any reader of a Kubernetes-style tree; only the current one must be whole.
    guard (try? FileManager.default.destinationOfSymbolicLink(atPath: root + "/..data")) == target else { return .success(nil) }
    guard generations.count == 1, let only = generations.first, only.hasPrefix("g"), let g = Int(only.dropFirst()) else {
      return .failure(Violation(description: "mixed or partial tree \(generations.sorted().prefix(4))"))
    }
    guard names.count == FaultScenario.keys else { return .failure(Violation(description: "\(names.count) files in the tree")) }
    return .success(g)
  }

  /// The generation the templated file holds: every line the same, then `end`.
  static func readFile(_ path: String) -> Result<Int?, Violation> {
    guard let data = FileManager.default.contents(atPath: path) else { return .success(nil) }
    let text = String(decoding: data, as: UTF8.self)
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    guard lines.last == "", lines.dropLast().last == "end" else { return .failure(Violation(description: "partial file \(text.suffix(40).debugDescription)")) }
    lines.removeLast(2)
    let generations = Set(lines)
    guard lines.count == FaultScenario.keys, generations.count == 1, let g = Int(generations.first!.dropFirst()) else {
      return .failure(Violation(description: "mixed file \(generations.sorted().prefix(4))"))
    }
    return .success(g)
  }

  /// The generations the reader saw last.
  func current() -> (tree: Int?, file: Int?)? { self.box.state.withLock { ($0.tree, $0.file) } }

  /// The generation the tree holds and since when the reader has seen it.
  func treeHeld() -> (generation: Int?, since: ContinuousClock.Instant?) { self.box.state.withLock { ($0.tree, $0.treeSince) } }

  /// Stops the thread (once) and reports.
  func stop() -> Report {
    let wasRunning = self.box.state.withLock { s -> Bool in
      let was = s.running
      s.running = false
      return was
    }
    if wasRunning { self.done.wait() }
    return self.box.state.withLock { Report(reads: $0.reads, violations: $0.violations) }
  }
}

/// The scenarios' outcomes, printed as the table of docs/reliability.md at the end of a run
/// (and written to results/faults.md).
final class FaultReport: Sendable {
  static let shared = FaultReport()
  private let rows = Mutex<[String]>([])

  func add(_ name: String, converged: Bool, took: Duration, reads: Int, violations: Int) {
    let seconds = Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18
    let row = "| \(name) | \(String(format: "%.2f s", seconds)) | \(converged && violations == 0 ? "yes" : "NO") | \(reads) reads, \(violations) bad |"
    let all = self.rows.withLock { $0.append(row); return $0 }
    let text = "| scenario | converged after fault ended | nothing lost | reader |\n|---|---|---|---|\n" + all.joined(separator: "\n") + "\n"
    try? FileManager.default.createDirectory(atPath: "results", withIntermediateDirectories: true)
    try? text.write(toFile: "results/faults.md", atomically: true, encoding: .utf8)
  }
}
