import Templates
import Yams

/// Reads an edited write-back `format` document back into its entries, as bytes.
///
/// The entries are keyed by ``ExactString``: two keys whose bytes differ are two entries even
/// when Swift would call them equal (a precomposed and a decomposed `é`), and a key that
/// appears twice (byte for byte, directly or through nesting: `"a/b"` beside `a: {b: …}`) is
/// refused rather than one silently winning. Only strings are written back, as the renderer
/// writes only strings: a number, boolean, null or list is refused with the entry named, and
/// so are YAML's merge keys, anchors and aliases (an alias can expand a small document
/// exponentially). Nesting is bounded by ``maxDepth`` and a YAML walk by ``maxNodes`` (a YAML
/// document with more separators than that is not parsed: ``structuralIndicators(_:)``).
enum FlatDocument {
  /// The deepest nesting of objects accepted (a key of as many segments).
  static let maxDepth = 64
  /// The most YAML nodes walked: a bound on the expanded size of a document.
  static let maxNodes = 1_000_000

  /// The entries of a JSON object or YAML mapping of strings, nested objects giving `a/b`
  /// keys as the renderer nests them.
  static func parse(_ bytes: [UInt8], format: Mapping.Format) throws(AgentError) -> [ExactString: [UInt8]] {
    switch format {
    case .json:
      var reader = JSONEntries(bytes)
      return try reader.parse()
    case .yaml: return try Self.yaml(bytes)
    default: throw AgentError(.configuration, "write-back of \(format.rawValue) documents is not supported")
    }
  }

  /// Adds one entry, refusing a key that is already there.
  static func add(_ name: String, _ value: [UInt8], to entries: inout [ExactString: [UInt8]]) throws(AgentError) {
    let key = ExactString(name)
    guard entries[key] == nil else {
      throw AgentError(.plan, "\"\(escapeBytes(key.utf8))\" appears twice in the document; nothing is pushed until one is removed")
    }
    entries[key] = value
  }

  // MARK: YAML

  private static func yaml(_ bytes: [UInt8]) throws(AgentError) -> [ExactString: [UInt8]] {
    // Yams builds the whole node tree before ``walk`` counts it: a document that could hold
    // far more nodes than are walked (`x: [a,a,a,…]`, two bytes a node) is refused unparsed.
    let indicators = Self.structuralIndicators(bytes)
    guard indicators <= Self.maxNodes else {
      throw AgentError(.plan, "the YAML document has \(indicators) separators (`,` `[` `{` `?`, and `:` or `-` before a space), more than the \(Self.maxNodes) nodes walked; it is not parsed")
    }
    // An alias is expanded by Yams while it builds the tree, before ``walk`` refuses it: one
    // used as a key is hashed whole (a 400-byte document of nested anchors is 10⁹ nodes).
    guard !Self.mayUseAnAlias(bytes) else { throw AgentError(.plan, Self.anchorMessage) }
    guard let text = String(validating: bytes, as: UTF8.self) else { throw AgentError(.plan, "the YAML document is not UTF-8") }
    // The parser is kept alive while the tree is walked: it holds the anchors the nodes name.
    let parser: Parser
    let root: Node?
    do {
      parser = try Parser(yaml: text)
      root = try parser.singleRoot()
    } catch {
      throw AgentError(.plan, Self.yamlErrorMessage(error))
    }
    var entries: [ExactString: [UInt8]] = [:]
    guard let root else { return entries }
    try withExtendedLifetime(parser) { () throws(AgentError) in
      guard root.anchor == nil else { throw AgentError(.plan, Self.anchorMessage) }
      guard let mapping = root.mapping else { throw AgentError(.plan, "the YAML document is not a mapping") }
      var nodes = 0
      try Self.walk(mapping, prefix: "", depth: 1, nodes: &nodes, into: &entries)
    }
    return entries
  }

  /// Why a document is not valid YAML, by line and column and the parser's own (fixed)
  /// reason, never with the document's text: Yams' description quotes the offending line,
  /// which may hold a secret, and this message is logged at error level.
  static func yamlErrorMessage(_ error: any Error) -> String {
    func at(_ mark: Yams.Mark, _ problem: String) -> String {
      "not valid YAML at line \(mark.line), column \(mark.column): \(problem)"
    }
    switch error as? YamlError {
    case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
      return at(mark, problem)
    case .reader(let problem, let offset, _, _):
      return "not valid YAML\(offset.map { " at byte \($0)" } ?? ""): \(problem)"
    case .duplicatedKeysInMapping(let duplicates, let context):
      return at(context.mark, "\(duplicates.count) duplicated key(s) in one mapping")
    case .memory: return "not valid YAML: the parser ran out of memory"
    default: return "not valid YAML"
    }
  }

