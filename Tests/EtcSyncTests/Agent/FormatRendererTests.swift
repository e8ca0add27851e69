import EtcSync
import Foundation
import Testing

/// The documents of `format` mappings: exact escaping, and a round trip through a reader of
/// each format that is not ours (sh, Python's json/yaml/tomllib, java.util.Properties).
@Suite("Format renderer")
struct FormatRendererTests {
  static func render(_ format: Mapping.Format, _ entries: [(String, String)]) throws -> String {
    String(decoding: try FormatRenderer.render(format, entries.map { (key: $0.0, value: Array($0.1.utf8)) }), as: UTF8.self)
  }

  /// Values that some format or reader treats specially.
  static let awkwardValues: [String] = [
    "plain", "", "with space", " leading", "trailing ", "quote\"d", "it's", "back\\slash",
    "dollar $HOME `cmd` $(cmd) ${x}", "multi\nline", "crlf\r\nend", "trailing newline\n", "tab\there",
    "unicode é ✓ 😀", "#hash", "=eq", ":colon", "!bang", "a: b", "a #b", "- dash", "-", "?q",
    "yes", "no", "on", "off", "y", "n", "true", "False", "null", "Null", "~", "1e3", "0x1F", "0o17", "0b101",
    "1_000", ".inf", "-.NaN", "2001-12-14", "2001-12-14t21:59:43.10-05:00", "12:30:00", "0755", "+1", "1.",
    "[list]", "{map}", "*alias", "&anchor", "%percent", "@at", "`tick", "|pipe", ">gt", "'single",
    "\u{01}control", "del\u{7F}", "nel\u{85}x", "ls\u{2028}x", "\u{FEFF}bom", "<<", "=",
    // A quote, backtick, dollar or backslash followed by a combining mark is one Character.
    "q\"\u{301}x", "b`\u{301}x", "d$\u{301}x", "s\\\u{301}x",
  ]

  static var awkwardEntries: [(String, String)] {
    awkwardValues.enumerated().map { (String(format: "k%02d", $0.offset), $0.element) }
  }

  // MARK: Exact bytes

