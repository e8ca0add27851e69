import Crypto
import Templates

/// The SHA-256 of a file's bytes, written `sha256:<64 hex digits>` in the state file.
///
/// It tells a restarted agent which files it wrote and with what content, so that an
/// unchanged file is not rewritten and no needless reload fires. SHA-256 rather than a fast
/// 64-bit hash because "unchanged" is decided from the hash alone, without the old bytes.
public struct ContentHash: Hashable, Sendable, Codable, CustomStringConvertible {
  /// The 32 digest bytes.
  public let digest: [UInt8]

  /// The hash of `bytes` (swift-crypto's SHA-256: BoringSSL's, several times faster than the
  /// hand-written one it replaced, which showed at 13 % of a 100k-key sync's CPU time).
  public init(of bytes: [UInt8]) {
    digest = Array(Crypto.SHA256.hash(data: bytes))
  }

  /// A hash computed elsewhere (a file hashed while it was streamed): its 32 digest bytes.
  init(digest: [UInt8]) {
    self.digest = digest
  }

  /// Parses `sha256:<hex>`; nil when malformed.
  public init?(_ text: String) {
    guard text.hasPrefix("sha256:") else { return nil }
    let hex = Array(text.utf8.dropFirst(7))
    guard hex.count == 64 else { return nil }
    var digest: [UInt8] = []
    for index in stride(from: 0, to: 64, by: 2) {
      guard let byte = UInt8(String(decoding: hex[index..<(index + 2)], as: UTF8.self), radix: 16)
      else { return nil }
      digest.append(byte)
    }
    self.digest = digest
  }

  public var description: String {
    var out: [UInt8] = []
    out.reserveCapacity(71)
    self.append(to: &out)
    return String(decoding: out, as: UTF8.self)
  }

  /// `sha256:<64 hex digits>` appended to `out` (the description, without building a string:
  /// the state file writes one per file).
  func append(to out: inout [UInt8]) {
    out.append(contentsOf: "sha256:".utf8)
    for byte in self.digest {
      out.append(hexDigit(byte >> 4))
      out.append(hexDigit(byte & 0xF))
    }
  }

  public init(from decoder: any Decoder) throws {
    let text = try decoder.singleValueContainer().decode(String.self)
    guard let hash = ContentHash(text) else {
      throw DecodingError.dataCorrupted(
        .init(codingPath: decoder.codingPath, debugDescription: "not a sha256:<hex> hash"))
    }
    self = hash
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(description)
  }
}

/// The bytes a write-back mapping's file had when the agent last wrote or pushed it, and the
/// mod revision of its key then: the base of a local edit's compare-and-swap.
public struct LocalRecord: Hashable, Sendable, Codable {
  /// The content hash of the file's bytes.
  public var hash: ContentHash
  /// The key's mod revision those bytes came from (or were pushed at).
  public var revision: Int64

  /// Creates a record.
  public init(hash: ContentHash, revision: Int64) {
    self.hash = hash
    self.revision = revision
  }
}

/// The directory a write-back mapping watches, as the agent last accepted it: its path and
/// its device and inode. A start that finds another directory there (an unmounted volume's
/// empty mount point, a replaced directory) stops the mapping instead of writing into it.
public struct DestinationRecord: Hashable, Sendable, Codable {
  /// The watched directory's path when it was recorded (another path is a new destination).
  public var path: String
  public var device: UInt64
  public var inode: UInt64

  /// Creates a record.
  public init(path: String, device: UInt64, inode: UInt64) {
    self.path = path
    self.device = device
    self.inode = inode
  }
}

/// What the agent has applied for one mapping.
public struct MappingState: Hashable, Sendable, Codable {
  /// The etcd revision the mapping's files reflect.
  public var appliedRevision: Int64
  /// Hashes of the files the agent wrote, by path (relative to the mapping's root for a
  /// tree, the destination path for a single file).
  public var files: [ExactString: ContentHash]
  /// Set (and saved) before a batch's files are written, cleared after its reload ran: a
  /// crash in between leaves it set, and the reload runs at the next start.
  public var pendingReload: Bool
  /// Write-back mappings only: what is on disk now at each path as far as the agent knows
  /// (it wrote it, or pushed it), with the mod revision of its key. A file whose bytes differ
  /// from this record is a local edit, also one made while the agent was stopped.
  public var local: [ExactString: LocalRecord]
  /// Write-back mappings only: the records a render is about to make true, saved before it
  /// writes. A file found holding one of them after a crash is the agent's own write, not a
  /// local edit.
  public var intended: [ExactString: LocalRecord]

  /// Creates a mapping state.
  public init(appliedRevision: Int64 = 0, files: [ExactString: ContentHash] = [:], pendingReload: Bool = false,
              local: [ExactString: LocalRecord] = [:]) {
    self.appliedRevision = appliedRevision
    self.files = files
    self.pendingReload = pendingReload
    self.local = local
    self.intended = [:]
  }

