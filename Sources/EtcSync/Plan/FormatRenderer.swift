import Foundation
import Templates
import Yams

/// Renders the keys of a `format` mapping as one document, with no template to write.
///
/// Keys are taken relative to the mapping's prefix. JSON, YAML and TOML nest them by `/`
/// segments (`db/host` → `{"db": {"host": …}}`); env and Java properties keep them flat
/// (`db/host` → `DB_HOST=…` and `db.host=…`). Values are text: a value that is not valid
/// UTF-8 is refused with the key named. Output is deterministic (keys in byte order) so an
/// unchanged snapshot gives unchanged bytes.
public enum FormatRenderer {
  /// One entry of the document: the key relative to the prefix, and its value.
  public typealias Entry = (key: String, value: [UInt8])

  public static func render(_ format: Mapping.Format, _ entries: [Entry]) throws(PlanError) -> [UInt8] {
    var text: [(String, String)] = []
    for entry in entries {
      guard let value = String(validating: entry.value, as: UTF8.self) else {
        throw PlanError(.notText, "format \(format.rawValue) needs text, but key \"\(escapeBytes(entry.key.utf8))\" holds bytes that are not UTF-8", key: entry.key)
      }
      text.append((entry.key, value))
    }
    switch format {
    case .json: return try Array(Self.json(Self.nest(text)).utf8)
    case .yaml: return try Array(Self.yaml(Self.nest(text)).utf8)
    case .toml: return try Array(Self.toml(Self.nest(text)).utf8)
    case .env: return try Array(Self.env(text).utf8)
    case .properties: return try Array(Self.properties(text).utf8)
    }
  }

  // MARK: Nesting

  /// A tree of nested string maps, built from `/`-separated keys. Tables are keyed by the
  /// segments' bytes: two canonically equivalent segments (`\u{E9}`, `e\u{301}`) are two keys.
  indirect enum Node: Equatable {
    case value(String)
    case table([ExactString: Node])
  }