  @Test("JSON escapes quotes, backslashes and control characters; keys nest in byte order")
  func jsonEscaping() throws {
    let text = try Self.render(.json, [("b/z", "q\"\\/\u{01}\u{1F}\u{7F}é"), ("a", "x\r\n\t"), ("b/Y", "1")])
    #expect(text == """
      {
        "a": "x\\r\\n\\t",
        "b": {
          "Y": "1",
          "z": "q\\"\\\\/\\u0001\\u001f\u{7F}é"
        }
      }

      """)
  }

  @Test("TOML: bare keys where allowed, quoted otherwise; DEL and controls escaped; tables after values")
  func tomlEscaping() throws {
    let text = try Self.render(.toml, [
      ("key with space", "v"), ("a.b", "dot"), ("ünï", "x\u{7F}\u{01}"), ("t/x/y", "deep"), ("t/v", "1"), ("z", "\"\\"),
    ])
    #expect(text == """
      "a.b" = "dot"
      "key with space" = "v"
      z = "\\"\\\\"
      "ünï" = "x\\u007f\\u0001"

      [t]
      v = "1"

      [t.x]
      y = "deep"

      """)
  }

  @Test("env: safe values bare, others double-quoted with $ ` \" \\ escaped")
  func envEscaping() throws {
    let text = try Self.render(.env, [
      ("db/host", "db.internal:5432"), ("path", "/a/b,c=d@e%f+g"), ("cmd", "$(rm -rf /) `x` \"q\" \\"),
      ("empty", ""), ("lines", "one\ntwo"), ("app.name", "it's"),
    ])
    #expect(text == """
      DB_HOST=db.internal:5432
      PATH=/a/b,c=d@e%f+g
      CMD="\\$(rm -rf /) \\`x\\` \\"q\\" \\\\"
      EMPTY=
      LINES="one
      two"
      APP_NAME="it's"

      """)
  }

  @Test("env: a quote or backtick carrying a combining mark cannot end the quotes and run a command")
  func envCombiningMarks() throws {
    let dir = TemporaryDirectory()
    let marker = dir("PWNED")
    let entries = [
      ("quote", "x\"\u{301}; touch '\(marker)'; X=\"\u{301}"),
      ("tick", "`\u{301}; touch '\(marker)'; `\u{301}"),
    ]
    let text = try Self.render(.env, entries)
    #expect(text == "QUOTE=\"x\\\"\u{301}; touch '\(marker)'; X=\\\"\u{301}\"\nTICK=\"\\`\u{301}; touch '\(marker)'; \\`\u{301}\"\n")
    for (key, value) in entries {  // each file on its own, so one's syntax error cannot hide the other
      try Disk.write(dir("\(key).env"), try Self.render(.env, [(key, value)]))
      let (status, output) = runTool(["sh", "-c", ". \"$0\"; printf '%s' \"$\(key.uppercased())\"", dir("\(key).env")])
      #expect(status == 0)
      #expect(output == value)
    }
    #expect(!Disk.exists(marker))
  }

  @Test("env: names that are invalid or collide are refused, naming the keys")
  func envNames() {
    #expect(throws: PlanError.self) { try Self.render(.env, [("1abc", "v")]) }
    #expect(throws: PlanError.self) { try Self.render(.env, [("__", "v")]) }
    let error = #expect(throws: PlanError.self) { try Self.render(.env, [("a-b", "1"), ("a_b", "2")]) }
    #expect(error?.code == .badKey)
    #expect(error?.message == "keys \"a-b\" and \"a_b\" both become the variable A_B")
  }

  @Test("properties: two keys that make one property name are refused, naming both")
  func propertiesCollision() {
    // `a/b` is written `a.b`, so the key `a.b` would be a second line a reader merges.
    let error = #expect(throws: PlanError.self) { try Self.render(.properties, [("a.b", "1"), ("a/b", "2")]) }
    #expect(error?.code == .badKey)
    #expect(error?.message == "keys \"a.b\" and \"a/b\" both become the property a.b")
    // Canonically equivalent keys are two properties (escaped as \uXXXX, they differ).
    #expect(throws: Never.self) { try Self.render(.properties, [("\u{E9}", "1"), ("e\u{301}", "2")]) }
  }

  @Test("env: a NUL byte cannot be carried by any environment and is refused")
  func envRefusesNUL() {
    let error = #expect(throws: PlanError.self) {
      try FormatRenderer.render(.env, [(key: "k", value: [0x61, 0x00, 0x62])])
    }
    #expect(error?.code == .notText)
  }

  @Test("properties: separators, comment marks, leading spaces and non-ASCII escaped")
  func propertiesEscaping() throws {
    let text = try Self.render(.properties, [
      ("db/host", "localhost"), ("key with=sep:#!", " leading = and : kept"), ("#c", "!x"), ("ü", "é✓😀\t\n"),
    ])
    #expect(text == """
      db.host=localhost
      key\\ with\\=sep\\:\\#\\!=\\ leading \\= and \\: kept
      \\#c=\\!x
      \\u00FC=\\u00E9\\u2713\\uD83D\\uDE00\\t\\n

      """)
  }

  @Test("YAML: strings a YAML reader would take for something else are quoted")
  func yamlQuoting() throws {
    let text = try Self.render(.yaml, [("a", "yes"), ("b", "5432"), ("c", "plain text"), ("d", "~"), ("e", "x: y")])
    #expect(text == """
      a: "yes"
      b: "5432"
      c: plain text
      d: "~"
      e: "x: y"

      """)
  }

  // MARK: Nesting

  @Test("a key that is both a value and a table is refused in nested formats",
        arguments: [Mapping.Format.json, .yaml, .toml])
  func nestingConflict(_ format: Mapping.Format) {
    for entries in [[("a", "1"), ("a/b", "2")], [("a/b", "2"), ("a", "1")]] {
      let error = #expect(throws: PlanError.self) { try Self.render(format, entries) }
      #expect(error?.code == .badKey)
      #expect(error?.message.contains("\"a") == true)
    }
  }

  @Test("flat formats take a key and a key below it side by side", arguments: [Mapping.Format.env, .properties])
  func flatFormatsHaveNoNesting(_ format: Mapping.Format) throws {
    let text = try Self.render(format, [("a", "1"), ("a/b", "2")])
    #expect(text == (format == .env ? "A=1\nA_B=2\n" : "a=1\na.b=2\n"))
  }

  @Test("a value that is not UTF-8 is refused with the key escaped", arguments: Mapping.Format.allCases)
  func notText(_ format: Mapping.Format) {
    let error = #expect(throws: PlanError.self) {
      try FormatRenderer.render(format, [(key: "ok", value: [0x61]), (key: "bad", value: [0xFF, 0xFE])])
    }
    #expect(error?.code == .notText)
    #expect(error?.message == "format \(format.rawValue) needs text, but key \"bad\" holds bytes that are not UTF-8")
  }

  // MARK: Round trips through other readers

  @Test("JSON, YAML and TOML read back every awkward value unchanged (Python json, PyYAML, tomllib)",
        .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")),
        arguments: [Mapping.Format.json, .yaml, .toml])
  func roundTripThroughPython(_ format: Mapping.Format) throws {
    let dir = TemporaryDirectory()
    let awkwardKeys = ["yes", "null", "~", "123", "0x1F", "a: b", "#c", "- d", "<<", "=", "2001-12-14", "é", "tab\tkey"]
    let entries = Self.awkwardEntries + [("nested/key with space", "n"), ("nested/deeper/x", "d"), ("quote\"key", "q")]
      + awkwardKeys.map { ("keys/\($0)", "key \($0)") }
    try Data(try FormatRenderer.render(format, entries.map { (key: $0.0, value: Array($0.1.utf8)) }))
      .write(to: URL(fileURLWithPath: dir("doc")))
    try Disk.write(dir("read.py"), Self.pythonReader)
    let (status, output) = runTool(["python3", dir("read.py"), format.rawValue, dir("doc")])
    #expect(status == 0, "\(output)")
    let read = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: String])
    for (key, value) in entries {
      #expect(read[key] == value, "\(format.rawValue): \(key) = \(value.debugDescription)")
    }
    #expect(read.count == entries.count)
  }

  static let pythonReader = """
    import sys, json
    fmt, path = sys.argv[1], sys.argv[2]
    data = open(path, 'rb').read()
    if fmt == 'json':
        doc = json.loads(data.decode('utf-8'))
    elif fmt == 'yaml':
        import yaml
        doc = yaml.safe_load(data.decode('utf-8'))
    else:
        import tomllib
        doc = tomllib.loads(data.decode('utf-8'))
    def flat(d, prefix, out):
        for k, v in d.items():
            if isinstance(v, dict):
                flat(v, prefix + str(k) + '/', out)
            elif isinstance(v, str):
                out[prefix + str(k)] = v
            else:
                out[prefix + str(k)] = '<%s> %r' % (type(v).__name__, v)
        return out
    sys.stdout.write(json.dumps(flat(doc, '', {})))

    """

  @Test("env: a POSIX shell sourcing the file gets every awkward value unchanged")
  func envRoundTripThroughShell() throws {
    let dir = TemporaryDirectory()
    let entries = Self.awkwardEntries
    try Data(try FormatRenderer.render(.env, entries.map { (key: $0.0, value: Array($0.1.utf8)) }))
      .write(to: URL(fileURLWithPath: dir("app.env")))
    let (status, output) = runTool(["env", "-i", "/bin/sh", "-c", "set -a; . \"$0\"; exec /usr/bin/env -0", dir("app.env")])
    #expect(status == 0, "\(output)")
    var read: [String: String] = [:]
    for item in output.split(separator: "\0", omittingEmptySubsequences: false) where item.contains("=") {
      let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
      read[String(parts[0])] = String(parts[1])
    }
    for (key, value) in entries {
      #expect(read[key.uppercased()] == value, "\(key) = \(value.debugDescription)")
    }
  }

  @Test("properties: java.util.Properties reads every awkward key and value unchanged",
        .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/java")))
  func propertiesRoundTripThroughJava() throws {
    let dir = TemporaryDirectory()
    let entries = Self.awkwardEntries + [
      ("key with=sep:#!", "v"), ("#c", "x"), ("!d", "y"), ("ünï", "z"), (" lead", "w"), ("nested/key", "n"),
    ]
    try Data(try FormatRenderer.render(.properties, entries.map { (key: $0.0, value: Array($0.1.utf8)) }))
      .write(to: URL(fileURLWithPath: dir("app.properties")))
    try Disk.write(dir("Read.java"), """
      import java.nio.charset.StandardCharsets;
      import java.util.*;
      public class Read {
        public static void main(String[] args) throws Exception {
          Properties p = new Properties();
          try (var in = new java.io.FileInputStream(args[0])) { p.load(in); }
          HexFormat hex = HexFormat.of();
          for (String k : new TreeSet<>(p.stringPropertyNames()))
            System.out.println(hex.formatHex(k.getBytes(StandardCharsets.UTF_8)) + " " + hex.formatHex(p.getProperty(k).getBytes(StandardCharsets.UTF_8)));
        }
      }
      """)
    let (status, output) = runTool(["java", dir("Read.java"), dir("app.properties")])
    #expect(status == 0, "\(output)")
    var read: [String: String] = [:]
    for line in output.split(separator: "\n") {
      let parts = line.split(separator: " ", omittingEmptySubsequences: false).map { Self.unhex(String($0)) }
      guard parts.count == 2 else { continue }
      read[parts[0]] = parts[1]
    }
    for (key, value) in entries {
      let name = key.split(separator: "/").joined(separator: ".")
      #expect(read[name] == value, "\(name) = \(value.debugDescription)")
    }
    #expect(read.count == entries.count)
  }

  static func unhex(_ text: String) -> String {
    let digits = Array(text.utf8)
    var bytes: [UInt8] = []
    for index in stride(from: 0, to: digits.count - 1, by: 2) {
      bytes.append(UInt8(String(decoding: digits[index...index + 1], as: UTF8.self), radix: 16) ?? 0)
    }
    return String(decoding: bytes, as: UTF8.self)
  }
}
