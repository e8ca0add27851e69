// ClientBench: EtcdClient side by side with its floors on one etcd, in one run.
//
//   swift run -c release ClientBench [--puts N] [--keys N] [--reads N] [--watches N] [--no-python]
//   (scripts/bench runs exactly this)
//
// Measures sequential put latency and throughput, the time to read a 100k-key prefix
// (100-byte values), and put → watch-event latency, for: EtcdClient (this package),
// etcdctl (whole process per operation: the floor a shell script gets), and Python's grpcio
// (gRPC C-core, in process). `ClientBench read-once ENDPOINT PREFIX` is the whole-process read
// used for the comparison with `etcdctl get --prefix`.
import EtcdClient
import EtcdTestSupport
import Foundation
import Synchronization

let arguments = CommandLine.arguments
func option(_ name: String, _ fallback: Int) -> Int {
  guard let i = arguments.firstIndex(of: name), i + 1 < arguments.count, let v = Int(arguments[i + 1]) else { return fallback }
  return v
}

if arguments.count >= 4 && arguments[1] == "read-once" {
  // Whole-process read: connect, read the prefix (paginated, one revision), exit.
  let count = try await withEtcdClient(try EtcdConfiguration(endpoints: [arguments[2]])) { etcd in
    try await etcd.getAll(.prefix(arguments[3])).kvs.count
  }
  print(count)
  exit(0)
}

let puts = option("--puts", 5000), keys = option("--keys", 100_000), reads = option("--reads", 5)
let watches = option("--watches", 2000)
let usePython = !arguments.contains("--no-python")

func percentile(_ values: [Double], _ p: Double) -> Double {
  let sorted = values.sorted()
  return sorted[min(sorted.count - 1, Int((p / 100 * Double(sorted.count - 1)).rounded()))]
}
func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
func median(_ values: [Double]) -> Double { percentile(values, 50) }

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

struct Row { var name: String; var putP50 = "-", putP99 = "-", putRate = "-", read = "-", watchP50 = "-", watchP99 = "-" }
func ms(_ s: Double) -> String { String(format: "%.3f ms", s * 1000) }

let server = try await EtcdServer.start(arguments: ["--quota-backend-bytes", "\(4 << 30)"])
defer { server.destroy() }
let endpoint = server.endpoint
let etcdctl = "/usr/bin/etcdctl"
let value = String(repeating: "x", count: 100)
var rows: [Row] = []
print("etcd \(try run(server.binary, ["--version"]).1.split(separator: "\n").first ?? "") at \(endpoint) (data on tmpfs)")

