import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Prometheus
import Testing

/// `etcsync_apply_stage_seconds{stage}`: each applied batch's stages, timed from the arrival
/// of its first change, in order; the value type underneath, and a daemon on the in-memory
/// store whose scrape must show every stage of every batch, each later than the one before.
@Suite("Apply stages")
struct ApplyStageTests {
  @Test("stages keep their first time and come out in pipeline order, timed from the arrival")
  func stageOrder() {
    let arrival = ContinuousClock.now
    var stages = ApplyStages(arrival: arrival)
    stages.mark(.rename, at: arrival + .milliseconds(4))
    stages.mark(.applyStart, at: arrival + .milliseconds(1))
    stages.mark(.fsync, at: arrival + .milliseconds(3))
    stages.mark(.fsync, at: arrival + .milliseconds(9))
    let seen = stages.sinceArrival
    #expect(seen.map(\.0) == [.applyStart, .fsync, .rename])
    #expect(seen.map(\.1) == [.milliseconds(1), .milliseconds(3), .milliseconds(4)], "a stage reached twice keeps its first time")
    #expect(ApplyStages().sinceArrival.isEmpty, "without an arrival (a first sync) nothing is timed")
    #expect(ApplyStage.allCases.map(\.rawValue) == ["apply_start", "render", "fsync", "rename", "dir_fsync", "reload"])
  }

  /// `stage` → (count, sum) of the stage histogram in a Prometheus scrape.
  static func stages(_ scrape: String) -> [String: (count: Double, sum: Double)] {
    var found: [String: (count: Double, sum: Double)] = [:]
    for line in scrape.split(separator: "\n") where line.hasPrefix("etcsync_apply_stage_seconds_") {
      let parts = line.split(separator: " ")
      guard parts.count == 2, let value = Double(parts[1]), let open = line.firstIndex(of: "\""),
        let close = line[line.index(after: open)...].firstIndex(of: "\"")
      else { continue }
      let stage = String(line[line.index(after: open)..<close])
      if line.hasPrefix("etcsync_apply_stage_seconds_count{") { found[stage, default: (0, 0)].count = value }
      if line.hasPrefix("etcsync_apply_stage_seconds_sum{") { found[stage, default: (0, 0)].sum = value }
    }
    return found
  }

  @Test("a daemon's batches of a file mapping with a reload record every stage, each reached after the one before")
  func daemonRecordsEveryStage() async throws {
    let h = InMemoryHarness()
    try Disk.write(h.dir("conf.tmpl"), "{{ range gets \"/s/*\" }}{{ base .Key }}={{ .Value }}\n{{ end }}")
    let mappings = [
      Mapping(name: "conf", kind: .template, prefixes: ["/s/"], template: h.dir("conf.tmpl"), dest: h.dir("conf"),
              reload: ["sh", "-c", "true"]),
    ]
    try await h.etcd.put("/s/a", "0")
    let registry = PrometheusCollectorRegistry()
    let metrics = AgentMetrics(mappings: ["conf"], factory: PrometheusMetricsFactory(registry: registry))
    let agent = try Agent(configuration: h.configuration(mappings), store: h.etcd, logger: h.logger, metrics: metrics)
    _ = try await agent.sync()
    let daemon = Daemon(agent)
    #expect(await eventually { h.etcd.watchCount == 1 })
    let scrape = { String(decoding: registry.emitToBuffer(), as: UTF8.self) }
    #expect(Self.stages(scrape()).values.allSatisfy { $0.count == 0 }, "the first sync is not a batch of watched changes")
    // One change at a time: each its own batch.
    for round in 1...3 {
      try await h.etcd.put("/s/a", "\(round)")
      #expect(await eventually { Disk.read(h.dir("conf")) == "a=\(round)\n" })
      #expect(await eventually { Self.stages(scrape())["reload"]?.count == Double(round) }, "\(scrape())")
    }
    let stages = Self.stages(scrape())
    let order = ["apply_start", "render", "fsync", "rename", "dir_fsync", "reload"]
    for stage in order { #expect(stages[stage]?.count == 3, "\(stage): \(scrape())") }
    // Each batch reaches each stage after the one before, so the sums of the times from
    // arrival are in order too.
    let sums = order.map { stages[$0]?.sum ?? -1 }
    #expect(sums == sums.sorted() && sums[0] >= 0, "\(sums)")
    #expect(await daemon.stop() == nil)
  }
}
