/// A reader for the part of TOML that confd's configuration files use: tables (`[template]`,
/// `[a.b]`), `key = value` with bare or quoted keys, basic and literal strings (also their
/// multi-line forms), integers (decimal, `0x`, `0o`, `0b`, with `_`), floats, booleans, arrays
/// (over several lines, trailing comma allowed), inline tables and comments. Dates and arrays
/// of tables (`[[x]]`) are refused with the line that holds them.
///
/// Every key keeps its line, so warnings about confd settings name `file:line`. (LebJe/TOMLKit
/// builds here, but it reports positions only for syntax errors, and it would add a C++
/// library to the agent for one command.)
struct ConfdTOML {
  /// A parsed value, with the line (1-based) it started on.
  indirect enum Value: Equatable {
    case string(String)
    case integer(Int)
    case float(String)
    case bool(Bool)
    case array([Value])
    case table(Table)
  }

  /// A table's entries, in the order they were written.
  struct Table: Equatable {
    var keys: [String] = []
    var values: [String: Value] = [:]
    var lines: [String: Int] = [:]

    subscript(key: String) -> Value? { self.values[key] }

    mutating func set(_ key: String, _ value: Value, line: Int) -> Bool {
      if self.values[key] != nil { return false }
      self.keys.append(key)
      self.values[key] = value
      self.lines[key] = line
      return true
    }
  }

  /// A syntax error and its 1-based line.
  struct SyntaxError: Error, Equatable {
    var line: Int
    var message: String
  }

  private let bytes: [UInt8]
  private var index = 0
  private var line = 1

  /// Parses `text` into its root table.
  static func parse(_ text: String) throws(SyntaxError) -> Table {
    var reader = ConfdTOML(bytes: Array(text.utf8))
    return try reader.document()
  }

  private init(bytes: [UInt8]) { self.bytes = bytes }

  private var current: UInt8? { self.index < self.bytes.count ? self.bytes[self.index] : nil }

  private func fail(_ message: String) -> SyntaxError { SyntaxError(line: self.line, message: message) }

  private mutating func advance() {
    if self.current == UInt8(ascii: "\n") { self.line += 1 }
    self.index += 1
  }

  private mutating func skipBlanks() {
    while let byte = self.current, byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") { self.advance() }
  }

