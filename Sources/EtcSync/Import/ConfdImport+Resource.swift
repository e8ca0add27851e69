import Foundation

// conf.d: one mapping per template resource.
extension ConfdConverter {
  struct ResourceFile {
    var file: String
    var relative: String
  }

  /// confd's `conf.d` files: every file whose name ends in `toml`, at any depth, in byte order.
  func resourceFiles() throws(ConfdImport.Failure) -> [ResourceFile] {
    let root = self.path("conf.d")
    guard case .success(.directory) = ConfigFiles.kind(root) else {
      throw ConfdImport.Failure(file: root, line: nil, message: "cannot read the confd resource directory: not a directory")
    }
    let all: [String]
    do {
      all = try FileManager.default.subpathsOfDirectory(atPath: root)
    } catch {
      throw ConfdImport.Failure(file: root, line: nil, message: "cannot list: \(error)")
    }
    return all.filter { $0.hasSuffix("toml") }
      .filter { if case .success(.file) = ConfigFiles.kind(root + "/" + $0) { return true } else { return false } }
      .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
      .map { ResourceFile(file: root + "/" + $0, relative: $0) }
  }

  static func name(of relative: String) -> String {
    var name = relative
    if name.hasSuffix(".toml") { name.removeLast(5) }
    return name.split(separator: "/").joined(separator: "-")
  }

