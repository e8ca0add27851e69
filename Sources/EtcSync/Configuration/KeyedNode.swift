import Yams

/// A YAML mapping whose keys have been checked: every key is one of those allowed (else an
/// "unknown key" error with a suggestion), merge keys (`<<: *defaults`) are applied, and
/// keys whose value is empty (`~`, `null`, nothing) count as absent.
struct KeyedNode {
  let node: ConfigNode
  private var values: [String: ConfigNode] = [:]
  /// Keys written in the mapping itself (even with an empty value), which merges do not touch.
  private var written: Set<String> = []

  init(_ node: ConfigNode, keys: [String], allowExtensions: Bool) throws(ConfigurationError) {
    self.node = node
    guard case .mapping(let mapping) = node.node else {
      throw node.invalid("a mapping with the keys " + keys.joined(separator: ", "))
    }
    var merged: [(Node, Node)] = []
    for (key, value) in mapping {
      if case .scalar(let scalar) = key, scalar.string == "<<", scalar.style == .plain {
        merged += try Self.mergeSources(value, in: node)
        continue
      }
      try self.add(key: key, value: value, keys: keys, allowExtensions: allowExtensions, override: true)
    }
    for (key, value) in merged {
      try self.add(key: key, value: value, keys: keys, allowExtensions: allowExtensions, override: false)
    }
  }

  /// The pairs a merge key brings in: a mapping, or a list of mappings (earlier ones win).
  private static func mergeSources(_ value: Node, in node: ConfigNode) throws(ConfigurationError) -> [(Node, Node)] {
    let sources: [Node]
    switch value {
    case .mapping: sources = [value]
    case .sequence(let sequence): sources = Array(sequence)
    default: sources = [value]
    }
    var pairs: [(Node, Node)] = []
    for source in sources {
      guard case .mapping(let mapping) = source else {
        throw node.child("<<", source).invalid("a mapping (or a list of mappings) to merge")
      }
      for (key, value) in mapping { pairs.append((key, value)) }
    }
    return pairs
  }

  private mutating func add(
    key: Node, value: Node, keys: [String], allowExtensions: Bool, override: Bool
  ) throws(ConfigurationError) {
    guard case .scalar(let scalar) = key else {
      let what = key.mapping != nil ? "mapping" : "list"
      throw self.node.child("?", key).error(.invalidValue, "expected a key name, got a \(what)")
    }
    let name = scalar.string
    guard keys.contains(name) else {
      if allowExtensions && name.hasPrefix("x-") { return }
      let keyNode = self.node.child(name, key)
      if let suggestion = KeySuggestion.closest(to: name, in: keys) {
        throw keyNode.error(.unknownKey, "unknown key; did you mean \"\(suggestion)\"?")
      }
      throw keyNode.error(.unknownKey, "unknown key; expected one of: " + keys.joined(separator: ", "))
    }
    if !override && (self.written.contains(name) || self.values[name] != nil) { return }
    if override { self.written.insert(name) }
    let child = self.node.child(name, value)
    if child.isNull {
      self.values[name] = nil
    } else {
      self.values[name] = child
    }
  }

  /// The value of `key`, or nil when it is absent or empty.
  subscript(_ key: String) -> ConfigNode? { self.values[key] }

  /// Whether `key` has a (non-empty) value.
  func has(_ key: String) -> Bool { self.values[key] != nil }

  /// The keys with values, in no particular order.
  var presentKeys: [String] { Array(self.values.keys) }

  /// The value of a required key; when absent, an error at the mapping that names the key
  /// and says what it should hold.
  func required(_ key: String, _ what: String) throws(ConfigurationError) -> ConfigNode {
    guard let value = self.values[key] else { throw self.missing(key, what) }
    return value
  }

  /// An error for a missing key, located at the mapping.
  func missing(_ key: String, _ what: String) -> ConfigurationError {
    self.node.error(.missingKey, "missing; \(what)", field: self.fieldPath(key))
  }

  /// An error about `key` located at its value.
  func error(at key: String, _ code: ConfigurationError.Code, _ message: String) -> ConfigurationError {
    (self.values[key] ?? self.node).error(code, message, field: self.fieldPath(key))
  }

  func fieldPath(_ key: String) -> String {
    self.node.path.isEmpty ? key : "\(self.node.path).\(key)"
  }

  // MARK: Optional typed values

  func string(_ key: String) throws(ConfigurationError) -> String? {
    try self.values[key]?.nonEmptyString()
  }

  func bool(_ key: String) throws(ConfigurationError) -> Bool? {
    try self.values[key]?.bool()
  }

  func duration(_ key: String) throws(ConfigurationError) -> Duration? {
    try self.values[key]?.duration()
  }
}
