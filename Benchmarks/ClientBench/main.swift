// ClientBench: EtcdClient side by side with its peers on one etcd, in one run.
//
//   swift run -c release ClientBench [--rounds N] [--puts N] [--keys N] [--reads N] [--watches N]
//                                    [--go PATH] [--no-python] [--no-etcdctl] [--variants] [--json-out FILE]
//   (scripts/bench builds the Go peer and runs exactly this with --go)
//
// Measures sequential put latency and throughput, one Range over a 100k-key prefix (100-byte
// values), and put → watch-event latency, for: EtcdClient (this package, in process), Go's
// clientv3 (the client of etcd's own tutorial, Benchmarks/go-clientv3), Python's grpcio (gRPC
// C-core, Benchmarks/python) and etcdctl (a process per operation: the floor a shell script
// gets). The peers take turns, round after round (EtcdClient, Go, grpcio, EtcdClient, ...), on
// the same etcd, so a slow spell of a shared machine falls on all of them; each column shows
// the range over the rounds.
//
// CPU columns: utime+stime of the client process and of etcd (/proc/PID/stat) before and after
// the phase, divided by its requests (a put→watch sample is one put and one event).
// `ClientBench read-once ENDPOINT PREFIX` is the whole-process read used for the comparison
// with `etcdctl get --prefix`. `ClientBench wire-puts ENDPOINT PREFIX PUTS [grpc] [loop]` makes
// only puts (200 warm-up, then PUTS; `grpc`: through grpc-swift-2; `loop`: the caller's task on
// the connections' event loop, docs/benchmarks.md), for Benchmarks/wire_capture.py and perf.
// `ClientBench ranges ENDPOINT PREFIX N [loop]` reads the whole PREFIX (100k keys, loaded if it
// is empty) N times in one Range each and prints each read's time, for perf.
import EtcdClient
import EtcdTestSupport
import Foundation

let arguments = CommandLine.arguments
func option(_ name: String, _ fallback: Int) -> Int {
  guard let i = arguments.firstIndex(of: name), i + 1 < arguments.count, let v = Int(arguments[i + 1]) else { return fallback }
  return v
}
func stringOption(_ name: String) -> String? {
  guard let i = arguments.firstIndex(of: name), i + 1 < arguments.count else { return nil }
  return arguments[i + 1]
}

if arguments.count >= 4 && arguments[1] == "read-once" {
  // Whole-process read: connect, read the prefix (paginated, one revision), exit.
  let count = try await withEtcdClient(try EtcdConfiguration(endpoints: [arguments[2]])) { etcd in
    try await etcd.getAll(.prefix(arguments[3])).kvs.count
  }
  print(count)
  exit(0)
}

if arguments.count >= 5 && arguments[1] == "ranges" {
  guard let count = Int(arguments[4]) else { exit(2) }
  try await withEtcdClient(try EtcdConfiguration(endpoints: [arguments[2]])) { etcd in
    let value = String(repeating: "x", count: 100)
    if try await etcd.get(.prefix(arguments[3]), options: GetOptions(countOnly: true)).count == 0 {
      for base in stride(from: 0, to: 100_000, by: 128) {
        try await etcd.txn(if: [], then: (base..<min(base + 128, 100_000)).map { Op.put(String(format: "\(arguments[3])%07d", $0), value) })
      }
    }
    @Sendable func reads() async throws {
      for _ in 0..<count {
        let t = ContinuousClock.now
        let n = try await etcd.get(.prefix(arguments[3])).kvs.count
        print(n, ContinuousClock.now - t)
      }
    }
    if arguments.dropFirst(5).contains("loop") {
      try await withTaskExecutorPreference(etcd.eventLoopExecutor) { try await reads() }
    } else {
      try await reads()
    }
  }
  exit(0)
}

