import Foundation
import Yams

/// Readers for the documents a `format` mapping writes, written from each format's own rules
/// (JSON and YAML by their libraries; TOML's basic strings, POSIX sh's double quotes and
/// java.util.Properties' `load` by hand), not from etcsync's writer. Each returns the document
/// as name bytes → value bytes: nested formats name a value by its path of keys joined by `/`
/// (the generated keys have no `/` inside a segment), env by its variable, properties by its
/// property name. A reader throws on anything its format does not allow, rather than guess.
enum DocumentReaders {
  struct Unreadable: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
  }

  static func join(_ path: [String]) -> [UInt8] { Array(path.joined(separator: "/").utf8) }

  // MARK: JSON

  static func json(_ bytes: [UInt8]) throws -> [[UInt8]: [UInt8]] {
    guard let root = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else { throw Unreadable("not a JSON object") }
    var result: [[UInt8]: [UInt8]] = [:]
    func walk(_ object: [String: Any], _ path: [String]) throws {
      for (key, value) in object {
        if let text = value as? String {
          result[join(path + [key])] = Array(text.utf8)
        } else if let table = value as? [String: Any] {
          try walk(table, path + [key])
        } else {
          throw Unreadable("\(path + [key]) holds neither a string nor an object")
        }
      }
    }
    try walk(root, [])
    return result
  }

  // MARK: YAML

  /// Every key and value must be a scalar that a YAML 1.1 reader takes as a string (Yams'
  /// default resolver): a value written bare that reads as a number, a boolean, null or a
  /// merge key is a difference, not a string.
  static func yaml(_ bytes: [UInt8]) throws -> [[UInt8]: [UInt8]] {
    guard let text = String(validating: bytes, as: UTF8.self) else { throw Unreadable("YAML is not UTF-8") }
    guard let root = try Yams.compose(yaml: text) else { return [:] }
    var result: [[UInt8]: [UInt8]] = [:]
    func walk(_ node: Node, _ path: [String]) throws {
      guard case .mapping(let mapping) = node else { throw Unreadable("\(path) is not a mapping") }
      for (key, value) in mapping {
        guard case .scalar(let name) = key, key.tag == Tag(.str) else { throw Unreadable("a key under \(path) is not a string: \(key)") }
        switch value {
        case .scalar(let scalar):
          guard value.tag == Tag(.str) else { throw Unreadable("\(path + [name.string]) reads as \(value.tag), not a string") }
          result[join(path + [name.string])] = Array(scalar.string.utf8)
        case .mapping: try walk(value, path + [name.string])
        default: throw Unreadable("\(path + [name.string]) is neither a scalar nor a mapping")
        }
      }
    }
    try walk(root, [])
    return result
  }

  // MARK: TOML

  /// TOML 1.0's table headers, bare and basic-string keys (dotted), `key = "basic string"`,
  /// comments and blank lines: what a document of strings needs. Control characters other
  /// than tab must be escaped in a basic string; a table or key defined twice is an error.
  static func toml(_ bytes: [UInt8]) throws -> [[UInt8]: [UInt8]] {
    guard let text = String(validating: bytes, as: UTF8.self) else { throw Unreadable("TOML is not UTF-8") }
    let s = Array(text.unicodeScalars)
    var i = 0
    var result: [[UInt8]: [UInt8]] = [:]
    var tables = Set<[UInt8]>()
    var table: [String] = []
    func spaces() { while i < s.count, s[i] == " " || s[i] == "\t" { i += 1 } }
    func endOfLine() throws {
      spaces()
      if i < s.count, s[i] == "#" { while i < s.count, s[i] != "\n" { i += 1 } }
      if i < s.count, s[i] == "\r", i + 1 < s.count, s[i + 1] == "\n" { i += 1 }
      guard i == s.count || s[i] == "\n" else { throw Unreadable("unexpected \(String(s[i])) at scalar \(i)") }
      i += 1
    }
    func basic() throws -> String {
      guard i < s.count, s[i] == "\"" else { throw Unreadable("expected a basic string at scalar \(i)") }
      i += 1
      var out = String.UnicodeScalarView()
      while true {
        guard i < s.count else { throw Unreadable("unterminated string") }
        let c = s[i]
        i += 1
        if c == "\"" { return String(out) }
        if c == "\\" {
          guard i < s.count else { throw Unreadable("unterminated escape") }
          let e = s[i]
          i += 1
          switch e {
          case "b": out.append("\u{8}")
          case "t": out.append("\t")
          case "n": out.append("\n")
          case "f": out.append("\u{C}")
          case "r": out.append("\r")
          case "\"": out.append("\"")
          case "\\": out.append("\\")
          case "u", "U":
            let width = e == "u" ? 4 : 8
            guard i + width <= s.count, let value = UInt32(String(String.UnicodeScalarView(s[i..<i + width])), radix: 16),
              let scalar = Unicode.Scalar(value)
            else { throw Unreadable("bad \\\(e) escape at scalar \(i)") }
            out.append(scalar)
            i += width
          default: throw Unreadable("unknown escape \\\(e)")
          }
          continue
        }
        if c.value < 0x20 && c != "\t" || c.value == 0x7F { throw Unreadable("unescaped control character \(c.value) in a basic string") }
        out.append(c)
      }
    }
    func key() throws -> [String] {
      var parts: [String] = []
      while true {
        spaces()
        if i < s.count, s[i] == "\"" {
          parts.append(try basic())
        } else {
          var bare = String.UnicodeScalarView()
          while i < s.count, ("a"..."z").contains(s[i]) || ("A"..."Z").contains(s[i]) || ("0"..."9").contains(s[i]) || s[i] == "_" || s[i] == "-" {
            bare.append(s[i])
            i += 1
          }
          guard !bare.isEmpty else { throw Unreadable("expected a key at scalar \(i)") }
          parts.append(String(bare))
        }
        spaces()
        guard i < s.count, s[i] == "." else { return parts }
        i += 1
      }
    }
    while i < s.count {
      spaces()
      if i < s.count, s[i] == "\n" || s[i] == "#" || s[i] == "\r" {
        try endOfLine()
        continue
      }
      guard i < s.count else { break }
      if s[i] == "[" {
        i += 1
        table = try key()
        guard i < s.count, s[i] == "]" else { throw Unreadable("expected ] at scalar \(i)") }
        i += 1
        guard tables.insert(join(table)).inserted, result[join(table)] == nil else { throw Unreadable("table \(table) defined twice") }
        try endOfLine()
        continue
      }
      let name = table + (try key())
      guard i < s.count, s[i] == "=" else { throw Unreadable("expected = at scalar \(i)") }
      i += 1
      spaces()
      let value = try basic()
      guard result[join(name)] == nil, !tables.contains(join(name)) else { throw Unreadable("key \(name) defined twice") }
      result[join(name)] = Array(value.utf8)
      try endOfLine()
    }
    return result
  }

  // MARK: env

  /// `NAME=value` lines as a POSIX shell reads them with `. file`: a bare value must hold no
  /// character the shell would interpret; inside double quotes a backslash quotes `$`, `` ` ``,
  /// `"`, `\` and removes a following newline, and stays a backslash before anything else;
  /// everything else (newlines included) is literal.
  static func env(_ bytes: [UInt8]) throws -> [[UInt8]: [UInt8]] {
    guard let text = String(validating: bytes, as: UTF8.self) else { throw Unreadable("env file is not UTF-8") }
    let s = Array(text.unicodeScalars)
    var i = 0
    var result: [[UInt8]: [UInt8]] = [:]
    while i < s.count {
      if s[i] == "\n" {
        i += 1
        continue
      }
      var name = String.UnicodeScalarView()
      while i < s.count, ("A"..."Z").contains(s[i]) || ("a"..."z").contains(s[i]) || ("0"..."9").contains(s[i]) || s[i] == "_" {
        name.append(s[i])
        i += 1
      }
      guard !name.isEmpty, !("0"..."9").contains(name.first!), i < s.count, s[i] == "=" else { throw Unreadable("not an assignment at scalar \(i)") }
      i += 1
      var value = String.UnicodeScalarView()
      if i < s.count, s[i] == "\"" {
        i += 1
        while true {
          guard i < s.count else { throw Unreadable("unterminated quotes for \(String(name))") }
          let c = s[i]
          i += 1
          if c == "\"" { break }
          if c == "\\", i < s.count {
            let e = s[i]
            i += 1
            switch e {
            case "$", "`", "\"", "\\": value.append(e)
            case "\n": break
            default:
              value.append("\\")
              value.append(e)
            }
            continue
          }
          value.append(c)
        }
      } else {
        while i < s.count, s[i] != "\n" {
          guard !" \t\r\"'\\$`;&|<>()*?[]{}!".unicodeScalars.contains(s[i]) else { throw Unreadable("\(String(name)): bare \(s[i]) the shell would interpret") }
          value.append(s[i])
          i += 1
        }
        if let first = value.first, first == "~" || first == "#" { throw Unreadable("\(String(name)): a bare value starting with \(first)") }
      }
      guard i == s.count || s[i] == "\n" else { throw Unreadable("\(String(name)): text after the value at scalar \(i)") }
      guard result.updateValue(Array(String(value).utf8), forKey: Array(String(name).utf8)) == nil else { throw Unreadable("\(String(name)) assigned twice") }
    }
    return result
  }

  // MARK: Java properties

  /// java.util.Properties.load: logical lines (a line ending in an odd number of backslashes
  /// continues, the next line's leading white space dropped), `#`/`!` comments, a key ending
  /// at the first unescaped `=`, `:` or white space, then white space and at most one `=` or
  /// `:`; escapes `\t \n \r \f \uXXXX` (UTF-16 units) and `\x` for x itself.
  static func properties(_ bytes: [UInt8]) throws -> [[UInt8]: [UInt8]] {
    guard let text = String(validating: bytes, as: UTF8.self) else { throw Unreadable("properties file is not UTF-8") }
    let s = Array(text.unicodeScalars)
    var result: [[UInt8]: [UInt8]] = [:]
    // Logical lines.
    var lines: [[Unicode.Scalar]] = []
    var current: [Unicode.Scalar] = []
    var i = 0
    var skipLeading = true
    while i < s.count {
      let c = s[i]
      i += 1
      if skipLeading, c == " " || c == "\t" || c == "\u{C}" { continue }
      skipLeading = false
      if c == "\n" || c == "\r" {
        if c == "\r", i < s.count, s[i] == "\n" { i += 1 }
        var backslashes = 0
        while backslashes < current.count, current[current.count - 1 - backslashes] == "\\" { backslashes += 1 }
        if backslashes % 2 == 1 {
          current.removeLast()
        } else {
          lines.append(current)
          current = []
        }
        skipLeading = true
        continue
      }
      current.append(c)
    }
    if !current.isEmpty { lines.append(current) }
    func unescape(_ part: ArraySlice<Unicode.Scalar>) throws -> [UInt8] {
      var units: [UInt16] = []
      var j = part.startIndex
      while j < part.endIndex {
        let c = part[j]
        j += 1
        guard c == "\\", j < part.endIndex else {
          units += Array(String(c).utf16)
          continue
        }
        let e = part[j]
        j += 1
        switch e {
        case "t": units.append(0x09)
        case "n": units.append(0x0A)
        case "r": units.append(0x0D)
        case "f": units.append(0x0C)
        case "u":
          guard j + 4 <= part.endIndex, let unit = UInt16(String(String.UnicodeScalarView(part[j..<j + 4])), radix: 16) else { throw Unreadable("bad \\u escape") }
          units.append(unit)
          j += 4
        default: units += Array(String(e).utf16)
        }
      }
      guard let text = String(validating: units, as: UTF16.self) else { throw Unreadable("\\u escapes that are not UTF-16") }
      return Array(text.utf8)
    }
    for line in lines where !line.isEmpty && line[0] != "#" && line[0] != "!" {
      var j = 0
      var escaped = false
      while j < line.count {
        if escaped {
          escaped = false
        } else if line[j] == "\\" {
          escaped = true
        } else if line[j] == "=" || line[j] == ":" || line[j] == " " || line[j] == "\t" || line[j] == "\u{C}" {
          break
        }
        j += 1
      }
      let key = try unescape(line[0..<j])
      var k = j
      while k < line.count, line[k] == " " || line[k] == "\t" || line[k] == "\u{C}" { k += 1 }
      if k < line.count, line[k] == "=" || line[k] == ":" { k += 1 }
      while k < line.count, line[k] == " " || line[k] == "\t" || line[k] == "\u{C}" { k += 1 }
      // Properties.load keeps the last of two equal keys: a document that relies on that is wrong here.
      guard result.updateValue(try unescape(line[k...]), forKey: key) == nil else { throw Unreadable("property \(String(decoding: key, as: UTF8.self)) twice") }
    }
    return result
  }
}