  mutating func mapping(_ resource: ResourceFile, global: Global) throws(ConfdImport.Failure) -> [(String, YAMLText.Node)]? {
    let file = resource.file
    let document = try self.read(file)
    for key in document.keys where key.lowercased() != "template" {
      self.warn(file, document.lines[key], "\(key) is outside [template]; confd ignores it")
    }
    guard let key = document.keys.first(where: { $0.lowercased() == "template" }), case .table(let table)? = document[key] else {
      throw ConfdImport.Failure(file: file, line: nil, message: "no [template] table")
    }
    // confd's TOML decoder matches field names without regard to case.
    var fields: [String: String] = [:]
    for key in table.keys { fields[key.lowercased()] = key }
    func line(_ field: String) -> Int? { fields[field].flatMap { table.lines[$0] } ?? document.lines[key] }
    func string(_ field: String) throws(ConfdImport.Failure) -> String? {
      guard let key = fields[field] else { return nil }
      return try Self.string(table, key, file: file)
    }
    func integer(_ field: String) throws(ConfdImport.Failure) -> Int? {
      guard let key = fields[field] else { return nil }
      guard case .integer(let number)? = table[key] else { throw Self.typeError(file, table.lines[key], key, "an integer") }
      return number
    }
    for key in table.keys where !["src", "dest", "keys", "prefix", "mode", "uid", "gid", "check_cmd", "reload_cmd"].contains(key.lowercased()) {
      self.warn(file, table.lines[key], "\(key) is not a confd template resource key; left out")
    }
    guard let src = try string("src"), !src.isEmpty else {
      throw ConfdImport.Failure(file: file, line: line("src"), message: "src is missing or empty (confd refuses the resource: empty src template)")
    }
    guard let dest = try string("dest"), !dest.isEmpty else {
      throw ConfdImport.Failure(file: file, line: line("dest"), message: "dest is missing or empty")
    }
    var mapping: [(String, YAMLText.Node)] = []
    let template = self.path("templates/" + src)
    if ConfigFiles.checkReadableFile(template) != nil {
      self.warn(file, line("src"), "the template \(template) does not exist or cannot be read")
    }
    mapping.append(("template", .scalar(template)))
    var keys: [String] = []
    if let field = fields["keys"] {
      guard case .array(let items)? = table[field] else { throw Self.typeError(file, table.lines[field], field, "a list of strings") }
      for item in items {
        guard case .string(let key) = item else { throw Self.typeError(file, table.lines[field], field, "a list of strings") }
        keys.append(key)
      }
    }
    let ownPrefix = try string("prefix") ?? ""
    if keys.isEmpty {
      if global.prefix == nil && KeyJoin.root(ownPrefix) == "/" {
        self.warn(file, line("keys"), "no keys: confd reads nothing for this resource; the mapping reads the whole keyspace (/)")
        keys = ["/"]
      } else {
        self.warn(file, line("keys"), "no keys: confd reads nothing for this resource; the mapping reads its whole key prefix")
      }
    }
    if !keys.isEmpty { mapping.append(("prefixes", .list(keys))) }
    mapping.append(("dest", .scalar(dest)))
    if !ownPrefix.isEmpty {
      if let globalPrefix = global.prefix {
        self.warn(file, line("prefix"), "prefix \"\(ownPrefix)\" is replaced by confd.toml's prefix \"\(globalPrefix)\" (confd uses the global one when it is set); the mapping uses \"\(globalPrefix)\"")
      } else if KeyJoin.root(ownPrefix) != "/" {
        mapping.append(("keyPrefix", .scalar(ownPrefix)))
      }
    }
    if let mode = try string("mode"), !mode.isEmpty {
      switch Self.goMode(mode) {
      case .some(let (bits, decimal)) where bits <= 0o7777:
        let octal = "0" + String(bits, radix: 8)
        if decimal {
          self.warn(file, line("mode"), "mode \"\(mode)\" is read by confd as a decimal number (Go's base prefix rules), which is \(octal); written as \"\(octal)\", check that this is what you meant (\"0\(mode)\" is octal)")
        }
        mapping.append(("mode", .scalar(octal)))
      default:
        throw ConfdImport.Failure(file: file, line: line("mode"), message: "mode \"\(mode)\" is not a file mode")
      }
    }
    if let uid = try integer("uid"), uid >= 0 { mapping.append(("owner", .scalar(String(uid)))) }
    if let gid = try integer("gid"), gid >= 0 { mapping.append(("group", .scalar(String(gid)))) }
    for (field, name, placeholders) in [("check_cmd", "check", true), ("reload_cmd", "reload", false)] {
      guard let command = try string(field), !command.allSatisfy({ $0 == " " || $0 == "\t" }) else { continue }
      if global.syncOnly { continue }
      let converted = ConfdCommandLine.convert(command, placeholders: placeholders)
      if converted.usesShell {
        self.warn(file, line(field), "\(field) needs a shell; written as [sh, -c, …]\(converted.argv.count > 3 ? " with {{.src}} passed as $1" : "")")
      }
      if !placeholders && command.contains("{{") {
        self.warn(file, line(field), "reload_cmd contains \"{{\": confd runs it as written, but etcsync replaces {{.src}}, {{.dest}} and {{.name}} in reload")
      }
      if placeholders, converted.argv.contains(where: { $0.contains("{{") && !$0.contains("{{.src}}") }) {
        self.warn(file, line(field), "check_cmd uses a template action other than {{.src}}; it is kept as written")
      }
      mapping.append((name, .list(converted.argv)))
    }
    return mapping
  }

  /// Go's `strconv.ParseUint(text, 0, 32)`: `0x`, `0o`, `0b` and a leading `0` choose the base;
  /// `decimal` is true when none did.
  static func goMode(_ text: String) -> (UInt32, decimal: Bool)? {
    var body = Substring(text.filter { $0 != "_" })
    var radix = 10
    for (prefix, base) in [("0x", 16), ("0X", 16), ("0o", 8), ("0O", 8), ("0b", 2), ("0B", 2)] where body.hasPrefix(prefix) {
      radix = base
      body = body.dropFirst(2)
    }
    if radix == 10, body.count > 1, body.hasPrefix("0") { radix = 8 }
    guard !body.isEmpty, let value = UInt32(body, radix: radix) else { return nil }
    return (value, radix == 10 && value > 7)
  }

  static func string(_ table: Table, _ key: String, file: String) throws(ConfdImport.Failure) -> String? {
    guard let value = table[key] else { return nil }
    guard case .string(let text) = value else { throw self.typeError(file, table.lines[key], key, "a string") }
    return text
  }

  static func typeError(_ file: String, _ line: Int?, _ key: String, _ expected: String) -> ConfdImport.Failure {
    ConfdImport.Failure(file: file, line: line, message: "\(key): expected \(expected)")
  }
}
