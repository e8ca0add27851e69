import EtcdClient
import Templates

/// Why a mapping could not be planned. The mapping's files stay as they are.
public struct PlanError: Error, Sendable, CustomStringConvertible {
  public enum Code: Sendable, Hashable {
    /// The template failed (a missing key, a function error, …).
    case render
    /// A `file` mapping's key does not exist.
    case missingKey
    /// A value is not UTF-8 where the output needs text.
    case notText
    /// Keys that cannot be laid out in the document (a key that is also a table, …).
    case badKey
    /// Two keys of a tree would be one file on the destination's file system, which folds
    /// case or Unicode normalization (see ``NameFolding``).
    case nameCollision
  }

  public var code: Code
  public var message: String
  /// The key the error names, as the message writes it (relative to the prefix in a
  /// `format` mapping); nil for a template's error, which names what the template read.
  public var key: String?
  /// The error this one reports (the template's, Yams'), kept whole; the message already says
  /// what it said.
  public var cause: (any Error & Sendable)?

  public init(_ code: Code, _ message: String, key: String? = nil, cause: (any Error & Sendable)? = nil) {
    self.code = code
    self.message = message
    self.key = key
    self.cause = cause
  }

  public var description: String { self.message }
}

/// What a mapping wants on disk for one snapshot.
public enum PlannedOutput: Sendable, Equatable {
  /// One file (template, file and format kinds).
  case file(DesiredFile)
  /// A directory tree (tree kind): relative path → file, keyed by the path's bytes.
  case tree([ExactString: DesiredFile])
}

/// The plan of one mapping: the output, and the keys that were rejected (reported, escaped;
/// the rest of the mapping still syncs).
public struct MappingPlan: Sendable {
  public var output: PlannedOutput
  public var rejected: [KeyPathError]
  /// Tree paths whose keys are valid but conflict with another key (`c` beside `c/d`): a
  /// file already written for one of them stays as it was instead of being deleted.
  public var held: Set<ExactString> = []
}

/// The pure step of the data path: (snapshot, mapping) → desired files. It reads nothing
/// but the snapshot, so a plan always reflects exactly one revision.
public struct MappingPlanner: Sendable {
  public let mapping: Mapping
  /// The compiled template of a `template` mapping.
  public let template: Template?
  public let attributes: FileAttributes
  public let renderOptions: RenderOptions

  public init(mapping: Mapping, template: Template?, attributes: FileAttributes, renderOptions: RenderOptions = RenderOptions()) {
    self.mapping = mapping
    self.template = template
    self.attributes = attributes
    self.renderOptions = renderOptions
  }

  /// Plans the mapping's output for `keySpace`. `folding` is how the destination's file
  /// system matches names (probed by the runner): where it folds, a tree whose keys would
  /// share a file is refused whole (``PlanError/Code/nameCollision``), and its old files stay.
  public func plan(_ keySpace: KeySpace, folding: NameFolding = .exact) throws(PlanError) -> MappingPlan {
    switch self.mapping.kind {
    case .template:
      let data = KeySpaceDataSource(keySpace: keySpace, prefixes: self.mapping.prefixes)
      do {
        // Sized up front: grown by doubling, a 12 MB output held 8 MB and 16 MB buffers at
        // once (a quarter of a 100k-key sync's peak memory). Pages reserved but not written
        // are never touched, so a template that reads a few keys of a large prefix costs
        // nothing for the estimate.
        var bytes: [UInt8] = []
        let (estimate, nonText) = Self.estimatedOutput(data)
        bytes.reserveCapacity(estimate)
        try self.template!.render(into: &bytes, data: data, options: self.renderOptions)
        // Keys that are not UTF-8 are invisible to the template (see KeySpaceDataSource) and
        // reported, as a tree reports keys it cannot make paths of.
        let rejected = nonText.map { KeyPathError(.invalidUTF8, key: $0) }
        return MappingPlan(output: .file(DesiredFile(bytes: bytes, attributes: self.attributes)), rejected: rejected)
      } catch {
        throw PlanError(.render, "\(error)", cause: error)
      }

    case .file:
      let key = self.mapping.key ?? ""
      guard let kv = keySpace[Array(key.utf8)] else {
        throw PlanError(.missingKey, "key \"\(key)\" does not exist", key: key)
      }
      return MappingPlan(output: .file(DesiredFile(bytes: kv.value, attributes: self.attributes)), rejected: [])

    case .tree:
      let (entries, rejected, held) = self.relativeEntries(keySpace)
      try self.refuseCollisions(entries.map(\.0), folding: folding)
      var files: [ExactString: DesiredFile] = [:]
      files.reserveCapacity(entries.count)
      for (path, value) in entries { files[ExactString(path)] = DesiredFile(bytes: value, attributes: self.attributes) }
      return MappingPlan(output: .tree(files), rejected: rejected, held: held)

    case .format:
      let (entries, rejected, _) = self.relativeEntries(keySpace)
      let bytes = try FormatRenderer.render(self.mapping.format ?? .json, entries.map { (key: $0.0, value: $0.1) })
      return MappingPlan(output: .file(DesiredFile(bytes: bytes, attributes: self.attributes)), rejected: rejected)
    }
  }

