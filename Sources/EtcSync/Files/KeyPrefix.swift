import EtcdClient

/// A mapping's prefix, and the one rule for which etcd keys it covers. Every place that asks
/// "is this key the mapping's?" — the ranges the agent reads and watches, the events it
/// keeps, the keys a template sees, the paths of a tree or format mapping and the keys
/// write-back pushes — asks this type.
///
/// The rule: a prefix is a directory of keys.
/// - An empty prefix, or one ending in `/` (`/app/config/`), covers every key that starts
///   with it.
/// - A prefix without the trailing `/` (`/app/config`) covers the key equal to it and every
///   key that starts with it followed by `/` (`/app/config/db/url`), and never a sibling that
///   merely shares its bytes (`/app/config2/x`, `/app/configX`, `/app/config-old`).
///
/// Keys are compared as bytes.
public struct KeyPrefix: Sendable, Hashable, CustomStringConvertible {
  /// The prefix as configured.
  public let bytes: [UInt8]

  /// The prefix `text`, as its UTF-8 bytes.
  public init(_ text: String) { self.bytes = Array(text.utf8) }

  /// The prefix `bytes`.
  public init(bytes: [UInt8]) { self.bytes = bytes }

  public var description: String { String(decoding: self.bytes, as: UTF8.self) }

  /// Whether the prefix ends in `/` (or is empty): then it covers every key starting with it.
  public var isDirectory: Bool { self.bytes.last.map { $0 == UInt8(ascii: "/") } ?? true }

  /// The bytes every key below the prefix starts with: the prefix, with a `/` appended when
  /// it has none.
  public var directory: [UInt8] { self.isDirectory ? self.bytes : self.bytes + [UInt8(ascii: "/")] }

  /// Whether the prefix covers `key`.
  public func contains(_ key: some Collection<UInt8>) -> Bool {
    self.remainder(of: key) != nil
  }

  /// The part of `key` below the prefix (after the separating `/` of a prefix without one):
  /// `db/url` for `/app/config/db/url` under `/app/config` or `/app/config/`; empty for the
  /// key equal to the prefix; nil when the prefix does not cover `key`.
  public func remainder<Key: Collection<UInt8>>(of key: Key) -> Key.SubSequence? {
    guard key.starts(with: self.bytes) else { return nil }
    let rest = key.dropFirst(self.bytes.count)
    if self.isDirectory || rest.isEmpty { return rest }
    guard rest.first == UInt8(ascii: "/") else { return nil }
    return rest.dropFirst()
  }

  /// The key of the relative path `path` below the prefix (the inverse of ``remainder(of:)``).
  public func key(forRelativePath path: String) -> [UInt8] {
    self.directory + Array(path.utf8)
  }

  /// The pieces of the key space the prefix covers, in key order and disjoint: a prefix walk
  /// (`exact == false`: every key starting with `key`) or one exact key.
  var units: [(key: [UInt8], exact: Bool)] {
    self.isDirectory ? [(self.bytes, false)] : [(self.bytes, true), (self.directory, false)]
  }

  /// The etcd ranges that hold exactly the keys the prefix covers (one or two).
  public var ranges: [KeyRange] {
    self.units.map { $0.exact ? KeyRange.key($0.key) : KeyRange.prefix($0.key) }
  }

  /// Whether every key this prefix covers is also covered by `other`.
  public func isWithin(_ other: KeyPrefix) -> Bool {
    self.units.allSatisfy { unit in
      other.units.contains { covering in
        covering.exact ? (unit.exact && unit.key == covering.key) : unit.key.starts(with: covering.key)
      }
    }
  }
}

/// The disjoint pieces that several prefixes cover together, in key order: walking them in
/// turn visits every covered key once, in key order.
func coveringUnits(_ prefixes: [KeyPrefix]) -> [(key: [UInt8], exact: Bool)] {
  let all = prefixes.flatMap(\.units)
  var kept: [(key: [UInt8], exact: Bool)] = []
  for (index, unit) in all.enumerated() {
    let covered = all.enumerated().contains { other, covering in
      guard other != index, !covering.exact else { return false }
      guard unit.key.starts(with: covering.key) else { return false }
      // Two equal walks: keep the first.
      return unit.exact || unit.key.count > covering.key.count || other < index
    }
    let duplicate = kept.contains { $0.exact == unit.exact && $0.key == unit.key }
    if !covered && !duplicate { kept.append(unit) }
  }
  return kept.sorted { $0.key.lexicographicallyPrecedes($1.key) }
}