  /// The bytes that can begin a YAML node after the first: `,` `[` `{` `?`, and `:` or `-`
  /// followed by whitespace or the end (a block mapping's value, a block sequence's item).
  /// A document holds at most 1 + 3 × as many nodes (fewer when some sit in quoted text), so
  /// bounding this count bounds the tree Yams builds, at one pass over the bytes.
  static func structuralIndicators(_ bytes: [UInt8]) -> Int {
    var count = 0
    for index in bytes.indices {
      switch bytes[index] {
      case UInt8(ascii: ","), UInt8(ascii: "["), UInt8(ascii: "{"), UInt8(ascii: "?"): count += 1
      case UInt8(ascii: ":"), UInt8(ascii: "-"):
        // Before whitespace, a control byte, or a non-ASCII character (libyaml also breaks
        // lines at NEL, LS and PS): counted.
        let next = index + 1 < bytes.count ? bytes[index + 1] : UInt8(ascii: " ")
        if next <= UInt8(ascii: " ") || next >= 0x7F { count += 1 }
      default: continue
      }
    }
    return count
  }

  /// Whether the document may hold an alias to one of its anchors: some `*NAME` whose NAME
  /// (libyaml's anchor characters: ASCII letters, digits, `_` and `-`) also follows a `&`
  /// before it. Looked for in every byte, quoted text and comments included, so that no alias
  /// escapes it; a document that only mentions both (`R&D` and `*D`) is refused too (loudly,
  /// with the anchors' message).
  static func mayUseAnAlias(_ bytes: [UInt8]) -> Bool {
    func isNameByte(_ byte: UInt8) -> Bool {
      (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
        || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
    }
    // An alias names an anchor defined before it (libyaml refuses any other), so only the
    // anchors are kept; past `maxAnchorNames` of them (`&0&1&2…` over 64 MiB) the document is
    // taken for one that may use an alias, without holding them all.
    var anchors: Set<ArraySlice<UInt8>> = []
    var index = 0
    while index < bytes.count {
      let byte = bytes[index]
      index += 1
      guard byte == UInt8(ascii: "&") || byte == UInt8(ascii: "*") else { continue }
      let start = index
      while index < bytes.count, isNameByte(bytes[index]) { index += 1 }
      guard index > start else { continue }
      if byte == UInt8(ascii: "*") {
        if anchors.contains(bytes[start..<index]) { return true }
      } else {
        anchors.insert(bytes[start..<index])
        if anchors.count > Self.maxAnchorNames { return true }
      }
    }
    return false
  }

  /// The most distinct `&NAME`s ``mayUseAnAlias(_:)`` keeps.
  static let maxAnchorNames = 10_000

  private static let anchorMessage = "YAML anchors and aliases (& and *) are not written back; write each value out"

  private static func walk(
    _ mapping: Node.Mapping, prefix: String, depth: Int, nodes: inout Int, into entries: inout [ExactString: [UInt8]]
  ) throws(AgentError) {
    guard depth <= Self.maxDepth else { throw AgentError(.plan, "the document nests deeper than \(Self.maxDepth) levels") }
    for (key, value) in mapping {
      nodes += 2
      guard nodes <= Self.maxNodes else { throw AgentError(.plan, "the document has more than \(Self.maxNodes) nodes") }
      guard key.anchor == nil, value.anchor == nil else { throw AgentError(.plan, Self.anchorMessage) }
      guard case .scalar(let keyScalar) = key else { throw AgentError(.plan, "a YAML key is not a string") }
      let keyTag = Resolver.default.resolveTag(of: key)
      if keyTag == .merge {
        throw AgentError(.plan, "merge keys (<<) are not written back; write the entries out")
      }
      let name = prefix + keyScalar.string
      guard keyTag == .str else {
        throw AgentError(.plan, "the key \"\(escapeBytes(name.utf8))\" is not a string (write it in quotes): only strings are written back")
      }
      switch value {
      case .scalar(let scalar):
        guard Resolver.default.resolveTag(of: value) == .str, !Self.isYAML11Boolean(scalar) else {
          throw AgentError(.plan, "\"\(escapeBytes(name.utf8))\" is not a string (write it in quotes): only strings are written back")
        }
        try Self.add(name, Array(scalar.string.utf8), to: &entries)
      case .mapping(let nested):
        try Self.walk(nested, prefix: name + "/", depth: depth + 1, nodes: &nodes, into: &entries)
      case .sequence:
        throw AgentError(.plan, "\"\(escapeBytes(name.utf8))\" is a list: only strings are written back")
      case .alias:
        throw AgentError(.plan, Self.anchorMessage)
      }
    }
  }

  /// `y` and `n` unquoted: YAML 1.1 booleans (Go's yaml.v2 reads them so) that Yams'
  /// resolver lacks; the renderer quotes them, so an unquoted one is not a string it wrote.
  private static func isYAML11Boolean(_ scalar: Node.Scalar) -> Bool {
    scalar.style == .plain && ["y", "Y", "n", "N"].contains(scalar.string)
  }
}

/// A strict JSON reader for a document of nested objects of strings that keeps every key's
/// bytes exactly (Foundation's reader gives `[String: Any]`, whose keys compare by canonical
/// equivalence and silently merge byte-distinct twins and repeated keys).
private struct JSONEntries {
  let bytes: [UInt8]
  var index = 0
  var entries: [ExactString: [UInt8]] = [:]