  /// Bytes of every key and value a template can see, plus a line's worth each and 1/16 more:
  /// about what the usual `key=value` template writes; and the keys a template cannot see
  /// because they are not UTF-8.
  static func estimatedOutput(_ data: KeySpaceDataSource) -> (Int, [[UInt8]]) {
    var total = 4_096
    var nonText: [[UInt8]] = []
    for prefix in data.prefixes {
      data.keySpace.forEach(withPrefix: prefix) { kv in
        total += kv.key.count + kv.value.count + 2
        // ASCII keys (nearly all) are checked without decoding.
        if !kv.key.allSatisfy({ $0 < 0x80 }), String(validating: kv.key, as: UTF8.self) == nil { nonText.append(kv.key) }
        return true
      }
    }
    return (total + total / 16, nonText)
  }

  /// Throws ``PlanError/Code/nameCollision`` naming the first two keys (and how many pairs)
  /// that a folding file system would make one file.
  func refuseCollisions(_ paths: [String], folding: NameFolding) throws(PlanError) {
    let pairs = folding.collisions(paths)
    guard let (first, second) = pairs.first else { return }
    let prefix = KeyPrefix(self.mapping.prefix ?? "")
    let key = { (path: ExactString) in "\"" + escapeBytes(prefix.key(forRelativePath: path.string)) + "\"" }
    let more = pairs.count > 1 ? " (and \(pairs.count - 1) more pair(s))" : ""
    throw PlanError(
      .nameCollision,
      "keys \(key(first)) and \(key(second)) would be one file in \(self.mapping.dest), whose file system is \(folding)\(more): "
        + "nothing is written and the old files stay; rename one of the keys, or use a destination on a case-sensitive, "
        + "non-normalizing file system", key: String(decoding: prefix.key(forRelativePath: first.string), as: UTF8.self))
  }

  /// The mapping's keys as relative paths, in key order, without the rejected ones: keys the
  /// path rules refuse, and keys that are both a file and a directory (also returned as
  /// paths, so that their old files are held).
  func relativeEntries(_ keySpace: KeySpace) -> ([(String, [UInt8])], [KeyPathError], Set<ExactString>) {
    let prefix = KeyPrefix(self.mapping.prefix ?? "")  // its rule: siblings are not walked
    var entries: [(String, [UInt8])] = []
    var rejected: [KeyPathError] = []
    var keysByPath: [ExactString: [UInt8]] = [:]
    keySpace.forEach(withPrefix: prefix) { kv in
      do throws(KeyPathError) {
        let path = try relativePath(forKey: kv.key, prefix: prefix)
        entries.append((path, kv.value))
        keysByPath[ExactString(path)] = kv.key
      } catch {
        rejected.append(error)
      }
      return true
    }
    let conflicts = detectFileDirectoryConflicts(entries.map(\.0))
    if !conflicts.isEmpty {
      entries.removeAll { conflicts.contains(ExactString($0.0)) }
      for path in conflicts.sorted() {
        rejected.append(KeyPathError(.fileDirectoryConflict, key: keysByPath[path] ?? Array(path.utf8)))
      }
    }
    return (entries, rejected, conflicts)
  }
}
