import Yams

/// The YAML the converter prints: block mappings in a fixed key order, flow lists, and
/// scalars quoted as the `yaml` format quotes them (``YAMLScalar``). A `$` that etcsync would
/// expand (`${`, `$$`) is doubled.
struct YAMLText {
  indirect enum Node {
    case scalar(String)
    case list([String])
    case map([(String, Node)])
  }

  /// The confd directory, named by the error for a value YAML cannot carry.
  let source: String
  var text = ""

  mutating func line(_ line: String) { self.text += line + "\n" }

  mutating func entry(_ key: String, _ node: Node, indent: Int) throws(ConfdImport.Failure) {
    let pad = String(repeating: " ", count: indent)
    switch node {
    case .scalar(let value): self.line("\(pad)\(key): \(try self.inline(.scalar(value), key))")
    case .list(let items): self.line("\(pad)\(key): \(try self.inline(.list(items), key))")
    case .map(let entries):
      self.line("\(pad)\(key):")
      for (child, value) in entries { try self.entry(child, value, indent: indent + 2) }
    }
  }

  /// One entry of a list of mappings: `- first: …` and the other keys under it.
  mutating func item(_ entries: [(String, Node)], indent: Int) throws(ConfdImport.Failure) {
    var body = YAMLText(source: self.source)
    for (key, node) in entries { try body.entry(key, node, indent: indent + 2) }
    self.text += String(repeating: " ", count: indent) + "- " + body.text.dropFirst(indent + 2)
  }

  /// A scalar or a flow list on one line, through Yams' emitter. A list item that needs
  /// quoting in a flow list (`,`, `:` and the like) is double-quoted, as everything else that
  /// is quoted, rather than single-quoted by the emitter.
  private func inline(_ node: Node, _ key: String) throws(ConfdImport.Failure) -> String {
    let yaml: Yams.Node
    if case .list(let items) = node {
      yaml = .sequence(.init(items.map { item in
        let escaped = Self.escapeDollars(item)
        guard escaped.unicodeScalars.contains(where: { ",[]{}:#?".unicodeScalars.contains($0) }) else {
          return YAMLScalar.node(escaped, oneLine: true)
        }
        return .scalar(.init(escaped, Tag(.str), .doubleQuoted))
      }, Tag(.seq), .flow))
    } else if case .scalar(let value) = node {
      yaml = YAMLScalar.node(Self.escapeDollars(value), oneLine: true)
    } else {
      preconditionFailure("a map is written as block lines, never inline")
    }
    guard let text = YAMLScalar.inline(yaml) else {
      throw ConfdImport.Failure(file: self.source, line: nil, message: "\(key): a value holds a NUL byte, which the configuration cannot carry")
    }
    return text
  }

  /// `$` before `{` or `$` doubled: etcsync's configuration expands `${NAME}` and reads `$$`
  /// as one `$`, confd's did neither. Byte by byte (UTF-8), as the expander
  /// (``ConfigVariables``) reads it: a `$` or `{` that a combining mark joins into one
  /// `Character` is still a `$` or `{` to it.
  static func escapeDollars(_ value: String) -> String {
    let bytes = Array(value.utf8)
    let dollar = UInt8(ascii: "$")
    var escaped: [UInt8] = []
    escaped.reserveCapacity(bytes.count)
    for (index, byte) in bytes.enumerated() {
      escaped.append(byte)
      if byte == dollar, index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "{") || bytes[index + 1] == dollar {
        escaped.append(dollar)
      }
    }
    return String(decoding: escaped, as: UTF8.self)
  }
}