  /// Blanks, newlines and comments.
  private mutating func skipSpace() {
    while let byte = self.current {
      if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
        self.advance()
      } else if byte == UInt8(ascii: "#") {
        while let next = self.current, next != UInt8(ascii: "\n") { self.advance() }
      } else {
        return
      }
    }
  }

  /// The rest of a line after a value or header: blanks and an optional comment.
  private mutating func endOfLine() throws(SyntaxError) {
    self.skipBlanks()
    if self.current == UInt8(ascii: "#") {
      while let next = self.current, next != UInt8(ascii: "\n") { self.advance() }
    }
    if self.current == UInt8(ascii: "\r") { self.advance() }
    guard self.current == nil || self.current == UInt8(ascii: "\n") else {
      throw self.fail("expected the end of the line, found \(self.describeCurrent())")
    }
  }

  private func describeCurrent() -> String {
    guard let byte = self.current else { return "the end of the file" }
    return "'\(String(decoding: [byte], as: UTF8.self))'"
  }

  private mutating func document() throws(SyntaxError) -> Table {
    var root = Table()
    var path: [String] = []
    while true {
      self.skipSpace()
      guard let byte = self.current else { break }
      if byte == UInt8(ascii: "[") {
        let headerLine = self.line
        self.advance()
        if self.current == UInt8(ascii: "[") { throw self.fail("arrays of tables ([[…]]) are not supported") }
        path = try self.keyPath()
        guard self.current == UInt8(ascii: "]") else { throw self.fail("expected ']' after the table name") }
        self.advance()
        try self.endOfLine()
        try Self.open(path, in: &root, line: headerLine, define: true)
      } else {
        let keyLine = self.line
        let keys = try self.keyPath()
        guard self.current == UInt8(ascii: "=") else { throw self.fail("expected '=' after the key") }
        self.advance()
        self.skipBlanks()
        let value = try self.value()
        try self.endOfLine()
        try Self.insert(path + keys, value, into: &root, line: keyLine)
      }
    }
    return root
  }

  /// Makes sure the table at `path` exists.
  private static func open(_ path: [String], in table: inout Table, line: Int, define: Bool) throws(SyntaxError) {
    guard let first = path.first else { return }
    var child: Table
    switch table.values[first] {
    case nil:
      child = Table()
      _ = table.set(first, .table(child), line: line)
    case .table(let existing)?:
      child = existing
    default:
      throw SyntaxError(line: line, message: "\(first) is already a value, not a table")
    }
    try self.open(Array(path.dropFirst()), in: &child, line: line, define: define)
    table.values[first] = .table(child)
  }

  private static func insert(_ path: [String], _ value: Value, into table: inout Table, line: Int) throws(SyntaxError) {
    if path.count == 1 {
      guard table.set(path[0], value, line: line) else {
        throw SyntaxError(line: line, message: "\(path[0]) is defined twice")
      }
      return
    }
    try self.open([path[0]], in: &table, line: line, define: false)
    guard case .table(var child)? = table.values[path[0]] else { return }
    try self.insert(Array(path.dropFirst()), value, into: &child, line: line)
    table.values[path[0]] = .table(child)
  }

  /// `a`, `"a b"`, `a.b`.
  private mutating func keyPath() throws(SyntaxError) -> [String] {
    var keys: [String] = []
    while true {
      self.skipBlanks()
      guard let byte = self.current else { throw self.fail("expected a key") }
      if byte == UInt8(ascii: "\"") {
        keys.append(try self.basicString())
      } else if byte == UInt8(ascii: "'") {
        keys.append(try self.literalString())
      } else {
        let start = self.index
        while let next = self.current, Self.isBare(next) { self.advance() }
        guard self.index > start else { throw self.fail("expected a key, found \(self.describeCurrent())") }
        keys.append(String(decoding: self.bytes[start..<self.index], as: UTF8.self))
      }
      self.skipBlanks()
      guard self.current == UInt8(ascii: ".") else { return keys }
      self.advance()
    }
  }

  private static func isBare(_ byte: UInt8) -> Bool {
    (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
      || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
  }

  private func starts(with text: String) -> Bool {
    let prefix = Array(text.utf8)
    return self.index + prefix.count <= self.bytes.count && Array(self.bytes[self.index..<self.index + prefix.count]) == prefix
  }

  private mutating func value() throws(SyntaxError) -> Value {
    guard let byte = self.current else { throw self.fail("expected a value") }
    switch byte {
    case UInt8(ascii: "\""):
      return .string(self.starts(with: "\"\"\"") ? try self.multiLineBasic() : try self.basicString())
    case UInt8(ascii: "'"):
      return .string(self.starts(with: "'''") ? try self.multiLineLiteral() : try self.literalString())
    case UInt8(ascii: "["):
      return try self.array()
    case UInt8(ascii: "{"):
      return try self.inlineTable()
    default:
      return try self.scalar()
    }
  }

  private mutating func array() throws(SyntaxError) -> Value {
    self.advance()
    var items: [Value] = []
    while true {
      self.skipSpace()
      if self.current == UInt8(ascii: "]") {
        self.advance()
        return .array(items)
      }
      items.append(try self.value())
      self.skipSpace()
      if self.current == UInt8(ascii: ",") {
        self.advance()
      } else if self.current != UInt8(ascii: "]") {
        throw self.fail("expected ',' or ']' in an array, found \(self.describeCurrent())")
      }
    }
  }

  private mutating func inlineTable() throws(SyntaxError) -> Value {
    self.advance()
    var table = Table()
    self.skipBlanks()
    if self.current == UInt8(ascii: "}") {
      self.advance()
      return .table(table)
    }
    while true {
      let keyLine = self.line
      let keys = try self.keyPath()
      guard self.current == UInt8(ascii: "=") else { throw self.fail("expected '=' after the key") }
      self.advance()
      self.skipBlanks()
      try Self.insert(keys, try self.value(), into: &table, line: keyLine)
      self.skipBlanks()
      if self.current == UInt8(ascii: "}") {
        self.advance()
        return .table(table)
      }
      guard self.current == UInt8(ascii: ",") else { throw self.fail("expected ',' or '}' in an inline table") }
      self.advance()
    }
  }

  private mutating func scalar() throws(SyntaxError) -> Value {
    let start = self.index
    while let byte = self.current, Self.isBare(byte) || byte == UInt8(ascii: "+") || byte == UInt8(ascii: ".")
      || byte == UInt8(ascii: ":")
    {
      self.advance()
    }
    let text = String(decoding: self.bytes[start..<self.index], as: UTF8.self)
    if text == "true" { return .bool(true) }
    if text == "false" { return .bool(false) }
    if text.isEmpty { throw self.fail("expected a value, found \(self.describeCurrent())") }
    let digits = String(text.filter { $0 != "_" })
    var body = Substring(digits)
    var negative = false
    if body.hasPrefix("+") || body.hasPrefix("-") {
      negative = body.hasPrefix("-")
      body = body.dropFirst()
    }
    let radix: Int
    if body.hasPrefix("0x") { radix = 16 } else if body.hasPrefix("0o") { radix = 8 } else if body.hasPrefix("0b") { radix = 2 } else { radix = 10 }
    if radix != 10 { body = body.dropFirst(2) }
    if let number = Int(body, radix: radix), radix == 10 ? !(body.count > 1 && body.hasPrefix("0")) : true {
      return .integer(negative ? -number : number)
    }
    if Double(digits) != nil || ["inf", "+inf", "-inf", "nan", "+nan", "-nan"].contains(digits) { return .float(text) }
    throw self.fail("unsupported value \(text) (dates and bare words are not read)")
  }

  private mutating func basicString() throws(SyntaxError) -> String {
    self.advance()
    var out: [UInt8] = []
    while true {
      guard let byte = self.current, byte != UInt8(ascii: "\n") else { throw self.fail("unterminated string") }
      self.advance()
      if byte == UInt8(ascii: "\"") { return String(decoding: out, as: UTF8.self) }
      if byte == UInt8(ascii: "\\") { out += try self.escape() } else { out.append(byte) }
    }
  }

  private mutating func multiLineBasic() throws(SyntaxError) -> String {
    self.index += 3
    if self.current == UInt8(ascii: "\r") { self.advance() }
    if self.current == UInt8(ascii: "\n") { self.advance() }
    var out: [UInt8] = []
    while true {
      guard let byte = self.current else { throw self.fail("unterminated multi-line string") }
      if self.starts(with: "\"\"\"") {
        self.index += 3
        return String(decoding: out, as: UTF8.self)
      }
      self.advance()
      if byte == UInt8(ascii: "\\") {
        // A backslash at the end of a line trims the newline and the blanks after it.
        var probe = self.index
        while probe < self.bytes.count, [UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r")].contains(self.bytes[probe]) { probe += 1 }
        if probe < self.bytes.count, self.bytes[probe] == UInt8(ascii: "\n") {
          while let next = self.current, [UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"), UInt8(ascii: "\n")].contains(next) { self.advance() }
          continue
        }
        out += try self.escape()
      } else {
        out.append(byte)
      }
    }
  }

  private mutating func escape() throws(SyntaxError) -> [UInt8] {
    guard let byte = self.current else { throw self.fail("unterminated string") }
    self.advance()
    switch byte {
    case UInt8(ascii: "n"): return [0x0A]
    case UInt8(ascii: "t"): return [0x09]
    case UInt8(ascii: "r"): return [0x0D]
    case UInt8(ascii: "b"): return [0x08]
    case UInt8(ascii: "f"): return [0x0C]
    case UInt8(ascii: "\""): return [0x22]
    case UInt8(ascii: "\\"): return [0x5C]
    case UInt8(ascii: "u"), UInt8(ascii: "U"):
      let count = byte == UInt8(ascii: "u") ? 4 : 8
      guard self.index + count <= self.bytes.count,
        let code = UInt32(String(decoding: self.bytes[self.index..<self.index + count], as: UTF8.self), radix: 16),
        let scalar = Unicode.Scalar(code)
      else { throw self.fail("invalid \\\(byte == UInt8(ascii: "u") ? "u" : "U") escape") }
      self.index += count
      return Array(String(Character(scalar)).utf8)
    default:
      throw self.fail("invalid escape \\\(String(decoding: [byte], as: UTF8.self))")
    }
  }

  private mutating func literalString() throws(SyntaxError) -> String {
    self.advance()
    let start = self.index
    while true {
      guard let byte = self.current, byte != UInt8(ascii: "\n") else { throw self.fail("unterminated string") }
      if byte == UInt8(ascii: "'") {
        let text = String(decoding: self.bytes[start..<self.index], as: UTF8.self)
        self.advance()
        return text
      }
      self.advance()
    }
  }

  private mutating func multiLineLiteral() throws(SyntaxError) -> String {
    self.index += 3
    if self.current == UInt8(ascii: "\r") { self.advance() }
    if self.current == UInt8(ascii: "\n") { self.advance() }
    let start = self.index
    while self.current != nil {
      if self.starts(with: "'''") {
        let text = String(decoding: self.bytes[start..<self.index], as: UTF8.self)
        self.index += 3
        return text
      }
      self.advance()
    }
    throw self.fail("unterminated multi-line string")
  }
}