if arguments.count >= 2 && arguments[1] == "wire-puts" {
  // The puts of a wire capture: 200 to PREFIX/warm/N, then PUTS to PREFIX/put/(N % 1000).
  guard arguments.count >= 5, let count = Int(arguments[4]), count >= 0 else {
    print("usage: ClientBench wire-puts ENDPOINT PREFIX PUTS [grpc]")
    exit(2)
  }
  var configuration = try EtcdConfiguration(endpoints: [arguments[2]])
  configuration.directUnaryCalls = !arguments.dropFirst(5).contains("grpc")
  let onLoop = arguments.dropFirst(5).contains("loop")
  try await withEtcdClient(configuration) { etcd in
    let value = String(repeating: "x", count: 100)
    @Sendable func puts() async throws {
      for i in 0..<200 { try await etcd.put("\(arguments[3])warm/\(i)", value) }
      for i in 0..<count { try await etcd.put("\(arguments[3])put/\(i % 1000)", value) }
    }
    if onLoop {
      try await withTaskExecutorPreference(etcd.eventLoopExecutor) { try await puts() }
    } else {
      try await puts()
    }
  }
  exit(0)
}

let puts = option("--puts", 5000), keys = option("--keys", 100_000), reads = option("--reads", 5)
let watches = option("--watches", 2000), rounds = max(1, option("--rounds", 3))
let usePython = !arguments.contains("--no-python"), useEtcdctl = !arguments.contains("--no-etcdctl")
let goPeer = stringOption("--go")

func percentile(_ values: [Double], _ p: Double) -> Double {
  let sorted = values.sorted()
  return sorted[min(sorted.count - 1, Int((p / 100 * Double(sorted.count - 1)).rounded()))]
}
func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
func median(_ values: [Double]) -> Double { percentile(values, 50) }

/// CPU seconds of a process from /proc/PID/stat: utime+stime, or with `children` the
/// cutime+cstime of its waited-for children.
func cpuSeconds(_ pid: String, children: Bool = false) -> Double {
  guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = text.lastIndex(of: ")") else { return .nan }
  let fields = text[text.index(close, offsetBy: 2)...].split(separator: " ")
  let (a, b) = children ? (13, 14) : (11, 12)
  return (Double(fields[a])! + Double(fields[b])!) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// Runs a command to completion; returns its wall time and standard output.
func run(_ path: String, _ args: [String]) throws -> (Double, String) {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: path)
  process.arguments = args
  let out = Pipe()
  process.standardOutput = out
  process.standardError = FileHandle.nullDevice
  let start = ContinuousClock.now
  try process.run()
  let data = out.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return (seconds(ContinuousClock.now - start), String(decoding: data, as: UTF8.self))
}

/// One peer's figures in one round, under the keys the Go and Python peers print.
typealias Figures = [String: Double]

let server = try await EtcdServer.start(arguments: ["--quota-backend-bytes", "\(4 << 30)"])
defer { server.destroy() }
let endpoint = server.endpoint
let etcdPid = "\(server.pid!)"
let etcdctl = "/usr/bin/etcdctl"
let value = String(repeating: "x", count: 100)
print("etcd \(try run(server.binary, ["--version"]).1.split(separator: "\n").first ?? "") at \(endpoint) (data on tmpfs)")

/// EtcdClient's round, with a client of its own: the same three measurements as the peers, in
/// this process.
func swiftRound(_ configuration: EtcdConfiguration, prefix: String, onLoop: Bool = false) async throws -> Figures {
  try await withEtcdClient(configuration) { etcd in
    guard onLoop else { return try await swiftRound(etcd, prefix: prefix) }
    // The caller's task on the client's event loop (EtcdClient.eventLoopExecutor).
    return try await withTaskExecutorPreference(etcd.eventLoopExecutor) { try await swiftRound(etcd, prefix: prefix) }
  }
}

