import EtcdClient
import EtcdTestSupport
import Foundation
import Glibc
import Testing

@testable import EtcSync

/// Deep keys: a key's path is capped at 64 segments, and a write holds one directory
/// descriptor at a time, not one per level (a batch of deep paths exhausted descriptors).
@Suite("Deep keys: depth cap and one descriptor per directory")
struct DeepPathTests {
  static func deepPath(_ segments: Int, leaf: String = "f") -> String {
    (0..<(segments - 1)).map { "d\($0)" }.joined(separator: "/") + "/" + leaf
  }

  @Test("a write-back scan stops at the depth a key can have: a 100-level local tree lists only what can be a key")
  func scanStopsAtDepth() throws {
    let dir = TemporaryDirectory("etcsync-deep-scan")
    let root = dir("tree")
    var path = root
    for level in 1...100 {
      path += "/d"
      try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
      if level == 63 || level == 64 || level == 100 { try Disk.write(path + "/f", "x") }
    }
    try Disk.write(root + "/top", "x")
    let mapping = Mapping(name: "t", kind: .tree, prefixes: ["/t/"], dest: root, swap: .inPlace, writeBack: true)
    let listed = LocalScanner(mapping: mapping).listTree()
    // `top` (1 segment) and the file under 63 directories (64 segments); not the ones deeper.
    #expect(listed.count == 2, "\(listed.map { $0.utf8.split(separator: UInt8(ascii: "/")).count })")
    #expect(listed.allSatisfy { $0.utf8.split(separator: UInt8(ascii: "/")).count <= maximumPathDepth })
  }

  @Test("a path of 64 segments is accepted, 65 is rejected as too deep")
  func depthCap() throws {
    #expect(pathProblem(Self.deepPath(64)) == nil)
    #expect(pathProblem(Self.deepPath(65)) == .tooDeep(segments: 65))
    let key = Array(("/p/" + Self.deepPath(65)).utf8)
    #expect(throws: KeyPathError(.tooDeep(segments: 65), key: key)) { try relativePath(forKey: key, prefix: Array("/p/".utf8)) }
    #expect(KeyPathError(.tooDeep(segments: 65), key: key).description.contains("65 segments, over 64"))
  }

  @Test("descending 63 levels keeps one descriptor; the kept chain keeps all of them")
  func oneDescriptor() throws {
    let dir = TemporaryDirectory("etcsync-deep")
    let components = (0..<63).map { "d\($0)" }
    var released = try RootedDirectory(root: dir.path, create: false, mode: 0o755)
    try released.descend(into: components, create: true, mode: 0o755)
    #expect(released.descriptors.count == 1)
    #expect(released.path == dir.path + "/" + components.joined(separator: "/"))
    #expect(Disk.exists(released.path))
    var chain = try RootedDirectory(root: dir.path, create: false, mode: 0o755, keepChain: true)
    try chain.descend(into: components, create: false, mode: 0o755)
    #expect(chain.descriptors.count == 64)
  }

  @Test("a 65-segment key is rejected (escaped in the report) and the rest of the tree syncs",
        arguments: [Mapping.Swap.symlink, .inPlace])
  func deepKeyRejected(swap: Mapping.Swap) async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let dest = h.dir("tree")
    let mapping = Mapping(name: "tree", kind: .tree, prefixes: ["/deep/"], dest: dest, swap: swap)
    try await h.put("/deep/ok", "1")
    try await h.put("/deep/" + Self.deepPath(64), "deepest allowed")
    try await h.put("/deep/" + Self.deepPath(65, leaf: "\u{1B}x"), "too deep")
    let results = try await h.agent(h.configuration([mapping])).sync()
    #expect(results[0].error == nil)
    #expect(results[0].rejected.map(\.reason) == [.tooDeep(segments: 65)])
    #expect(results[0].rejected.first?.description.contains("\\x1bx") == true)
    #expect(Disk.read(dest + "/ok") == "1")
    #expect(Disk.read(dest + "/" + Self.deepPath(64)) == "deepest allowed")
    #expect(!Disk.exists(dest + "/" + Self.deepPath(65, leaf: "\u{1B}x")))
  }

  @Test("128 keys 64 levels deep, each in its own directory, sync in place under ulimit -n 512")
  func manyDeepKeysFewDescriptors() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    var puts: [(String, String)] = []
    // 62 shared levels, then one directory per file: 128 distinct 63-level directories.
    let common = (0..<62).map { "c\($0)" }.joined(separator: "/")
    for index in 0..<128 { puts.append((common + "/k\(index)/v", "\(index)")) }
    for (path, value) in puts { try await h.put("/many/" + path, value) }
    let config = h.dir("deep.yaml")
    try Disk.write(config, """
      etcd: {endpoints: [\(h.server.endpoint)]}
      state: {dir: \(h.stateDirectory)}
      mappings:
        - {name: deep, kind: tree, prefix: /many/, dest: \(h.dir("out")), swap: in-place}
      """)
    // Before descriptors were released level by level, one group of 128 files held
    // 128 × 64 directory descriptors at once.
    let run = try await EtcsyncProcess.runTool(["/bin/sh", "-c", "ulimit -n 512 && exec \(EtcsyncProcess.binary) sync -c \(config)"])
    #expect(run.status == 0, "\(run.error)")
    for (path, value) in puts { #expect(Disk.read(h.dir("out/" + path)) == value, "\(path)") }
  }
}
