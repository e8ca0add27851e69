@testable import EtcSync
import EtcdTestSupport
import Foundation
import Templates
import Testing

/// ``StateJSON``, the state file's hand-written JSON, against two oracles: Foundation's
/// `JSONSerialization` (another parser than the decoder's) must read every value back, paths
/// and names byte for byte, and the
/// `JSONDecoder` that loads the state must give back the very state, for paths made of the
/// characters that need escaping and of canonically equivalent twins.
@Suite("State file JSON")
struct StateJSONTests {
  /// Path pieces chosen to break a JSON writer: quotes, backslashes, every control character,
  /// DEL, slashes, composed and decomposed é (distinct paths), a line separator, an emoji.
  static let pieces: [String] = ["\"", "\\", "/", "a", "\u{7F}", "\u{E9}", "e\u{301}", "\u{2028}", "😀", "%", " "]
    + (0..<0x20).map { String(UnicodeScalar(UInt8($0))) }

  static func randomPath(_ random: inout SplitMix64) -> String {
    (0..<Int.random(in: 1...6, using: &random)).map { _ in pieces.randomElement(using: &random)! }.joined()
  }

  static func randomHash(_ random: inout SplitMix64) -> ContentHash {
    ContentHash(of: (0..<8).map { _ in UInt8.random(in: 0...255, using: &random) })
  }

  static func randomState(seed: UInt64) -> SyncState {
    var random = SplitMix64(seed: seed)
    var state = SyncState()
    if Bool.random(using: &random) { state.clusterID = UInt64.random(in: 0...UInt64.max, using: &random) }
    for _ in 0..<Int.random(in: 0...3, using: &random) {
      let name = randomPath(&random)
      // The extremes too: the digits must be exact.
      let revision = [Int64.min, Int64.max, 0, -1].randomElement(using: &random)! &+ (Bool.random(using: &random) ? 0 : Int64.random(in: 0...1_000_000, using: &random))
      var mapping = MappingState(appliedRevision: revision)
      mapping.pendingReload = Bool.random(using: &random)
      for _ in 0..<Int.random(in: 0...20, using: &random) {
        mapping.files[ExactString(randomPath(&random))] = randomHash(&random)
      }
      for _ in 0..<Int.random(in: 0...5, using: &random) {
        mapping.local[ExactString(randomPath(&random))] = LocalRecord(hash: randomHash(&random), revision: Int64.random(in: 1...1_000, using: &random))
      }
      for _ in 0..<Int.random(in: 0...3, using: &random) {
        mapping.intended[ExactString(randomPath(&random))] = LocalRecord(hash: randomHash(&random), revision: Int64.random(in: 1...1_000, using: &random))
      }
      state.mappings[name] = mapping
      if Bool.random(using: &random) {
        state.destinations[name] = DestinationRecord(path: "/" + randomPath(&random), device: [UInt64.max, UInt64.random(in: 0...UInt64.max, using: &random)].randomElement(using: &random)!, inode: UInt64.random(in: 0...UInt64.max, using: &random))
      }
    }
    return state
  }

  @Test("saves in a row with a kept path order write what a save without it writes: values changed, a path swapped for another, paths added and removed, a mapping renamed")
  func keptOrder() {
    var random = SplitMix64(seed: 7)
    let order = StateJSON.PathOrder()
    var state = SyncState()
    var mapping = MappingState(appliedRevision: 1)
    for _ in 0..<40 { mapping.files[ExactString(Self.randomPath(&random))] = Self.randomHash(&random) }
    state.mappings["m"] = mapping
    var reused = 0
    for step in 0..<300 {
      var files = state.mappings["m"]!.files
      let paths = Array(files.keys)
      switch Int.random(in: 0..<6, using: &random) {
      case 0, 1, 2:
        // A value changes: the same paths, reused order.
        files[paths.randomElement(using: &random)!] = Self.randomHash(&random)
        reused += 1
      case 3:
        // One path swapped for another: as many paths, not the same ones.
        files.removeValue(forKey: paths.randomElement(using: &random)!)
        files[ExactString(Self.randomPath(&random))] = Self.randomHash(&random)
      case 4:
        files[ExactString(Self.randomPath(&random))] = Self.randomHash(&random)
      default:
        if files.count > 1 { files.removeValue(forKey: paths.randomElement(using: &random)!) }
      }
      state.mappings["m"]!.files = files
      state.mappings["m"]!.local = files.count % 3 == 0 ? files.mapValues { LocalRecord(hash: $0, revision: 1) } : [:]
      if step == 150 {
        // Another mapping of the same name's tables is not confused with this one's.
        let old = state.mappings.removeValue(forKey: "m")!
        state.mappings["n"] = old
        state.mappings["m"] = MappingState(appliedRevision: 2, files: [ExactString("z"): Self.randomHash(&random)])
      }
      #expect(StateJSON.encode(state, order: order) == StateJSON.encode(state), "step \(step)")
    }
    #expect(reused > 100)
  }

