import EtcSync
import EtcdClient
import Testing

/// The agent's snapshot: whole revisions, nothing applied twice, prefix walks in etcd's order.
@Suite("Key space")
struct KeySpaceTests {
  static func kv(_ key: [UInt8], _ value: String, revision: Int64) -> KeyValue {
    KeyValue(key: key, value: Array(value.utf8), createRevision: revision, modRevision: revision, version: 1)
  }

  static func kv(_ key: String, _ value: String, revision: Int64) -> KeyValue {
    kv(Array(key.utf8), value, revision: revision)
  }

  static func put(_ key: String, _ value: String, at revision: Int64) -> WatchEvent {
    WatchEvent(kind: .put, kv: kv(key, value, revision: revision))
  }

  static func delete(_ key: String, at revision: Int64) -> WatchEvent {
    WatchEvent(kind: .delete, kv: KeyValue(key: Array(key.utf8), value: [], modRevision: revision))
  }

  @Test("events at or below the snapshot's revision are dropped")
  func dropsOldEvents() {
    var space = KeySpace(revision: 10, kvs: [Self.kv("/a", "a10", revision: 10), Self.kv("/b", "b9", revision: 9)])
    let applied = space.apply([
      Self.put("/a", "stale", at: 9), Self.delete("/b", at: 10), Self.put("/c", "c11", at: 11), Self.delete("/b", at: 12),
    ])
    #expect(applied.map(\.revision) == [11, 12])
    #expect(space.revision == 12)
    #expect(space[Array("/a".utf8)]?.value == Array("a10".utf8))
    #expect(space[Array("/b".utf8)] == nil)
    #expect(space[Array("/c".utf8)]?.value == Array("c11".utf8))
    // The same response delivered again changes nothing.
    #expect(space.apply([Self.put("/c", "again", at: 11), Self.delete("/b", at: 12)]).isEmpty)
    #expect(space[Array("/c".utf8)]?.value == Array("c11".utf8))
    #expect(space.count == 2)
  }

  @Test("a revision with several events is applied whole, in order")
  func wholeRevision() {
    var space = KeySpace(revision: 5)
    let applied = space.apply([Self.put("/x", "1", at: 6), Self.put("/y", "1", at: 6), Self.delete("/x", at: 7), Self.put("/x", "2", at: 7)])
    #expect(applied.count == 4)
    #expect(space.revision == 7)
    #expect(space.values(withPrefix: Array("/".utf8)).map(\.valueString) == ["2", "1"])
  }

  @Test("advance moves the revision forward only")
  func advance() {
    var space = KeySpace(revision: 5)
    space.advance(to: 9)
    #expect(space.revision == 9)
    space.advance(to: 3)
    #expect(space.revision == 9)
    #expect(space.apply([Self.put("/x", "1", at: 8)]).isEmpty)
  }

  @Test("prefix walks follow etcd's byte order, not String order, and stop at the prefix's end")
  func byteOrder() {
    let keys: [[UInt8]] = [
      Array("/p/b".utf8), Array("/p/a".utf8), Array("/p/é".utf8), Array("/p/Z".utf8), Array("/p/a/b".utf8),
      Array("/p/".utf8) + [0xFF], Array("/p/".utf8) + [0x00], Array("/p0".utf8), Array("/o".utf8), Array("/p".utf8),
      Array("/p/a-".utf8),
    ]
    let space = KeySpace(revision: 1, kvs: keys.map { Self.kv($0, "v", revision: 1) })
    let walked = space.values(withPrefix: Array("/p/".utf8)).map(\.key)
    #expect(walked == [
      Array("/p/".utf8) + [0x00], Array("/p/Z".utf8), Array("/p/a".utf8), Array("/p/a-".utf8), Array("/p/a/b".utf8),
      Array("/p/b".utf8), Array("/p/é".utf8), Array("/p/".utf8) + [0xFF],
    ])
    #expect(walked == walked.sorted { $0.lexicographicallyPrecedes($1) })
    // Stopping early.
    var seen: [[UInt8]] = []
    space.forEach(withPrefix: Array("/p/a".utf8)) { seen.append($0.key); return seen.count < 2 }
    #expect(seen == [Array("/p/a".utf8), Array("/p/a-".utf8)])
    #expect(space.values(withPrefix: Array("/q".utf8)).isEmpty)
    #expect(space.values(withPrefix: []).count == keys.count)
  }

  @Test("a snapshot read in etcd's order (the usual case) walks and looks up like a sorted one")
  func alreadyOrdered() {
    let keys: [[UInt8]] = [
      Array("/p".utf8), Array("/p/".utf8) + [0x00], Array("/p/a".utf8), Array("/p/a-".utf8), Array("/p/a/b".utf8),
      Array("/p/é".utf8), Array("/p/".utf8) + [0xFF], Array("/p0".utf8),
    ]
    let space = KeySpace(revision: 4, kvs: keys.map { Self.kv($0, "v", revision: 4) })
    #expect(space.values(withPrefix: []).map(\.key) == keys)
    #expect(space.values(withPrefix: Array("/p/a".utf8)).count == 3)
    #expect(keys.allSatisfy { space[$0]?.valueString == "v" })
    // One key out of place is noticed, and the walk is sorted all the same.
    let swapped = [keys[2], keys[1]] + keys.dropFirst(3) + [keys[0]]
    let resorted = KeySpace(revision: 4, kvs: swapped.map { Self.kv($0, "v", revision: 4) })
    #expect(resorted.values(withPrefix: []).map(\.key) == [keys[0], keys[1]] + keys.dropFirst(2))
  }

  @Test("keys added and removed by events keep the walk ordered")
  func orderAfterEvents() {
    var space = KeySpace(revision: 1, kvs: [Self.kv("/p/m", "1", revision: 1)])
    space.apply([Self.put("/p/z", "1", at: 2), Self.put("/p/a", "1", at: 2)])
    space.apply([Self.delete("/p/m", at: 3), Self.put("/p/n", "1", at: 3)])
    #expect(space.values(withPrefix: Array("/p/".utf8)).map(\.keyString) == ["/p/a", "/p/n", "/p/z"])
  }

  @Test("a template sees only its mapping's prefixes, each walked once")
  func dataSource() {
    let space = KeySpace(revision: 1, kvs: ["/a/1", "/a/2", "/a/sub/3", "/b/1", "/c/1"].map { Self.kv($0, $0, revision: 1) })
    let source = KeySpaceDataSource(keySpace: space, prefixes: ["/a/", "/a/sub/", "/b/"])
    #expect(source.value(forKey: "/c/1") == nil)
    #expect(source.value(forKey: "/b/1") == Array("/b/1".utf8))
    var walked: [String] = []
    source.forEachEntry(withPrefix: "/") { key, _ in walked.append(key); return true }
    #expect(walked == ["/a/1", "/a/2", "/a/sub/3", "/b/1"])
    walked = []
    source.forEachEntry(withPrefix: "/a/sub") { key, _ in walked.append(key); return true }
    #expect(walked == ["/a/sub/3"])
  }
}
