/// What a write-back mapping may push, and when a scan is taken for a fault rather than an
/// edit (`writeBackLimits:` in a mapping; see docs/write-back.md).
///
/// Anyone who can create files in a write-back tree pushes keys with the agent's credentials,
/// and an unmounted or replaced destination reads as if every file had been deleted: these
/// bounds keep both from reaching etcd.
public struct WriteBackLimits: Sendable, Equatable {
  /// A scan in which more than this share (0…1) of the recorded files vanished at once is
  /// refused (with at least ``deleteFiles`` of them): a mass disappearance is a fault, such
  /// as an unmounted file system, not an edit. 1 turns the guard off.
  public var deleteShare: Double
  /// The fewest vanished files that trip the guard: in a small tree, deleting two of three
  /// files is an edit.
  public var deleteFiles: Int
  /// The most keys one scan may put or delete; a scan with more pushes nothing.
  public var keysPerScan: Int
  /// The most value bytes one scan may put; a scan with more pushes nothing.
  public var bytesPerScan: Int
  /// The most keys the mapping's prefix may hold: a new file that would create a key beyond
  /// it is refused (keys written in etcd itself are not limited).
  public var maxKeys: Int
  /// The most bytes (keys and values) the mapping's prefix may hold: a put that would make
  /// it hold more is refused; deletes and puts that shrink it always pass (keys written in
  /// etcd itself are not limited).
  public var maxBytes: Int
  /// The most keys write-back puts or deletes per minute, as a token bucket that holds a
  /// minute's worth: a scan that needs more than is left pushes nothing until enough has
  /// come back.
  public var keysPerMinute: Int
  /// The most value bytes write-back puts per minute, a token bucket like ``keysPerMinute``.
  /// Every put is a new revision in etcd's backend until compaction: this bounds how fast a
  /// local user can fill etcd's quota by rewriting one large file.
  public var bytesPerMinute: Int

  /// The default share of vanished files that trips the guard: more than half.
  public static let defaultDeleteShare = 0.5
  /// The default fewest vanished files that trip the guard.
  public static let defaultDeleteFiles = 3
  /// The default keys per scan.
  public static let defaultKeysPerScan = 1_000
  /// The default bytes per scan (16 MiB).
  public static let defaultBytesPerScan = 16 << 20
  /// The default keys under a write-back prefix.
  public static let defaultMaxKeys = 10_000
  /// The default bytes under a write-back prefix (64 MiB): 3 % of etcd's default backend
  /// quota (2 GiB, `--quota-backend-bytes`), so that one mapping cannot fill the cluster,
  /// and room for 40 values at etcd's default request limit (1.5 MiB).
  public static let defaultMaxBytes = 64 << 20
  /// The default keys per minute: a scan at `keysPerScan` passes, and twenty keys a second
  /// after that, far more than anyone editing files makes.
  public static let defaultKeysPerMinute = 1_200
  /// The default value bytes per minute (16 MiB): one scan at `bytesPerScan`; at that pace
  /// etcd's default 2 GiB quota takes more than two hours of rewrites to fill.
  public static let defaultBytesPerMinute = 16 << 20

  /// Limits with the defaults for everything not given.
  public init(
    deleteShare: Double = Self.defaultDeleteShare, deleteFiles: Int = Self.defaultDeleteFiles,
    keysPerScan: Int = Self.defaultKeysPerScan, bytesPerScan: Int = Self.defaultBytesPerScan,
    maxKeys: Int = Self.defaultMaxKeys, maxBytes: Int = Self.defaultMaxBytes,
    keysPerMinute: Int = Self.defaultKeysPerMinute, bytesPerMinute: Int = Self.defaultBytesPerMinute
  ) {
    self.deleteShare = deleteShare
    self.deleteFiles = deleteFiles
    self.keysPerScan = keysPerScan
    self.bytesPerScan = bytesPerScan
    self.maxKeys = maxKeys
    self.maxBytes = maxBytes
    self.keysPerMinute = keysPerMinute
    self.bytesPerMinute = bytesPerMinute
  }