  @Test("200 generated states, hostile paths: the decoder gives each back, JSONSerialization reads the same pairs")
  func generated() throws {
    for seed in 0..<200 {
      let state = Self.randomState(seed: UInt64(seed))
      let bytes = StateJSON.encode(state)
      let decoded = try JSONDecoder().decode(SyncState.self, from: Data(bytes))
      #expect(decoded == state, "seed \(seed)")
      // The independent parser: every mapping's files as path → hash text, byte for byte.
      let object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any], "seed \(seed)")
      #expect(object["version"] as? Int == 2)
      let mappings = try #require(object["mappings"] as? [String: Any])
      #expect(mappings.count == state.mappings.count, "seed \(seed)")
      for (name, mapping) in state.mappings {
        // Swift's dictionary lookup merges canonical twins; match the name by its bytes.
        let entry = try #require(mappings.first { Array($0.key.utf8) == Array(name.utf8) }?.value as? [String: Any])
        #expect((entry["appliedRevision"] as? NSNumber)?.int64Value == mapping.appliedRevision, "seed \(seed)")
        let pairs = try #require(entry["files"] as? [[String]])
        #expect(pairs.map { Array($0[0].utf8) } == mapping.files.keys.sorted().map { Array($0.string.utf8) }, "seed \(seed)")
        #expect(pairs.map { $0[1] } == mapping.files.keys.sorted().map { mapping.files[$0]!.description }, "seed \(seed)")
        for (table, records) in [("local", mapping.local), ("intended", mapping.intended)] {
          let rows = try #require(entry[table] as? [[Any]], "seed \(seed)")
          let paths = records.keys.sorted()
          #expect(rows.map { Array(($0[0] as? String ?? "").utf8) } == paths.map { Array($0.string.utf8) }, "seed \(seed) \(table)")
          for (row, path) in zip(rows, paths) {
            let record = try #require(row[1] as? [String: Any])
            #expect(record["hash"] as? String == records[path]!.hash.description, "seed \(seed)")
            #expect((record["revision"] as? NSNumber)?.int64Value == records[path]!.revision, "seed \(seed)")
          }
        }
      }
      // Destination paths, byte for byte (the decoder's String == would let a normalised path pass).
      let destinations = try #require(object["destinations"] as? [String: Any])
      #expect(destinations.count == state.destinations.count, "seed \(seed)")
      for (name, record) in state.destinations {
        let entry = try #require(destinations.first { Array($0.key.utf8) == Array(name.utf8) }?.value as? [String: Any])
        #expect(Array((entry["path"] as? String ?? "").utf8) == Array(record.path.utf8), "seed \(seed)")
        #expect((entry["device"] as? NSNumber)?.uint64Value == record.device, "seed \(seed)")
        #expect((entry["inode"] as? NSNumber)?.uint64Value == record.inode, "seed \(seed)")
      }
    }
  }

  @Test("reads back as the state Foundation's encoder wrote before (the format of earlier versions)")
  func sameAsFoundation() throws {
    for seed in 200..<250 {
      let state = Self.randomState(seed: UInt64(seed))
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
      let old = try JSONDecoder().decode(SyncState.self, from: try encoder.encode(state))
      let new = try JSONDecoder().decode(SyncState.self, from: Data(StateJSON.encode(state)))
      #expect(old == new, "seed \(seed)")
    }
  }

  @Test("the layout docs/writing.md shows")
  func layout() {
    var state = SyncState()
    state[mapping: "nginx-upstreams"] = MappingState(appliedRevision: 1042, files: [".": ContentHash(of: Array("x".utf8))])
    state[mapping: "w"] = MappingState(appliedRevision: 3, local: ["a\"b": LocalRecord(hash: ContentHash(of: []), revision: 2)])
    let text = String(decoding: StateJSON.encode(state), as: UTF8.self)
    #expect(text == """
      {
        "destinations" : {},
        "mappings" : {
          "nginx-upstreams" : {
            "appliedRevision" : 1042,
            "files" : [
              [".", "\(ContentHash(of: Array("x".utf8)))"]
            ],
            "intended" : [],
            "local" : [],
            "pendingReload" : false
          },
          "w" : {
            "appliedRevision" : 3,
            "files" : [],
            "intended" : [],
            "local" : [
              ["a\\"b", {"hash" : "\(ContentHash(of: []))", "revision" : 2}]
            ],
            "pendingReload" : false
          }
        },
        "version" : 2
      }

      """)
  }
}