func swiftRound(_ etcd: EtcdClient, prefix: String) async throws -> Figures {
  var f = Figures()
  for i in 0..<200 { try await etcd.put("\(prefix)warm/\(i)", value) }
  var latencies: [Double] = []
  latencies.reserveCapacity(puts)
  var (c0, e0) = (cpuSeconds("self"), cpuSeconds(etcdPid))
  let start = ContinuousClock.now
  for i in 0..<puts {
    let t = ContinuousClock.now
    try await etcd.put("\(prefix)put/\(i % 1000)", value)
    latencies.append(seconds(ContinuousClock.now - t))
  }
  let total = seconds(ContinuousClock.now - start)
  var (c1, e1) = (cpuSeconds("self"), cpuSeconds(etcdPid))
  f["put_p50_ms"] = percentile(latencies, 50) * 1e3
  f["put_p99_ms"] = percentile(latencies, 99) * 1e3
  f["put_per_s"] = Double(puts) / total
  f["put_client_cpu_ms"] = (c1 - c0) * 1e3 / Double(puts)
  f["put_etcd_cpu_ms"] = (e1 - e0) * 1e3 / Double(puts)

  var single: [Double] = []
  for _ in 0..<reads {
    let t = ContinuousClock.now
    let count = try await etcd.get(.prefix("/bench/data/")).kvs.count
    single.append(seconds(ContinuousClock.now - t))
    precondition(count == keys, "read \(count) keys, expected \(keys)")
  }
  f["read_s"] = median(single)

  // put → watch event: the event is awaited on the watch stream itself, as a consumer would.
  var options = WatchOptions()
  options.createdNotify = true
  var events = etcd.watch(.prefix("\(prefix)watch/"), options: options).makeAsyncIterator()
  guard let created = try await events.next(), created.created else { fatalError("watch not created") }
  var watchLatencies: [Double] = []
  (c0, e0) = (cpuSeconds("self"), cpuSeconds(etcdPid))
  for i in 0..<watches {
    let key = "\(prefix)watch/\(i)"
    let t = ContinuousClock.now
    try await etcd.put(key, value)
    guard let response = try await events.next(), response.events.count == 1, response.events[0].kv.keyString == key else {
      fatalError("unexpected watch response")
    }
    watchLatencies.append(seconds(ContinuousClock.now - t))
  }
  (c1, e1) = (cpuSeconds("self"), cpuSeconds(etcdPid))
  f["watch_p50_ms"] = percentile(watchLatencies, 50) * 1e3
  f["watch_p99_ms"] = percentile(watchLatencies, 99) * 1e3
  f["watch_client_cpu_ms"] = (c1 - c0) * 1e3 / Double(watches)
  f["watch_etcd_cpu_ms"] = (e1 - e0) * 1e3 / Double(watches)
  return f
}

/// A peer in another process that prints its figures as one JSON object on its last line.
func peerRound(_ path: String, _ args: [String]) throws -> Figures? {
  let (_, out) = try run(path, args)
  guard let line = out.split(separator: "\n").last,
        let figures = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Double] else {
    print("peer \(path) \(args.first ?? "") failed: \(out)")
    return nil
  }
  return figures
}

/// etcdctl: puts (a process each), the whole-process read, and `etcdctl watch` as the floor
/// for put → event, with the puts made by EtcdClient. Its client CPU is that of the etcdctl
/// processes (this process's waited-for children).
func etcdctlRound(_ etcd: EtcdClient, prefix: String) async throws -> Figures {
  var f = Figures()
  let n = 100
  var ctlPuts: [Double] = []
  let (c0, e0) = (cpuSeconds("self", children: true), cpuSeconds(etcdPid))
  let ctlStart = ContinuousClock.now
  for i in 0..<n { ctlPuts.append(try run(etcdctl, ["--endpoints", endpoint, "put", "\(prefix)put/\(i)", value]).0) }
  let total = seconds(ContinuousClock.now - ctlStart)
  let (c1, e1) = (cpuSeconds("self", children: true), cpuSeconds(etcdPid))
  f["put_p50_ms"] = percentile(ctlPuts, 50) * 1e3
  f["put_p99_ms"] = percentile(ctlPuts, 99) * 1e3
  f["put_per_s"] = Double(n) / total
  f["put_client_cpu_ms"] = (c1 - c0) * 1e3 / Double(n)
  f["put_etcd_cpu_ms"] = (e1 - e0) * 1e3 / Double(n)
  var ctlReads: [Double] = []
  for _ in 0..<reads {
    let (t, out) = try run(etcdctl, ["--endpoints", endpoint, "get", "--prefix", "/bench/data/"])
    precondition(out.split(separator: "\n").count == 2 * keys)
    ctlReads.append(t)
  }
  f["read_s"] = median(ctlReads)

  let watch = Process()
  watch.executableURL = URL(fileURLWithPath: etcdctl)
  watch.arguments = ["--endpoints", endpoint, "watch", "--prefix", "\(prefix)watch/"]
  let pipe = Pipe()
  watch.standardOutput = pipe
  try watch.run()
  let lines = AsyncStream<(String, ContinuousClock.Instant)> { continuation in
    Thread {
      var pending = ""
      while true {
        let data = pipe.fileHandleForReading.availableData
        if data.isEmpty { continuation.finish(); return }
        let now = ContinuousClock.now
        pending += String(decoding: data, as: UTF8.self)
        while let nl = pending.firstIndex(of: "\n") {
          let line = String(pending[..<nl])
          pending = String(pending[pending.index(after: nl)...])
          if line.hasPrefix("\(prefix)watch/") { continuation.yield((line, now)) }
        }
      }
    }.start()
  }.makeAsyncIterator()
  var seen = lines
  try await Task.sleep(for: .milliseconds(500))
  var ctlWatch: [Double] = []
  for i in 0..<watches {
    let key = "\(prefix)watch/\(i)"
    let t = ContinuousClock.now
    try await etcd.put(key, value)
    guard let (line, at) = await seen.next(), line == key else { fatalError("etcdctl watch: unexpected line") }
    ctlWatch.append(seconds(at - t))
  }
  watch.terminate()
  watch.waitUntilExit()
  f["watch_p50_ms"] = percentile(ctlWatch, 50) * 1e3
  f["watch_p99_ms"] = percentile(ctlWatch, 99) * 1e3
  return f
}