  /// Whether `vanished` of `recorded` files gone at once is a fault rather than an edit.
  public func isMassDeletion(vanished: Int, recorded: Int) -> Bool {
    guard self.deleteShare < 1, vanished > 0, vanished >= self.deleteFiles else { return false }
    return Double(vanished) > self.deleteShare * Double(recorded)
  }
}

extension WriteBackLimits {
  static let keys = [
    "deleteShare", "deleteFiles", "keysPerScan", "bytesPerScan", "maxKeys", "maxBytes", "keysPerMinute", "bytesPerMinute",
  ]

  /// `{deleteShare: 50%, deleteFiles: 3, keysPerScan: 1000, bytesPerScan: 16MiB, maxKeys: 10000,
  /// maxBytes: 64MiB, keysPerMinute: 1200, bytesPerMinute: 16MiB}`; every key is optional.
  init(decoding node: ConfigNode) throws(ConfigurationError) {
    let map = try node.keyed(Self.keys)
    self.init()
    if let node = map["deleteShare"] { self.deleteShare = try node.share() }
    if let node = map["deleteFiles"] { self.deleteFiles = try node.count(minimum: 1) }
    if let node = map["keysPerScan"] { self.keysPerScan = try node.count(minimum: 1) }
    if let node = map["bytesPerScan"] { self.bytesPerScan = try node.byteSize() }
    if let node = map["maxKeys"] { self.maxKeys = try node.count(minimum: 1) }
    if let node = map["maxBytes"] { self.maxBytes = try node.byteSize() }
    if let node = map["keysPerMinute"] { self.keysPerMinute = try node.count(minimum: 1) }
    if let node = map["bytesPerMinute"] {
      self.bytesPerMinute = try node.byteSize()
      // Less than one value's worth a minute would refuse every scan for good.
      guard self.bytesPerMinute >= 1024 else { throw node.error(.invalidValue, "expected at least 1KiB a minute, got \(self.bytesPerMinute) bytes") }
    }
  }
}

extension ConfigNode {
  /// A whole number of at least `minimum`.
  func count(minimum: Int) throws(ConfigurationError) -> Int {
    let expected = "a whole number of at least \(minimum)"
    guard let value = Int(try self.string(expected: expected).filter { $0 != "_" }), value >= minimum else {
      throw self.invalid(expected)
    }
    return value
  }

  /// A share such as `50%` or `0.5`, above 0 and at most 1 (100%).
  func share() throws(ConfigurationError) -> Double {
    let expected = "a share such as \"50%\" or 0.5 (above 0, at most 100%)"
    let text = try self.string(expected: expected)
    let value = text.hasSuffix("%") ? Double(text.dropLast()).map { $0 / 100 } : Double(text)
    guard let value, value.isFinite, value > 0, value <= 1 else { throw self.invalid(expected) }
    return value
  }

  /// A size in bytes: `16MiB`, `512KiB`, `1GiB` or a number of bytes; at least 1.
  func byteSize() throws(ConfigurationError) -> Int {
    let expected = "a size such as \"16MiB\", \"512KiB\" or a number of bytes"
    let text = try self.string(expected: expected)
    let units: [(String, Int)] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1)]
    var number = Substring(text)
    var unit = 1
    if let (suffix, scale) = units.first(where: { text.hasSuffix($0.0) }) {
      number = text.dropLast(suffix.count)
      unit = scale
    }
    guard let value = Int(number.trimmingSpaces), value >= 1, value <= Int.max / unit else { throw self.invalid(expected) }
    return value * unit
  }
}

extension Substring {
  fileprivate var trimmingSpaces: Substring {
    var text = self
    while text.last == " " { text = text.dropLast() }
    while text.first == " " { text = text.dropFirst() }
    return text
  }
}