  public init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    appliedRevision = try container.decodeIfPresent(Int64.self, forKey: .appliedRevision) ?? 0
    files = try container.decodeIfPresent(PathTable<ContentHash>.self, forKey: .files)?.entries ?? [:]
    pendingReload = try container.decodeIfPresent(Bool.self, forKey: .pendingReload) ?? false
    local = try container.decodeIfPresent(PathTable<LocalRecord>.self, forKey: .local)?.entries ?? [:]
    intended = try container.decodeIfPresent(PathTable<LocalRecord>.self, forKey: .intended)?.entries ?? [:]
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.container(keyedBy: CodingKeys.self)
    try container.encode(appliedRevision, forKey: .appliedRevision)
    try container.encode(PathTable(files), forKey: .files)
    try container.encode(pendingReload, forKey: .pendingReload)
    try container.encode(PathTable(local), forKey: .local)
    try container.encode(PathTable(intended), forKey: .intended)
  }

  private enum CodingKeys: String, CodingKey { case appliedRevision, files, pendingReload, local, intended }
}

/// A path-keyed table as the state file writes it: a list of `[path, value]` pairs in byte
/// order of the paths. A JSON object cannot carry it: Foundation's JSON coders key objects by
/// `String`, so two canonically equivalent paths (`\u{E9}`, `e\u{301}`) became one entry.
/// Version 1's object form is still read.
struct PathTable<Value: Codable>: Codable {
  var entries: [ExactString: Value]

  init(_ entries: [ExactString: Value]) {
    self.entries = entries
  }

  init(from decoder: any Decoder) throws {
    if let object = try? decoder.singleValueContainer().decode([String: Value].self) {
      // Version 1: an object. Its keys were already merged by the decoder; nothing better
      // can be read from it, and the next save writes pairs.
      self.entries = Dictionary(object.map { (ExactString($0.key), $0.value) }, uniquingKeysWith: { first, _ in first })
      return
    }
    var list = try decoder.unkeyedContainer()
    var entries: [ExactString: Value] = [:]
    while !list.isAtEnd {
      var pair = try list.nestedUnkeyedContainer()
      let path = try pair.decode(String.self)
      let value = try pair.decode(Value.self)
      guard entries.updateValue(value, forKey: ExactString(path)) == nil else {
        throw DecodingError.dataCorruptedError(in: pair, debugDescription: "path \"\(escapeBytes(path.utf8))\" is listed twice")
      }
    }
    self.entries = entries
  }

  func encode(to encoder: any Encoder) throws {
    var list = encoder.unkeyedContainer()
    for path in entries.keys.sorted() {
      var pair = list.nestedUnkeyedContainer()
      try pair.encode(path.string)
      try pair.encode(entries[path]!)
    }
  }
}

/// The whole state file: a format version and one ``MappingState`` per mapping name.
public struct SyncState: Hashable, Sendable, Codable {
  /// The format this code writes; a file with a newer version is not trusted.
  public static let currentVersion = 2

  /// The format version of the file.
  public var version: Int
  /// States by mapping name.
  public var mappings: [String: MappingState]
  /// The etcd cluster the files came from: another cluster (restored, wiped, or another
  /// one entirely) is refused until the state file is removed.
  public var clusterID: UInt64?
  /// The watched directory of each write-back mapping, by mapping name, as last accepted.
  /// Kept beside the mappings' states (which a render replaces whole); absent in files
  /// written before it was kept, which read as "nothing recorded yet". The version stays 2:
  /// an older agent ignores the key.
  public var destinations: [String: DestinationRecord] = [:]

  /// Creates a state (empty by default).
  public init(mappings: [String: MappingState] = [:]) {
    self.version = Self.currentVersion
    self.mappings = mappings
  }

  /// The state of mapping `name`; an empty state when it has none yet.
  public subscript(mapping name: String) -> MappingState {
    get { mappings[name] ?? MappingState() }
    // In place, so that `state[mapping: m].files[path] = hash` does not copy the dictionary.
    _modify { yield &mappings[name, default: MappingState()] }
  }

  public init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    version = try container.decode(Int.self, forKey: .version)
    mappings = try container.decodeIfPresent([String: MappingState].self, forKey: .mappings) ?? [:]
    clusterID = try container.decodeIfPresent(UInt64.self, forKey: .clusterID)
    destinations = try container.decodeIfPresent([String: DestinationRecord].self, forKey: .destinations) ?? [:]
  }

  /// The highest revision any mapping has applied.
  public var appliedRevision: Int64 { self.mappings.values.map(\.appliedRevision).max() ?? 0 }
}

/// The lower-case hexadecimal digit of `nibble` (0–15).
func hexDigit(_ nibble: UInt8) -> UInt8 {
  nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
}
