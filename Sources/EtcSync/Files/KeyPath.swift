import Templates

/// A key that cannot become a file path below a mapping root. The description shows the key
/// escaped (printable ASCII as is, every other byte as `\xNN`), never raw.
public struct KeyPathError: Error, Sendable, Equatable, CustomStringConvertible {
  /// Why the key was rejected.
  public enum Reason: Sendable, Equatable {
    /// The key does not start with the mapping's prefix.
    case notUnderPrefix
    /// The key is the prefix itself, so it names no file.
    case emptyPath
    /// The path left after the prefix starts with "/".
    case absolute
    /// Two slashes in a row, or a trailing slash (`a//b`, `a/`).
    case emptySegment
    /// A `.` or `..` segment.
    case dotSegment
    /// The key contains a NUL byte.
    case containsNUL
    /// The key is not valid UTF-8.
    case invalidUTF8
    /// A segment is longer than 255 bytes (`NAME_MAX`).
    case segmentTooLong(bytes: Int)
    /// The path is longer than 4096 bytes (`PATH_MAX`).
    case pathTooLong(bytes: Int)
    /// The path has more than ``maximumPathDepth`` segments (64): each level is a directory
    /// to create and open, and a deep tree is an exhaustion attack, not a configuration.
    case tooDeep(segments: Int)
    /// A segment has a name etcsync keeps for itself: a temp file name
    /// (`.NAME.etcsync-tmp-…`) or, first segment only, a name starting with `..` (the tree
    /// swap's `..data` and hidden revision directories).
    case reservedName
    /// The key is both a file and a directory (`a` and `a/b`).
    case fileDirectoryConflict
  }

  /// Why the key was rejected.
  public var reason: Reason
  /// The key's raw bytes.
  public var key: [UInt8]

  /// Creates an error for `key`.
  public init(_ reason: Reason, key: [UInt8]) {
    self.reason = reason
    self.key = key
  }

  /// The key with every byte outside printable ASCII written as `\xNN`.
  public var escapedKey: String { escapeBytes(key) }

  public var description: String { "rejected key \"\(escapedKey)\": \(reasonText)" }

  private var reasonText: String {
    switch reason {
    case .notUnderPrefix: "key is not under the mapping's prefix"
    case .emptyPath: "key names the prefix itself, not a file below it"
    case .absolute: "path below the prefix is absolute (starts with '/')"
    case .emptySegment: "path has an empty segment ('//' or a trailing '/')"
    case .dotSegment: "path has a '.' or '..' segment"
    case .containsNUL: "key contains a NUL byte"
    case .invalidUTF8: "key is not valid UTF-8"
    case .segmentTooLong(let bytes): "a path segment is \(bytes) bytes, over 255"
    case .pathTooLong(let bytes): "path is \(bytes) bytes, over 4096"
    case .tooDeep(let segments): "path has \(segments) segments, over \(maximumPathDepth)"
    case .reservedName: "path uses a name reserved for etcsync's temporary files and tree layout"
    case .fileDirectoryConflict: "key is both a file and a directory of another key"
    }
  }
}

/// The longest file name Linux accepts (`NAME_MAX`).
public let maximumSegmentBytes = 255
/// The longest relative path etcsync accepts (`PATH_MAX`).
public let maximumPathBytes = 4096
/// The most segments a relative path may have (`a/b/c` has 3): at most 63 directories below
/// a mapping root.
public let maximumPathDepth = 64

/// Maps an etcd key below a mapping's prefix to a relative file path:
/// `/app/conf/db/url` with prefix `/app/conf/` gives `db/url`.
///
/// A prefix that does not end in "/" is treated as a directory (the rule is ``KeyPrefix``'s):
/// with prefix `/app/conf` the key `/app/conf/db/url` also gives `db/url`, while
/// `/app/config2/x` is not under it.
/// Rejected: a result that is empty or absolute, empty, `.` or `..` segments, NUL bytes,
/// non-UTF-8 keys, segments over 255 bytes, paths over 4096 bytes or 64 segments, and names
/// reserved for etcsync (see ``KeyPathError/Reason/reservedName``).
public func relativePath(forKey key: [UInt8], prefix: [UInt8]) throws(KeyPathError) -> String {
  try relativePath(forKey: key, prefix: KeyPrefix(bytes: prefix))
}

