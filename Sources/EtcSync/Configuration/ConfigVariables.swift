import Yams

/// Expands `${NAME}`, `${NAME:-default}` and `$$` in every scalar value of a parsed
/// configuration, once, before anything is decoded or validated (so an expanded value is
/// checked like a written one).
///
/// - `${NAME}` is the variable's value; an unset `NAME` is an error naming the file, line and
///   field. `HOSTNAME` falls back to the machine's host name (`gethostname`) when the
///   environment has none, since shells do not export it.
/// - `${NAME:-default}` is the default when `NAME` is unset or empty (the shell's `:-`). The
///   default is taken as written up to the first `}`; it is not expanded again.
/// - `$$` is one `$`. Any other `$` stays as written.
///
/// Only values are expanded, never the keys of a mapping. Names are `[A-Za-z_][A-Za-z0-9_]*`.
enum ConfigVariables {
  /// `node` with its scalars expanded; `path` is the field path errors name.
  /// `written` collects, by field path, every value as written whose meaning to a shell the
  /// expansion changed (``hasDollarForm(_:)``, ``AgentConfiguration/writtenWithDollars``).
  static func expand(
    _ node: Node, path: String, environment: [String: String], sourceName: String,
    written: inout [String: String]
  ) throws(ConfigurationError) -> Node {
    switch node {
    case .scalar(var scalar):
      guard scalar.string.utf8.contains(UInt8(ascii: "$")) else { return node }
      if self.hasDollarForm(scalar.string) { written[path] = scalar.string }
      do {
        let expanded = try self.expand(scalar.string, environment: environment)
        let style = scalar.style
        scalar.string = expanded
        scalar.style = style
        return .scalar(scalar)
      } catch {
        throw ConfigurationError(
          .invalidValue, file: sourceName, line: scalar.mark?.line, column: scalar.mark?.column,
          field: path, message: error.message)
      }
    case .mapping(let mapping):
      var pairs: [(Node, Node)] = []
      for (key, value) in mapping {
        let name = key.scalar?.string ?? "?"
        let childPath = path.isEmpty ? name : "\(path).\(name)"
        pairs.append(
          (key, try self.expand(value, path: childPath, environment: environment, sourceName: sourceName, written: &written)))
      }
      return .mapping(Node.Mapping(pairs, mapping.tag, mapping.style, mapping.mark))
    case .sequence(let sequence):
      var nodes: [Node] = []
      for (index, element) in sequence.enumerated() {
        nodes.append(
          try self.expand(
            element, path: "\(path)[\(index)]", environment: environment, sourceName: sourceName, written: &written))
      }
      return .sequence(Node.Sequence(nodes, sequence.tag, sequence.style, sequence.mark))
    case .alias:
      return node
    }
  }

  /// Whether `text` holds a form whose meaning to a shell this expansion changed: a
  /// `${NAME…}` reference (a shell would have expanded it itself) or a `$$` that is not part
  /// of the escaped forms `$$$$` (a shell's `$$`) and `$${` (a shell's `${`) — the shell's
  /// process id before, one `$` now.
  static func hasDollarForm(_ text: String) -> Bool {
    let bytes = Array(text.utf8)
    let dollar = UInt8(ascii: "$")
    var index = 0
    var previousWasPair = false
    while index + 1 < bytes.count {
      guard bytes[index] == dollar else { index += 1; previousWasPair = false; continue }
      if bytes[index + 1] == UInt8(ascii: "{") { return true }
      guard bytes[index + 1] == dollar else { index += 1; previousWasPair = false; continue }
      let next = index + 2 < bytes.count ? bytes[index + 2] : nil
      let pairFollows = next == dollar && index + 3 < bytes.count && bytes[index + 3] == dollar
      if !previousWasPair && !pairFollows && next != UInt8(ascii: "{") { return true }
      if next == UInt8(ascii: "{") {
        // `$${`: the brace is literal text now; skip past it.
        index += 3
        previousWasPair = false
        continue
      }
      previousWasPair = !previousWasPair && pairFollows
      index += 2
    }
    return false
  }

  /// Why a value could not be expanded.
  struct Failure: Error {
    var message: String
  }

  /// `text` with its variables expanded (see ``ConfigVariables``).
  static func expand(_ text: String, environment: [String: String]) throws(Failure) -> String {
    let bytes = Array(text.utf8)
    let dollar = UInt8(ascii: "$")
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count)
    var index = 0
    while index < bytes.count {
      let byte = bytes[index]
      guard byte == dollar, index + 1 < bytes.count else {
        out.append(byte)
        index += 1
        continue
      }
      if bytes[index + 1] == dollar {
        out.append(dollar)
        index += 2
        continue
      }
      guard bytes[index + 1] == UInt8(ascii: "{") else {
        out.append(byte)
        index += 1
        continue
      }
      guard let close = bytes[(index + 2)...].firstIndex(of: UInt8(ascii: "}")) else {
        throw Failure(message: "\"${\" without a closing \"}\"; \(Self.literalHint)")
      }
      let inside = Array(bytes[(index + 2)..<close])
      out.append(contentsOf: try self.value(of: inside, environment: environment).utf8)
      index = close + 1
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// The value of `NAME` or `NAME:-default`, the text between `${` and `}`.
  private static func value(of inside: [UInt8], environment: [String: String]) throws(Failure) -> String {
    var nameEnd = 0
    while nameEnd < inside.count, self.isNameByte(inside[nameEnd], first: nameEnd == 0) { nameEnd += 1 }
    let name = String(decoding: inside[..<nameEnd], as: UTF8.self)
    let rest = inside[nameEnd...]
    let written = "${" + String(decoding: inside, as: UTF8.self) + "}"
    guard !name.isEmpty else {
      throw Failure(message: "\(written): expected a variable name such as ${HOSTNAME}; \(Self.literalHint)")
    }
    let value = environment[name] ?? (name == "HOSTNAME" ? ConfigFiles.hostName() : nil)
    if rest.isEmpty {
      guard let value else {
        throw Failure(message: "the environment variable \(name) is not set; set it, or give a default: ${\(name):-default}")
      }
      return value
    }
    guard rest.starts(with: ":-".utf8) else {
      throw Failure(message: "\(written): expected ${\(name)} or ${\(name):-default}; \(Self.literalHint)")
    }
    if let value, !value.isEmpty { return value }
    return String(decoding: rest.dropFirst(2), as: UTF8.self)
  }

  /// How to keep a shell's own `${…}` or `$`: the end of every malformed-reference message.
  static let literalHint =
    "etcsync expands ${NAME} in its configuration; for a literal ${ (a shell's own ${...}) write $${, and $$ for a literal $"

  private static func isNameByte(_ byte: UInt8, first: Bool) -> Bool {
    switch byte {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "_"): true
    case UInt8(ascii: "0")...UInt8(ascii: "9"): !first
    default: false
    }
  }
}