var swift = Row(name: "EtcdClient (Swift)")
var ctl = Row(name: "etcdctl (process per op)")
try await withEtcdClient(server.configuration()) { etcd in
  // Load the read data set: 100-byte values, 128 puts per txn.
  for base in stride(from: 0, to: keys, by: 128) {
    let ops = (base..<min(base + 128, keys)).map { Op.put(String(format: "/bench/data/%07d", $0), value) }
    try await etcd.txn(if: [], then: ops)
  }

  // Sequential puts.
  for i in 0..<200 { try await etcd.put("/bench/warm/\(i)", value) }
  var latencies: [Double] = []
  let start = ContinuousClock.now
  for i in 0..<puts {
    let t = ContinuousClock.now
    try await etcd.put("/bench/put/\(i % 1000)", value)
    latencies.append(seconds(ContinuousClock.now - t))
  }
  let total = seconds(ContinuousClock.now - start)
  swift.putP50 = ms(percentile(latencies, 50))
  swift.putP99 = ms(percentile(latencies, 99))
  swift.putRate = String(format: "%.0f/s", Double(puts) / total)

  // 100k-key read, in process (paginated, pinned to one revision) and whole process.
  var inProcess: [Double] = []
  var count = 0
  for _ in 0..<reads {
    let t = ContinuousClock.now
    count = try await etcd.getAll(.prefix("/bench/data/")).kvs.count
    inProcess.append(seconds(ContinuousClock.now - t))
  }
  precondition(count == keys, "read \(count) keys, expected \(keys)")
  var single: [Double] = []
  for _ in 0..<reads {
    let t = ContinuousClock.now
    count = try await etcd.get(.prefix("/bench/data/")).kvs.count
    single.append(seconds(ContinuousClock.now - t))
  }
  precondition(count == keys)
  let own = CommandLine.arguments[0]
  var wholeProcess: [Double] = []
  for _ in 0..<reads {
    let (t, out) = try run(own, ["read-once", endpoint, "/bench/data/"])
    precondition(Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) == keys)
    wholeProcess.append(t)
  }
  swift.read = "\(ms(median(single))) one Range, \(ms(median(inProcess))) paged (10k), \(ms(median(wholeProcess))) whole process"

  // put → watch event.
  let arrivals = Mutex<[String: ContinuousClock.Instant]>([:])
  let watcher = Task {
    for try await response in etcd.watch(.prefix("/bench/watch/")) {
      let now = ContinuousClock.now
      arrivals.withLock { for e in response.events { $0[e.kv.keyString] = now } }
    }
  }
  try await Task.sleep(for: .milliseconds(300))
  var watchLatencies: [Double] = []
  for i in 0..<watches {
    let key = "/bench/watch/\(i)"
    let t = ContinuousClock.now
    try await etcd.put(key, value)
    while true {
      if let at = arrivals.withLock({ $0[key] }) { watchLatencies.append(seconds(at - t)); break }
      await Task.yield()
    }
  }
  watcher.cancel()
  swift.watchP50 = ms(percentile(watchLatencies, 50))
  swift.watchP99 = ms(percentile(watchLatencies, 99))

  // etcdctl: puts (one process each), whole-process read, and `etcdctl watch` as the floor
  // for put → event, with the puts made by EtcdClient.
  var ctlPuts: [Double] = []
  let ctlStart = ContinuousClock.now
  for i in 0..<100 { ctlPuts.append(try run(etcdctl, ["--endpoints", endpoint, "put", "/bench/ctl/\(i)", value]).0) }
  ctl.putP50 = ms(percentile(ctlPuts, 50))
  ctl.putP99 = ms(percentile(ctlPuts, 99))
  ctl.putRate = String(format: "%.0f/s", 100 / seconds(ContinuousClock.now - ctlStart))
  var ctlReads: [Double] = []
  for _ in 0..<reads {
    let (t, out) = try run(etcdctl, ["--endpoints", endpoint, "get", "--prefix", "/bench/data/"])
    precondition(out.split(separator: "\n").count == 2 * keys)
    ctlReads.append(t)
  }
  ctl.read = "\(ms(median(ctlReads))) whole process"

  let watch = Process()
  watch.executableURL = URL(fileURLWithPath: etcdctl)
  watch.arguments = ["--endpoints", endpoint, "watch", "--prefix", "/bench/ctlwatch/"]
  let pipe = Pipe()
  watch.standardOutput = pipe
  try watch.run()
  let seen = Mutex<[String: ContinuousClock.Instant]>([:])
  let reader = Thread {
    var pending = ""
    while true {
      let data = pipe.fileHandleForReading.availableData
      if data.isEmpty { return }
      let now = ContinuousClock.now
      pending += String(decoding: data, as: UTF8.self)
      while let nl = pending.firstIndex(of: "\n") {
        let line = String(pending[..<nl])
        pending = String(pending[pending.index(after: nl)...])
        if line.hasPrefix("/bench/ctlwatch/") { seen.withLock { $0[line] = now } }
      }
    }
  }
  reader.start()
  try await Task.sleep(for: .milliseconds(500))
  var ctlWatch: [Double] = []
  for i in 0..<watches {
    let key = "/bench/ctlwatch/\(i)"
    let t = ContinuousClock.now
    try await etcd.put(key, value)
    while true {
      if let at = seen.withLock({ $0[key] }) { ctlWatch.append(seconds(at - t)); break }
      await Task.yield()
    }
  }
  watch.terminate()
  ctl.watchP50 = ms(percentile(ctlWatch, 50))
  ctl.watchP99 = ms(percentile(ctlWatch, 99))
}
rows += [swift, ctl]

if usePython {
  var py = Row(name: "grpcio (Python, C-core)")
  let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("python/grpc_peer.py").path
  let (_, out) = try run("/usr/bin/env", ["python3", script, endpoint, "/bench/", "\(puts)", "\(reads)", "\(watches)"])
  if let data = out.split(separator: "\n").last.map({ Data($0.utf8) }),
     let r = try? JSONSerialization.jsonObject(with: data) as? [String: Double] {
    py.putP50 = String(format: "%.3f ms", r["put_p50_ms"]!)
    py.putP99 = String(format: "%.3f ms", r["put_p99_ms"]!)
    py.putRate = String(format: "%.0f/s", r["put_per_s"]!)
    py.read = "\(ms(r["read_s"]!)) one Range"
    py.watchP50 = String(format: "%.3f ms", r["watch_p50_ms"]!)
    py.watchP99 = String(format: "%.3f ms", r["watch_p99_ms"]!)
    rows.append(py)
  } else {
    print("grpcio peer failed (install with: python3 -m pip install grpcio grpcio-tools): \(out)")
  }
}

print("\nsequential puts: \(puts) (100-byte values); read: \(keys) keys x 100 bytes, median of \(reads); put -> watch event: \(watches) samples\n")
let headers = ["client", "put p50", "put p99", "puts/s", "read 100k keys", "watch p50", "watch p99"]
let table = [headers] + rows.map { [$0.name, $0.putP50, $0.putP99, $0.putRate, $0.read, $0.watchP50, $0.watchP99] }
let widths = headers.indices.map { c in table.map { $0[c].count }.max()! }
for (i, line) in table.enumerated() {
  print("| " + line.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: " | ") + " |")
  if i == 0 { print("|" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "|") + "|") }
}