/// The relative path of `key` below `prefix`; see ``relativePath(forKey:prefix:)-([UInt8],[UInt8])``.
public func relativePath(forKey key: [UInt8], prefix: KeyPrefix) throws(KeyPathError) -> String {
  guard let rest = prefix.remainder(of: key) else { throw KeyPathError(.notUnderPrefix, key: key) }
  guard !rest.contains(0) else { throw KeyPathError(.containsNUL, key: key) }
  guard let path = String(validating: rest, as: UTF8.self) else {
    throw KeyPathError(.invalidUTF8, key: key)
  }
  if let reason = pathProblem(path) { throw KeyPathError(reason, key: key) }
  return path
}

/// Why `path` is not a clean relative path, or nil when it is one.
func pathProblem(_ path: String) -> KeyPathError.Reason? {
  if path.isEmpty { return .emptyPath }
  if path.utf8.first == UInt8(ascii: "/") { return .absolute }
  if path.utf8.contains(0) { return .containsNUL }
  for (index, segment) in path.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).enumerated() {
    if let problem = segmentProblem(segment, isFirst: index == 0) { return problem }
  }
  if path.utf8.count > maximumPathBytes { return .pathTooLong(bytes: path.utf8.count) }
  let segments = path.utf8.count(where: { $0 == UInt8(ascii: "/") }) + 1
  if segments > maximumPathDepth { return .tooDeep(segments: segments) }
  return nil
}

private func segmentProblem(_ segment: Substring.UTF8View.SubSequence, isFirst: Bool)
  -> KeyPathError.Reason?
{
  if segment.isEmpty { return .emptySegment }
  if segment.elementsEqual(".".utf8) || segment.elementsEqual("..".utf8) { return .dotSegment }
  if segment.count > maximumSegmentBytes { return .segmentTooLong(bytes: segment.count) }
  if isFirst && segment.starts(with: "..".utf8) { return .reservedName }
  if isTemporaryFileName(segment) { return .reservedName }
  return nil
}

/// The paths of `paths` that are both a file and a directory of another path (`a` and
/// `a/b`): both sides are returned, so that both are rejected and neither wins by accident.
/// Paths are compared as bytes: `\u{E9}` and `e\u{301}` are two names, as on disk.
public func detectFileDirectoryConflicts(_ paths: [String]) -> Set<ExactString> {
  let files = Set(paths.map { ExactString($0) })
  var directories = Set<ExactString>()
  for path in files {
    for prefix in directoryPrefixes(of: path) { directories.insert(prefix) }
  }
  var conflicts = Set<ExactString>()
  for path in files {
    if directories.contains(path) { conflicts.insert(path) }
    if directoryPrefixes(of: path).contains(where: { files.contains($0) }) { conflicts.insert(path) }
  }
  return conflicts
}

/// `a` and `a/b` for `a/b/c`: every directory above a relative path, split at `/` bytes.
private func directoryPrefixes(of path: ExactString) -> [ExactString] {
  let bytes = Array(path.utf8)
  var prefixes: [ExactString] = []
  for (index, byte) in bytes.enumerated() where byte == UInt8(ascii: "/") {
    prefixes.append(ExactString(String(decoding: bytes[..<index], as: UTF8.self)))
  }
  return prefixes
}

/// Writes printable ASCII as is (backslash and double quote escaped) and every other byte as
/// `\xNN`, so that a hostile key never reaches a log or terminal raw.
public func escapeBytes(_ bytes: some Sequence<UInt8>) -> String {
  var text = ""
  for byte in bytes {
    switch byte {
    case UInt8(ascii: "\\"): text += "\\\\"
    case UInt8(ascii: "\""): text += "\\\""
    case 0x20...0x7E: text.unicodeScalars.append(Unicode.Scalar(byte))
    default:
      let hex = String(byte, radix: 16)
      text += "\\x" + (hex.count == 1 ? "0" + hex : hex)
    }
  }
  return text
}

/// `path` split at its `/` bytes. `String.split(separator: "/")` splits at Characters, and a
/// `/` followed by a combining mark is one Character that is not `/`: the segment would then
/// hold a slash, and an `openat` of it would walk two directories at once.
func pathSegments(_ path: String, omittingEmpty: Bool = true) -> [String] {
  path.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: omittingEmpty)
    .map { String(decoding: $0, as: UTF8.self) }
}

/// The part of `path` before its last `/` byte and the part after it; nil when it has none.
func splitLastSlash(_ path: String) -> (directory: String, name: String)? {
  let bytes = Array(path.utf8)
  guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return nil }
  return (String(decoding: bytes[..<slash], as: UTF8.self), String(decoding: bytes[(slash + 1)...], as: UTF8.self))
}