// With --variants, EtcdClient also runs the way it did before issue 16's DirectTransport:
// every call through grpc-swift-2 (package-only switches; see docs/benchmarks.md), as it is
// and with that path's levers (the deadline sweeper and the connections' event loop).
var swiftVariants: [(String, EtcdConfiguration)] = [("EtcdClient (Swift)", server.configuration())]
// The same client with the caller's task on its event loop (opt-in: EtcdClient.eventLoopExecutor).
let onLoopName = "EtcdClient, caller on its event loop (eventLoopExecutor)"
swiftVariants.append((onLoopName, server.configuration()))
if arguments.contains("--variants") {
  var grpcPath = server.configuration()
  grpcPath.directUnaryCalls = false
  var grpcLevers = grpcPath
  grpcLevers.perCallDeadlineTimer = false
  grpcLevers.runsOnConnectionLoop = true
  var immediateAck = server.configuration()
  immediateAck.pingAckDelay = nil
  swiftVariants += [("EtcdClient, PING ACK in a write of its own (before)", immediateAck)]
  var validating = server.configuration()
  validating.validatesHeaderBlocks = true
  swiftVariants += [("EtcdClient, header blocks validated by swift-nio-http2 (before)", validating)]
  swiftVariants += [("EtcdClient through grpc-swift-2 (before DirectTransport)", grpcPath),
                    ("EtcdClient through grpc-swift-2, levers (deadline sweeper, event-loop executor)", grpcLevers)]
}
var results: [(name: String, rounds: [Figures])] = swiftVariants.map { ($0.0, []) }
if let goPeer { results.append(("Go clientv3 3.4 (\(URL(fileURLWithPath: goPeer).lastPathComponent))", [])) }
if usePython { results.append(("grpcio (Python, C-core)", [])) }
let pythonScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
  .appendingPathComponent("python/grpc_peer.py").path
var loadAverages: [String] = []

