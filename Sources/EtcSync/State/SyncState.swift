import Crypto

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
    "sha256:" + digest.map { $0 < 16 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
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

/// What the agent has applied for one mapping.
public struct MappingState: Hashable, Sendable, Codable {
  /// The etcd revision the mapping's files reflect.
  public var appliedRevision: Int64
  /// Hashes of the files the agent wrote, by path (relative to the mapping's root for a
  /// tree, the destination path for a single file).
  public var files: [String: ContentHash]
  /// Set (and saved) before a batch's files are written, cleared after its reload ran: a
  /// crash in between leaves it set, and the reload runs at the next start.
  public var pendingReload: Bool
  /// Write-back mappings only: what is on disk now at each path as far as the agent knows
  /// (it wrote it, or pushed it), with the mod revision of its key. A file whose bytes differ
  /// from this record is a local edit, also one made while the agent was stopped.
  public var local: [String: LocalRecord]
  /// Write-back mappings only: the records a render is about to make true, saved before it
  /// writes. A file found holding one of them after a crash is the agent's own write, not a
  /// local edit.
  public var intended: [String: LocalRecord]

  /// Creates a mapping state.
  public init(appliedRevision: Int64 = 0, files: [String: ContentHash] = [:], pendingReload: Bool = false,
              local: [String: LocalRecord] = [:]) {
    self.appliedRevision = appliedRevision
    self.files = files
    self.pendingReload = pendingReload
    self.local = local
    self.intended = [:]
  }

  public init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    appliedRevision = try container.decodeIfPresent(Int64.self, forKey: .appliedRevision) ?? 0
    files = try container.decodeIfPresent([String: ContentHash].self, forKey: .files) ?? [:]
    pendingReload = try container.decodeIfPresent(Bool.self, forKey: .pendingReload) ?? false
    local = try container.decodeIfPresent([String: LocalRecord].self, forKey: .local) ?? [:]
    intended = try container.decodeIfPresent([String: LocalRecord].self, forKey: .intended) ?? [:]
  }
}

/// The whole state file: a format version and one ``MappingState`` per mapping name.
public struct SyncState: Hashable, Sendable, Codable {
  /// The format this code writes; a file with a newer version is not trusted.
  public static let currentVersion = 1

  /// The format version of the file.
  public var version: Int
  /// States by mapping name.
  public var mappings: [String: MappingState]
  /// The etcd cluster the files came from: another cluster (restored, wiped, or another
  /// one entirely) is refused until the state file is removed.
  public var clusterID: UInt64?

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
  }

  /// The highest revision any mapping has applied.
  public var appliedRevision: Int64 { self.mappings.values.map(\.appliedRevision).max() ?? 0 }
}
