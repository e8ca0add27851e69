import Yams

/// What a whole decoding pass shares: the source name for error messages, the directory
/// relative paths are resolved against, and where each field's value was found (so that
/// checks made after decoding can still point at a line).
final class DecodingContext {
  let sourceName: String
  let baseDirectory: String?
  /// Field path (`mappings[1].dest`) → position of its value.
  var marks: [String: Mark] = [:]

  init(sourceName: String, baseDirectory: String?) {
    self.sourceName = sourceName
    self.baseDirectory = baseDirectory
  }
}

/// A YAML node together with the field path that leads to it, with typed readers whose
/// errors carry the file, line, column and path.
struct ConfigNode {
  let node: Node
  let path: String
  let context: DecodingContext

  init(node: Node, path: String, context: DecodingContext) {
    self.node = node
    self.path = path
    self.context = context
    if let mark = node.mark { context.marks[path] = mark }
  }

  func child(_ key: String, _ node: Node) -> ConfigNode {
    ConfigNode(node: node, path: self.path.isEmpty ? key : "\(self.path).\(key)", context: self.context)
  }

  // MARK: Errors

  /// An error located at this node.
  func error(_ code: ConfigurationError.Code, _ message: String, field: String? = nil) -> ConfigurationError {
    ConfigurationError(
      code, file: self.context.sourceName, line: self.node.mark?.line,
      column: self.node.mark?.column, field: field ?? self.path, message: message)
  }

  /// `expected EXPECTED, got WHAT-IT-IS`.
  func invalid(_ expected: String, hint: String? = nil) -> ConfigurationError {
    var message = "expected \(expected), got \(self.summary)"
    if let hint { message += "; \(hint)" }
    return self.error(.invalidValue, message)
  }

  /// A short description of the value for messages: the quoted text of a scalar, or what
  /// kind of node it is.
  var summary: String {
    switch self.node {
    case .scalar(let scalar):
      if self.isNull { return "nothing" }
      var text = scalar.string.replacingAll("\"", with: "\\\"").replacingAll("\n", with: "\\n")
      if text.count > 60 { text = String(text.prefix(57)) + "..." }
      return "\"\(text)\""
    case .mapping: return "a mapping"
    case .sequence: return "a list"
    case .alias: return "an alias"
    }
  }

  /// Whether the value is a single value rather than a list or a mapping.
  var isScalar: Bool {
    if case .scalar = self.node { return true }
    return false
  }

  /// Whether the value is a list.
  var isList: Bool {
    if case .sequence = self.node { return true }
    return false
  }

  /// `~`, `null` or an empty value: treated as if the key were absent.
  var isNull: Bool {
    guard case .scalar(let scalar) = self.node, scalar.style == .plain || scalar.style == .any else {
      return false
    }
    return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
  }

  // MARK: Typed readers

  /// The text of a scalar (quoted or not); a list or a mapping is an error.
  func string(expected: String = "a string") throws(ConfigurationError) -> String {
    guard case .scalar(let scalar) = self.node, !self.isNull else { throw self.invalid(expected) }
    return scalar.string
  }

  /// Like ``string(expected:)`` but refuses the empty string.
  func nonEmptyString(expected: String = "a non-empty string") throws(ConfigurationError) -> String {
    let text = try self.string(expected: expected)
    guard !text.isEmpty else { throw self.invalid(expected) }
    return text
  }

  /// `true` or `false` (any case). YAML 1.1's `yes`/`no`/`on`/`off` are refused: they surprise.
  func bool() throws(ConfigurationError) -> Bool {
    guard case .scalar(let scalar) = self.node, scalar.style == .plain || scalar.style == .any else {
      throw self.invalid("true or false")
    }
    switch scalar.string.lowercased() {
    case "true": return true
    case "false": return false
    default: throw self.invalid("true or false")
    }
  }

  /// A duration such as `200ms`, `2s` or `1m30s`.
  func duration() throws(ConfigurationError) -> Duration {
    let text = try self.string(expected: "a duration such as \"200ms\" or \"2s\"")
    do {
      return try GoDuration.parse(text)
    } catch {
      throw self.error(.invalidValue, "expected a duration such as \"200ms\" or \"2s\": \(error.message)")
    }
  }

  /// The elements of a list.
  func list(expected: String = "a list") throws(ConfigurationError) -> [ConfigNode] {
    guard case .sequence(let sequence) = self.node else { throw self.invalid(expected) }
    return sequence.enumerated().map { index, node in
      ConfigNode(node: node, path: "\(self.path)[\(index)]", context: self.context)
    }
  }

  /// A list of non-empty strings, such as an argv.
  func stringList(expected: String = "a list of strings") throws(ConfigurationError) -> [String] {
    var strings: [String] = []
    for element in try self.list(expected: expected) {
      strings.append(try element.nonEmptyString())
    }
    return strings
  }

  /// One of an enumeration's raw values, with a suggestion when the text is close to one.
  func oneOf<Value: RawRepresentable & CaseIterable>(
    _ type: Value.Type, aliases: [String: Value] = [:], ignoringCase: Bool = false
  ) throws(ConfigurationError) -> Value where Value.RawValue == String {
    let names = Value.allCases.map(\.rawValue)
    let expected = "one of " + names.map { "\"\($0)\"" }.joined(separator: ", ")
    let text = try self.string(expected: expected)
    let key = ignoringCase ? text.lowercased() : text
    if let value = Value(rawValue: key) ?? aliases[key] { return value }
    let hint = KeySuggestion.closest(to: text, in: names).map { "did you mean \"\($0)\"?" }
    throw self.invalid(expected, hint: hint)
  }

  /// The mapping's keys, checked against those allowed; see ``KeyedNode``.
  func keyed(_ keys: [String], allowExtensions: Bool = false) throws(ConfigurationError) -> KeyedNode {
    try KeyedNode(self, keys: keys, allowExtensions: allowExtensions)
  }
}

extension String {
  /// `replacingOccurrences(of:with:)` without Foundation.
  fileprivate func replacingAll(_ target: Character, with replacement: String) -> String {
    var result = ""
    for c in self { if c == target { result += replacement } else { result.append(c) } }
    return result
  }
}