try await withEtcdClient(server.configuration()) { etcd in
  // The read data set: 100-byte values, 128 puts per txn.
  for base in stride(from: 0, to: keys, by: 128) {
    let ops = (base..<min(base + 128, keys)).map { Op.put(String(format: "/bench/data/%07d", $0), value) }
    try await etcd.txn(if: [], then: ops)
  }
  for round in 1...rounds {
    loadAverages.append((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?")
    var slot = -1
    for (index, variant) in swiftVariants.enumerated() {
      slot += 1
      results[slot].rounds.append(try await swiftRound(variant.1, prefix: "/bench/r\(round)/swift\(index)/", onLoop: variant.0 == onLoopName))
    }
    if let goPeer {
      slot += 1
      if let f = try peerRound(goPeer, [endpoint, "/bench/r\(round)/go/", "/bench/data/", "\(puts)", "\(reads)", "\(watches)", etcdPid]) {
        results[slot].rounds.append(f)
      }
    }
    if usePython {
      slot += 1
      if let f = try peerRound("/usr/bin/env", ["python3", pythonScript, endpoint, "/bench/r\(round)/py/", "/bench/data/", "\(puts)", "\(reads)", "\(watches)", etcdPid]) {
        results[slot].rounds.append(f)
      }
    }
  }
  if useEtcdctl { results.append(("etcdctl (process per op; Range: whole process)", [try await etcdctlRound(etcd, prefix: "/bench/ctl/")])) }

  // EtcdClient's paged and whole-process reads, for the comparison with `etcdctl get`.
  var paged: [Double] = []
  for _ in 0..<reads {
    let t = ContinuousClock.now
    let count = try await etcd.getAll(.prefix("/bench/data/")).kvs.count
    precondition(count == keys)
    paged.append(seconds(ContinuousClock.now - t))
  }
  var wholeProcess: [Double] = []
  for _ in 0..<reads {
    let (t, out) = try run(CommandLine.arguments[0], ["read-once", endpoint, "/bench/data/"])
    precondition(Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) == keys)
    wholeProcess.append(t)
  }
  print("EtcdClient read of \(keys) keys: paged (10k per page, one revision) \(String(format: "%.1f", median(paged) * 1e3)) ms, whole process \(String(format: "%.1f", median(wholeProcess) * 1e3)) ms")
}

print("\n\(rounds) round(s), peers alternating; load average at the start of each round: \(loadAverages.joined(separator: " | "))")
print("sequential puts: \(puts) (100-byte values); one Range of \(keys) keys x 100 bytes, median of \(reads); put -> watch event: \(watches) samples; etcdctl: 100 puts, once\n")
let columns: [(String, String, Double, String)] = [
  ("put p50", "put_p50_ms", 1, "ms"), ("put p99", "put_p99_ms", 1, "ms"), ("puts/s", "put_per_s", 1, ""),
  ("one Range", "read_s", 1e3, "ms"), ("watch p50", "watch_p50_ms", 1, "ms"), ("watch p99", "watch_p99_ms", 1, "ms"),
  ("client CPU/put", "put_client_cpu_ms", 1, "ms"), ("etcd CPU/put", "put_etcd_cpu_ms", 1, "ms"),
  ("client CPU/watch", "watch_client_cpu_ms", 1, "ms"), ("etcd CPU/watch", "watch_etcd_cpu_ms", 1, "ms"),
]
func cell(_ values: [Double], scale: Double, unit: String) -> String {
  guard let lo = values.min(), let hi = values.max() else { return "-" }
  let digits = unit.isEmpty ? 0 : (hi * scale >= 100 ? 1 : 3)
  let fmt = { (v: Double) in String(format: "%.\(digits)f", v * scale) }
  let range = values.count == 1 || fmt(lo) == fmt(hi) ? fmt(lo) : "\(fmt(lo))–\(fmt(hi))"
  return unit.isEmpty ? range : "\(range) \(unit)"
}
let headers = ["client"] + columns.map(\.0)
let table = [headers] + results.map { peer in
  [peer.name] + columns.map { c in cell(peer.rounds.compactMap { $0[c.1] }, scale: c.2, unit: c.3) }
}
let widths = headers.indices.map { c in table.map { $0[c].count }.max()! }
for (i, line) in table.enumerated() {
  print("| " + line.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: " | ") + " |")
  if i == 0 { print("|" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "|") + "|") }
}
// Issue 16's targets are ratios to Go's clientv3 in the same run: each round's EtcdClient
// figure over that round's Go figure (the two ran one after the other), and their median.
for swift in results where swift.name.hasPrefix("EtcdClient") && !swift.name.contains("grpc-swift-2") {
  guard let go = results.first(where: { $0.name.hasPrefix("Go clientv3") }) else { break }
  print("\n\(swift.name) / Go clientv3, round by round (median):")
  for (label, key) in [("put p50", "put_p50_ms"), ("watch p50", "watch_p50_ms"), ("client CPU/put", "put_client_cpu_ms"), ("etcd CPU/put", "put_etcd_cpu_ms")] {
    let ratios = zip(swift.rounds, go.rounds).compactMap { s, g -> Double? in
      guard let a = s[key], let b = g[key], b > 0 else { return nil }
      return a / b
    }
    guard !ratios.isEmpty else { continue }
    print("  \(label): " + ratios.map { String(format: "%.2f", $0) }.joined(separator: " ") + String(format: " (%.2f)", median(ratios)))
  }
}
if let raw = stringOption("--json-out") {
  let object = results.map { ["name": $0.name, "rounds": $0.rounds] as [String: Any] }
  try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: raw))
}