  init(_ bytes: [UInt8]) {
    self.bytes = bytes
  }

  mutating func parse() throws(AgentError) -> [ExactString: [UInt8]] {
    guard String(validating: self.bytes, as: UTF8.self) != nil else { throw AgentError(.plan, "the JSON document is not UTF-8") }
    self.skipSpace()
    guard self.peek == UInt8(ascii: "{") else {
      if self.index == self.bytes.count { throw self.invalid("the document is empty") }
      throw AgentError(.plan, "the JSON document is not an object")
    }
    try self.object(prefix: "", depth: 1)
    self.skipSpace()
    guard self.index == self.bytes.count else { throw self.invalid("unexpected text after the object") }
    return self.entries
  }

  private var peek: UInt8? { self.index < self.bytes.count ? self.bytes[self.index] : nil }

  private func invalid(_ why: String) -> AgentError {
    AgentError(.plan, "not valid JSON: \(why) at byte \(self.index)")
  }

  private mutating func skipSpace() {
    while let byte = self.peek, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { self.index += 1 }
  }

  private mutating func expect(_ character: Unicode.Scalar) throws(AgentError) {
    self.skipSpace()
    guard self.peek == UInt8(ascii: character) else { throw self.invalid("expected '\(character)'") }
    self.index += 1
  }

  /// An object at `index` (on its `{`): its strings become entries, its objects nest.
  private mutating func object(prefix: String, depth: Int) throws(AgentError) {
    guard depth <= FlatDocument.maxDepth else { throw AgentError(.plan, "the document nests deeper than \(FlatDocument.maxDepth) levels") }
    self.index += 1  // {
    var seen: Set<ExactString> = []
    self.skipSpace()
    if self.peek == UInt8(ascii: "}") {
      self.index += 1
      return
    }
    while true {
      self.skipSpace()
      guard self.peek == UInt8(ascii: "\"") else { throw self.invalid("expected a key in quotes") }
      let key = try self.string()
      let name = prefix + key
      guard seen.insert(ExactString(key)).inserted else {
        throw AgentError(.plan, "\"\(escapeBytes(name.utf8))\" appears twice in the document; nothing is pushed until one is removed")
      }
      try self.expect(":")
      self.skipSpace()
      switch self.peek {
      case UInt8(ascii: "\""): try FlatDocument.add(name, Array(try self.string().utf8), to: &self.entries)
      case UInt8(ascii: "{"): try self.object(prefix: name + "/", depth: depth + 1)
      case nil: throw self.invalid("the document ends early")
      default: throw AgentError(.plan, "\"\(escapeBytes(name.utf8))\" is not a string (write it in quotes): only strings are written back")
      }
      self.skipSpace()
      switch self.peek {
      case UInt8(ascii: ","): self.index += 1
      case UInt8(ascii: "}"):
        self.index += 1
        return
      default: throw self.invalid("expected ',' or '}'")
      }
    }
  }

  /// A string at `index` (on its opening quote), unescaped; its bytes are kept as written.
  private mutating func string() throws(AgentError) -> String {
    self.index += 1  // "
    var out: [UInt8] = []
    while true {
      guard let byte = self.peek else { throw self.invalid("a string is not closed") }
      self.index += 1
      switch byte {
      case UInt8(ascii: "\""): return String(decoding: out, as: UTF8.self)
      case 0..<0x20: throw self.invalid("a control character in a string (write it as \\u00XX)")
      case UInt8(ascii: "\\"):
        guard let escape = self.peek else { throw self.invalid("a string is not closed") }
        self.index += 1
        switch escape {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "u"):
          var code = UInt32(try self.hex4())
          if (0xD800..<0xDC00).contains(code) {
            guard self.peek == UInt8(ascii: "\\"), self.index + 1 < self.bytes.count, self.bytes[self.index + 1] == UInt8(ascii: "u")
            else { throw self.invalid("a lone surrogate in a \\u escape") }
            self.index += 2
            let low = UInt32(try self.hex4())
            guard (0xDC00..<0xE000).contains(low) else { throw self.invalid("a lone surrogate in a \\u escape") }
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
          } else if (0xDC00..<0xE000).contains(code) {
            throw self.invalid("a lone surrogate in a \\u escape")
          }
          guard let scalar = Unicode.Scalar(code) else { throw self.invalid("an invalid \\u escape") }
          out.append(contentsOf: Array(String(Character(scalar)).utf8))
        default: throw self.invalid("an unknown escape")
        }
      default: out.append(byte)  // the document is valid UTF-8: copied byte for byte
      }
    }
  }

  private mutating func hex4() throws(AgentError) -> UInt16 {
    guard self.index + 4 <= self.bytes.count else { throw self.invalid("a \\u escape is cut short") }
    var value: UInt16 = 0
    for _ in 0..<4 {
      let byte = self.bytes[self.index]
      let digit: UInt8
      switch byte {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
      case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
      case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
      default: throw self.invalid("a \\u escape needs four hex digits")
      }
      value = value << 4 | UInt16(digit)
      self.index += 1
    }
    return value
  }
}
