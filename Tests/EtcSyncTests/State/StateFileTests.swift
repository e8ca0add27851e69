import EtcSync
import Foundation
import Glibc
import Logging
import Templates
import Testing

@Suite("SHA-256")
struct SHA256Tests {
  static func hex(_ bytes: [UInt8]) -> String {
    bytes.map { $0 < 16 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
  }

  @Test(
    "content hashes are SHA-256 (NIST test vectors)",
    arguments: [
      ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
      ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
      (
        "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
      ),
      (
        "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"
      ),
    ])
  func vectors(message: String, digest: String) {
    #expect(ContentHash(of: Array(message.utf8)).description == "sha256:" + digest)
  }

  @Test("a million 'a'")
  func million() {
    let bytes = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
    #expect(Self.hex(ContentHash(of: bytes).digest) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
  }

  @Test("content hashes print and parse as sha256:<hex>")
  func contentHash() {
    let hash = ContentHash(of: Array("abc".utf8))
    #expect(hash.description == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    #expect(ContentHash(hash.description) == hash)
    #expect(ContentHash("md5:abc") == nil)
    #expect(ContentHash("sha256:zz") == nil)
  }
}

@Suite("State file")
struct StateFileTests {
  static func sample() -> SyncState {
    var state = SyncState()
    state[mapping: "nginx"] = MappingState(
      appliedRevision: 42, files: ["/etc/nginx/up.conf": ContentHash(of: Array("x".utf8))])
    state[mapping: "app"].pendingReload = true
    state[mapping: "app"].appliedRevision = 7
    return state
  }

  @Test("a missing file loads as empty; a saved state loads back")
  func roundTrip() throws {
    let dir = TemporaryDirectory()
    let file = StateFile(path: dir("var/lib/etcsync/state.json"), logger: RecordingLogHandler.logger().0)
    #expect(file.load() == SyncState())
    try file.save(Self.sample())
    #expect(file.load() == Self.sample())
    #expect(Disk.lstat(dir("var/lib/etcsync/state.json"))?.st_mode == S_IFREG | 0o600)
    #expect(Disk.lstat(dir("var/lib/etcsync"))?.st_mode == S_IFDIR | 0o755)
    let text = try #require(Disk.read(dir("var/lib/etcsync/state.json")))
    #expect(text.contains("\"pendingReload\" : true"))
    #expect(text.contains("sha256:"))
    #expect(Disk.temporaryFiles(dir.path).isEmpty)
  }

  @Test("a save replaces the old state atomically (new inode, never a partial file)")
  func atomicReplace() throws {
    let dir = TemporaryDirectory()
    let file = StateFile(path: dir("state.json"), logger: RecordingLogHandler.logger().0)
    try file.save(SyncState())
    let inode = Disk.lstat(dir("state.json"))?.st_ino
    var state = Self.sample()
    state[mapping: "big"].files = Dictionary(
      uniqueKeysWithValues: (0..<2000).map { (ExactString("file-\($0)"), ContentHash(of: [UInt8(truncatingIfNeeded: $0)])) })
    try file.save(state)
    #expect(Disk.lstat(dir("state.json"))?.st_ino != inode)
    #expect(file.load() == state)
  }

  @Test(
    "a corrupt file is a warning and an empty state, never a crash",
    arguments: ["{not json", "", "[1,2,3]", "{\"version\": 1, \"mappings\": {\"a\": {\"files\": {\"f\": \"md5:x\"}}}}", "\u{0}\u{1}binary"])
  func corrupt(content: String) throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("state.json"), content)
    let (logger, records) = RecordingLogHandler.logger()
    let state = StateFile(path: dir("state.json"), logger: logger).load()
    #expect(state == SyncState())
    #expect(records.all.contains { $0.0 == .warning && $0.1.contains("corrupt") })
  }

  @Test("a newer format is not trusted; unknown fields and missing optional fields are fine")
  func versions() throws {
    let dir = TemporaryDirectory()
    let (logger, records) = RecordingLogHandler.logger()
    let file = StateFile(path: dir("state.json"), logger: logger)
    try Disk.write(dir("state.json"), #"{"version": 99, "mappings": {}}"#)
    #expect(file.load() == SyncState())
    #expect(records.all.contains { $0.0 == .warning && $0.1.contains("newer format") })
    try Disk.write(dir("state.json"), #"{"version": 1, "extra": true, "mappings": {"m": {"appliedRevision": 5}}}"#)
    #expect(file.load()[mapping: "m"] == MappingState(appliedRevision: 5))
  }

  @Test("an unreadable path is a warning and an empty state")
  func unreadable() throws {
    let dir = TemporaryDirectory()
    try FileManager.default.createDirectory(atPath: dir("state.json"), withIntermediateDirectories: true)
    let (logger, records) = RecordingLogHandler.logger()
    #expect(StateFile(path: dir("state.json"), logger: logger).load() == SyncState())
    #expect(records.all.contains { $0.0 == .warning })
  }

  @Test("temp files a crash left beside the state file are removed on load")
  func leftovers() throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir(".state.json.etcsync-tmp-0011223344556677"), "{")
    try Disk.write(dir(".other.etcsync-tmp-00"), "not ours")
    let file = StateFile(path: dir("state.json"), logger: RecordingLogHandler.logger().0)
    _ = file.load()
    #expect(Disk.names(dir.path) == [".other.etcsync-tmp-00"])
  }

  @Test("saving into a directory that cannot be created is a typed error")
  func saveFails() throws {
    let dir = TemporaryDirectory()
    try Disk.write(dir("blocker"), "a file, not a directory")
    let error = #expect(throws: FileError.self) {
      try StateFile(path: dir("blocker/state.json")).save(SyncState())
    }
    #expect(error?.errno == ENOTDIR)
  }
}