  static func nest(_ entries: [(String, String)]) throws(PlanError) -> [ExactString: Node] {
    var root: [ExactString: Node] = [:]
    for (key, value) in entries {
      let segments = key.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true)
        .map { ExactString(String(decoding: $0, as: UTF8.self)) }
      guard !segments.isEmpty else { throw PlanError(.badKey, "key \"\(escapeBytes(key.utf8))\" has no name below the prefix", key: key) }
      try Self.insert(value, at: segments[...], into: &root, key: key)
    }
    return root
  }

  private static func insert(_ value: String, at path: ArraySlice<ExactString>, into table: inout [ExactString: Node], key: String) throws(PlanError) {
    let head = path.first!
    if path.count == 1 {
      guard table[head] == nil else {
        throw PlanError(.badKey, "key \"\(escapeBytes(key.utf8))\" is both a value and a table (another key lies below it)", key: key)
      }
      table[head] = .value(value)
      return
    }
    var child: [ExactString: Node]
    switch table[head] {
    case nil: child = [:]
    case .table(let existing): child = existing
    case .value: throw PlanError(.badKey, "key \"\(escapeBytes(key.utf8))\" lies below another key that holds a value", key: key)
    }
    try Self.insert(value, at: path.dropFirst(), into: &child, key: key)
    table[head] = .table(child)
  }

  private static func sortedKeys(_ table: [ExactString: Node]) -> [ExactString] {
    table.keys.sorted()
  }

  // MARK: JSON

  static func json(_ table: [ExactString: Node]) throws(PlanError) -> String {
    func object(_ table: [ExactString: Node], indent: String) -> String {
      if table.isEmpty { return "{}" }
      let inner = indent + "  "
      let members = Self.sortedKeys(table).map { key -> String in
        let value: String
        switch table[key]! {
        case .value(let v): value = Self.jsonString(v)
        case .table(let t): value = object(t, indent: inner)
        }
        return "\(inner)\(Self.jsonString(key.string)): \(value)"
      }
      return "{\n" + members.joined(separator: ",\n") + "\n\(indent)}"
    }
    return object(table, indent: "") + "\n"
  }

  static func jsonString(_ s: String) -> String {
    var out: [UInt8] = []
    out.reserveCapacity(s.utf8.count + 2)
    Self.appendJSONString(s, to: &out)
    return String(decoding: out, as: UTF8.self)
  }

  /// `text` as a JSON string, appended to `out`: `"` and `\` escaped, newline, carriage return
  /// and tab as `\n`, `\r`, `\t`, the other control characters as `\u00xx`, everything else
  /// (slashes, DEL, any other Unicode) as it is. Also the state file's (``StateJSON``).
  static func appendJSONString(_ text: String, to out: inout [UInt8]) {
    out.append(UInt8(ascii: "\""))
    for byte in text.utf8 {
      switch byte {
      case UInt8(ascii: "\""), UInt8(ascii: "\\"):
        out.append(UInt8(ascii: "\\"))
        out.append(byte)
      case UInt8(ascii: "\n"): out.append(contentsOf: "\\n".utf8)
      case UInt8(ascii: "\r"): out.append(contentsOf: "\\r".utf8)
      case UInt8(ascii: "\t"): out.append(contentsOf: "\\t".utf8)
      case 0..<0x20:
        out.append(contentsOf: "\\u00".utf8)
        out.append(hexDigit(byte >> 4))
        out.append(hexDigit(byte & 0xF))
      default: out.append(byte)
      }
    }
    out.append(UInt8(ascii: "\""))
  }

  // MARK: YAML

  static func yaml(_ table: [ExactString: Node]) throws(PlanError) -> String {
    func node(_ table: [ExactString: Node]) -> Yams.Node {
      .mapping(.init(Self.sortedKeys(table).map { key in
        let value: Yams.Node
        switch table[key]! {
        case .value(let v): value = YAMLScalar.node(v)
        case .table(let t): value = node(t)
        }
        return (YAMLScalar.node(key.string), value)
      }))
    }
    do {
      return try Yams.serialize(node: node(table), sortKeys: false)
    } catch {
      throw PlanError(.render, "cannot write YAML: \(error)", cause: error)
    }
  }

  // MARK: TOML

  static func toml(_ table: [ExactString: Node]) throws(PlanError) -> String {
    var out = ""
    func emit(_ table: [ExactString: Node], path: [String]) {
      let keys = Self.sortedKeys(table)
      for key in keys { if case .value(let v) = table[key]! { out += "\(Self.tomlKey(key.string)) = \(Self.tomlString(v))\n" } }
      for key in keys {
        guard case .table(let t) = table[key]! else { continue }
        let sub = path + [key.string]
        out += (out.isEmpty ? "" : "\n") + "[\(sub.map(Self.tomlKey).joined(separator: "."))]\n"
        emit(t, path: sub)
      }
    }
    emit(table, path: [])
    return out
  }

  private static func tomlKey(_ key: String) -> String {
    let bare = !key.isEmpty && key.unicodeScalars.allSatisfy {
      ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-"
    }
    return bare ? key : Self.tomlString(key)
  }

  private static func tomlString(_ s: String) -> String {
    // TOML basic strings use JSON's escapes, plus \u for control characters and DEL.
    Self.jsonString(s).replacingOccurrences(of: "\u{7F}", with: "\\u007f")
  }

  // MARK: env

  static func env(_ entries: [(String, String)]) throws(PlanError) -> String {
    var seen: [String: String] = [:]
    var out = ""
    for (key, value) in entries {
      // No environment can hold a NUL byte (a shell drops or truncates at it).
      guard !value.unicodeScalars.contains("\0") else {
        throw PlanError(.notText, "format env cannot carry a NUL byte, but key \"\(escapeBytes(key.utf8))\" holds one", key: key)
      }
      let name = String(key.uppercased().unicodeScalars.map { scalar -> Character in
        ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar) ? Character(scalar) : "_"
      }).trimmingCharacters(in: CharacterSet(charactersIn: "_"))
      guard !name.isEmpty, !name.first!.isNumber else {
        throw PlanError(.badKey, "key \"\(escapeBytes(key.utf8))\" does not make a valid environment variable name", key: key)
      }
      if let other = seen[name] {
        throw PlanError(.badKey, "keys \"\(escapeBytes(other.utf8))\" and \"\(escapeBytes(key.utf8))\" both become the variable \(name)", key: key)
      }
      seen[name] = key
      out += "\(name)=\(Self.envValue(value))\n"
    }
    return out
  }

  /// Bare when safe, else double-quoted with `\`, `"`, `$` and `` ` `` escaped: read the same
  /// by POSIX shells (`. file`), systemd's EnvironmentFile and docker's --env-file for values
  /// without quotes.
  ///
  /// A newline stays a newline inside the quotes: neither sh nor systemd turns `\n` within
  /// double quotes into one, so writing `\n` changed the value. The loop walks Unicode
  /// scalars, not Characters: a quote or backtick followed by a combining mark is one
  /// Character, and was written unescaped, which let a value end the quotes and run a
  /// command when the file is sourced.
  private static func envValue(_ value: String) -> String {
    let safe = value.unicodeScalars.allSatisfy {
      ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "_./:@%+,=-".unicodeScalars.contains($0)
    }
    if safe { return value }
    var out = "\""
    for scalar in value.unicodeScalars {
      switch scalar {
      case "\\", "\"", "$", "`": out += "\\\(scalar)"
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out + "\""
  }

  // MARK: Java properties

  static func properties(_ entries: [(String, String)]) throws(PlanError) -> String {
    // `a/b` and `a.b` are both written `a.b`: a reader keeps one of them, so the document
    // would not hold what etcd holds. Refused, like two keys that make one env variable.
    var seen: [ExactString: String] = [:]
    var lines: [String] = []
    for (key, value) in entries {
      let dotted = key.utf8.split(separator: UInt8(ascii: "/")).map { String(decoding: $0, as: UTF8.self) }
      let name = Self.propertiesEscape(dotted.joined(separator: "."), isKey: true)
      if let other = seen[ExactString(name)] {
        throw PlanError(.badKey, "keys \"\(escapeBytes(other.utf8))\" and \"\(escapeBytes(key.utf8))\" both become the property \(name)", key: key)
      }
      seen[ExactString(name)] = key
      lines.append(name + "=" + Self.propertiesEscape(value, isKey: false))
    }
    return lines.joined(separator: "\n") + (entries.isEmpty ? "" : "\n")
  }

  /// java.util.Properties escaping: backslash, separators and comment marks in keys, a
  /// leading space in values, control characters, and non-ASCII as \uXXXX (the file is then
  /// read the same as ISO-8859-1 by Properties.load and as UTF-8 by newer readers).
  private static func propertiesEscape(_ s: String, isKey: Bool) -> String {
    var out = ""
    for (i, scalar) in s.unicodeScalars.enumerated() {
      switch scalar {
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      // `=`, `:` and `#` are escaped everywhere (harmless in a value); `!` only in a key or
      // at a value's start, where it would begin a comment.
      case "=", ":", "#": out += "\\\(scalar)"
      case "!" where isKey || i == 0: out += "\\\(scalar)"
      case " " where isKey || i == 0: out += "\\ "
      case _ where scalar.value < 0x20 || scalar.value > 0x7E:
        for unit in String(scalar).utf16 { out += String(format: "\\u%04X", unit) }
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out
  }
}
