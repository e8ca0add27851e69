import Foundation

/// `etcsync import confd DIR`: reads a confd configuration directory (`confd.toml`,
/// `conf.d/*.toml`, `templates/`) and writes the equivalent etcsync configuration as YAML,
/// with a warning for every setting that has no counterpart or changes meaning.
public enum ConfdImport {
  /// A note about the conversion, naming the confd file and line it is about.
  public struct Warning: Equatable, Sendable, CustomStringConvertible {
    /// The confd file, as found under the directory given.
    public var file: String
    /// The 1-based line, when the warning is about one setting.
    public var line: Int?
    /// What happened and what to do.
    public var message: String

    public var description: String {
      if let line { return "\(self.file):\(line): \(self.message)" }
      return "\(self.file): \(self.message)"
    }
  }

  /// The converted configuration and its warnings.
  public struct Conversion: Sendable {
    /// The etcsync configuration (YAML).
    public var yaml: String
    /// Everything that did not convert exactly, in the order of the files read.
    public var warnings: [Warning]
  }

  /// A confd file that cannot be read or is not a valid confd configuration.
  public struct Failure: Error, Equatable, CustomStringConvertible {
    /// The file.
    public var file: String
    /// The 1-based line, when known.
    public var line: Int?
    /// What is wrong.
    public var message: String

    public var description: String {
      if let line { return "\(self.file):\(line): \(self.message)" }
      return "\(self.file): \(self.message)"
    }
  }

  /// Converts the confd directory `directory`.
  ///
  /// Template paths in the result are absolute (`DIR/templates/SRC`, as confd resolves `src`),
  /// so the printed configuration works wherever it is saved.
  /// - Throws: ``Failure`` for a file that cannot be read or parsed, or a resource confd itself
  ///   would refuse (no `src`, no `dest`, a value of the wrong type).
  public static func convert(directory: String) throws(Failure) -> Conversion {
    var converter = Converter(directory: ConfigFiles.resolve(directory, against: ConfigFiles.currentDirectory()))
    return try converter.run()
  }
}

private struct Converter {
  typealias Table = ConfdTOML.Table
  typealias Value = ConfdTOML.Value

  let directory: String
  var warnings: [ConfdImport.Warning] = []
  var out = YAMLText()

  init(directory: String) {
    var trimmed = directory
    while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
    self.directory = trimmed
  }

  func path(_ name: String) -> String { self.directory == "/" ? "/" + name : self.directory + "/" + name }

  mutating func warn(_ file: String, _ line: Int?, _ message: String) {
    self.warnings.append(ConfdImport.Warning(file: file, line: line, message: message))
  }

  func read(_ file: String) throws(ConfdImport.Failure) -> Table {
    let bytes: [UInt8]
    do {
      bytes = try ConfigFiles.readFile(file, limit: 4 * 1024 * 1024)
    } catch {
      throw ConfdImport.Failure(file: file, line: nil, message: "cannot read: \(error.reason)")
    }
    guard let text = String(validating: bytes, as: UTF8.self) else {
      throw ConfdImport.Failure(file: file, line: nil, message: "not UTF-8 text")
    }
    do {
      return try ConfdTOML.parse(text)
    } catch {
      throw ConfdImport.Failure(file: file, line: error.line, message: "invalid TOML: \(error.message)")
    }
  }

  mutating func run() throws(ConfdImport.Failure) -> ConfdImport.Conversion {
    guard case .success(.directory) = ConfigFiles.kind(self.directory) else {
      let reason: String
      switch ConfigFiles.kind(self.directory) {
      case .failure(let failure): reason = failure.reason
      default: reason = "not a directory"
      }
      throw ConfdImport.Failure(file: self.directory, line: nil, message: "cannot read the confd directory: \(reason)")
    }
    let global = try self.globalSettings()
    let resources = try self.resourceFiles()
    guard !resources.isEmpty else {
      throw ConfdImport.Failure(
        file: self.path("conf.d"), line: nil, message: "no template resources (*.toml) found")
    }
    var mappings: [[(String, YAMLText.Node)]] = []
    var names: [String: Int] = [:]
    for resource in resources {
      guard var mapping = try self.mapping(resource, global: global) else { continue }
      var name = Self.name(of: resource.relative)
      if let count = names[name] {
        names[name] = count + 1
        name += "-\(count + 1)"
      } else {
        names[name] = 1
      }
      mapping.insert(("name", .scalar(name)), at: 0)
      mappings.append(mapping)
    }
    self.out.line("# Converted by `etcsync import confd \(self.directory)`. Check it with `etcsync check -c FILE`.")
    for (key, node) in global.top { self.out.entry(key, node, indent: 0) }
    self.out.line("mappings:")
    for mapping in mappings { self.out.item(mapping, indent: 2) }
    return ConfdImport.Conversion(yaml: self.out.text, warnings: self.warnings)
  }

  // MARK: confd.toml

  struct Global {
    var top: [(String, YAMLText.Node)] = []
    /// confd's global `prefix`, which replaces every resource's own.
    var prefix: String? = nil
    var prefixLine: Int? = nil
    var syncOnly = false
  }

  mutating func globalSettings() throws(ConfdImport.Failure) -> Global {
    let file = self.path("confd.toml")
    var global = Global()
    guard case .success = ConfigFiles.kind(file) else {
      self.warn(
        file, nil,
        "not found: confd took its settings from flags; etcd.endpoints is left at etcsync's default (http://127.0.0.1:2379), see docs/coming-from-confd.md for the flags")
      return global
    }
    let table = try self.read(file)
    func string(_ key: String) throws(ConfdImport.Failure) -> String? {
      try Self.string(table, key, file: file)
    }
    var etcd: [(String, YAMLText.Node)] = []
    var tls: [(String, YAMLText.Node)] = []
    let scheme = try string("scheme")
    for key in table.keys {
      let line = table.lines[key]
      switch key {
      case "backend":
        let backend = try string(key) ?? ""
        if backend == "etcd" {
          self.warn(file, line, "backend \"etcd\" is confd's etcd v2 client; etcsync reads etcd v3 only, and keys written with the v2 API are not visible to it")
        } else if backend != "etcdv3" {
          self.warn(file, line, "backend \"\(backend)\" has no equivalent: etcsync reads etcd v3 only; the endpoints below are confd's nodes for \(backend)")
        }
      case "nodes":
        guard case .array(let items)? = table[key] else { throw Self.typeError(file, line, key, "a list of strings") }
        var endpoints: [String] = []
        for item in items {
          guard case .string(let node) = item else { throw Self.typeError(file, line, key, "a list of strings") }
          endpoints.append(Self.endpoint(node, scheme: scheme, tls: table["client_cert"] != nil || table["client_cakeys"] != nil))
        }
        etcd.append(("endpoints", .list(endpoints)))
      case "scheme":
        break
      case "client_cakeys", "client_cert", "client_key":
        guard let path = try string(key), !path.isEmpty else { continue }
        let name = ["client_cakeys": "ca", "client_cert": "cert", "client_key": "key"][key]!
        if !path.hasPrefix("/") {
          self.warn(file, line, "\(key) \"\(path)\" is relative to confd's working directory; etcsync takes etcd.tls.\(name) relative to the configuration file's directory")
        }
        tls.append((name, .scalar(path)))
      case "client_insecure":
        if case .bool(true)? = table[key] {
          self.warn(file, line, "client_insecure has no equivalent: etcsync always verifies the members' certificates (set etcd.tls.ca to their CA, or etcd.tls.serverName)")
        }
      case "username":
        break
      case "password":
        self.warn(
          file, line,
          "password is not copied: etcsync reads the password from a file only; write it to /etc/etcsync/etcd-password (mode 0600) or point ETCSYNC_PASSWORD_FILE or --password-file at the file that holds it")
      case "basic_auth":
        break
      case "prefix":
        let prefix = try string(key) ?? ""
        if !prefix.isEmpty {
          global.prefix = prefix
          global.prefixLine = line
        }
      case "confdir":
        if let dir = try string(key), ConfigFiles.resolve(dir, against: self.directory) != self.directory {
          self.warn(file, line, "confdir is \"\(dir)\"; the files converted are those of \(self.directory)")
        }
      case "interval":
        self.warn(file, line, "interval has no equivalent: etcsync does not poll, `etcsync run` watches etcd and renders on every change (use wait: {min, max} to coalesce changes)")
      case "watch":
        self.warn(file, line, "watch needs no setting: `etcsync run` always watches")
      case "onetime":
        self.warn(file, line, "onetime has no setting: run `etcsync sync` for one pass")
      case "log-level":
        let level = (try string(key) ?? "").lowercased()
        let mapped = ["debug": "debug", "info": "info", "warn": "warning", "warning": "warning", "error": "error", "fatal": "critical", "panic": "critical"][level]
        if let mapped {
          global.top.append(("log", .map([("level", .scalar(mapped))])))
        } else {
          self.warn(file, line, "log-level \"\(level)\" is not a confd level; left out")
        }
      case "noop":
        self.warn(file, line, "noop has no setting: use `etcsync diff` or `etcsync sync --dry-run`")
      case "sync-only":
        if case .bool(true)? = table[key] {
          global.syncOnly = true
          self.warn(file, line, "sync-only has no equivalent: check and reload commands are left out of every mapping, as confd skipped them")
        }
      case "keep-stage-file", "keep_stage_file":
        self.warn(file, line, "\(key) has no equivalent: etcsync removes a staged file that it does not rename into place")
      case "srv_domain", "srv_record":
        self.warn(file, line, "\(key) has no equivalent: list the members in etcd.endpoints")
      case "secret_keyring":
        self.warn(file, line, "secret_keyring has no equivalent: cget, cgets, cgetv and cgetvs are not implemented")
      case "auth_token", "auth_type", "app_id", "user_id", "role_id", "secret_id", "table", "separator", "file", "filter", "path":
        self.warn(file, line, "\(key) is a setting of another confd backend; it has no equivalent")
      default:
        self.warn(file, line, "\(key) is not a confd setting etcsync knows; left out")
      }
    }
    if let user = try string("username"), !user.isEmpty {
      etcd.append(("auth", .map([("user", .scalar(user)), ("passwordFile", .scalar("/etc/etcsync/etcd-password"))])))
    } else if table["password"] != nil {
      self.warn(file, table.lines["password"], "password without username: etcsync's etcd.auth needs a user; left out")
    }
    if !tls.isEmpty { etcd.append(("tls", .map(tls))) }
    if let prefix = global.prefix, KeyJoin.root(prefix) != "/" {
      global.top.insert(("keyPrefix", .scalar(prefix)), at: 0)
    }
    if !etcd.isEmpty { global.top.append(("etcd", .map(etcd))) }
    return global
  }

  /// A node as an etcsync endpoint: confd's etcdv3 client takes `host:port` as plain HTTP
  /// unless TLS files are given.
  static func endpoint(_ node: String, scheme: String?, tls: Bool) -> String {
    if node.contains("://") { return node }
    let scheme = scheme.flatMap { $0.isEmpty ? nil : $0 } ?? (tls ? "https" : "http")
    return "\(scheme)://\(node)"
  }

  // MARK: conf.d

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

/// The YAML the converter prints: block mappings, flow lists, and scalars quoted when plain
/// YAML would read them differently. A `$` that etcsync would expand (`${`, `$$`) is doubled.
struct YAMLText {
  indirect enum Node {
    case scalar(String)
    case list([String])
    case map([(String, Node)])
  }

  var text = ""

  mutating func line(_ line: String) { self.text += line + "\n" }

  mutating func entry(_ key: String, _ node: Node, indent: Int) {
    let pad = String(repeating: " ", count: indent)
    switch node {
    case .scalar(let value): self.line("\(pad)\(key): \(Self.quote(value))")
    case .list(let items): self.line("\(pad)\(key): [\(items.map(Self.quote).joined(separator: ", "))]")
    case .map(let entries):
      self.line("\(pad)\(key):")
      for (child, value) in entries { self.entry(child, value, indent: indent + 2) }
    }
  }

  /// One entry of a list of mappings: `- first: …` and the other keys under it.
  mutating func item(_ entries: [(String, Node)], indent: Int) {
    var body = YAMLText()
    for (key, node) in entries { body.entry(key, node, indent: indent + 2) }
    self.text += String(repeating: " ", count: indent) + "- " + body.text.dropFirst(indent + 2)
  }

  /// `value` as a YAML scalar that reads back as the same string.
  static func quote(_ value: String) -> String {
    var escaped = ""
    let characters = Array(value)
    var index = 0
    while index < characters.count {
      let character = characters[index]
      escaped.append(character)
      if character == "$", index + 1 < characters.count, characters[index + 1] == "{" || characters[index + 1] == "$" {
        escaped.append("$")
      }
      index += 1
    }
    if self.isPlain(escaped) { return escaped }
    var out = "\""
    for scalar in escaped.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\t": out += "\\t"
      case "\r": out += "\\r"
      default:
        if scalar.value < 0x20 || scalar.value == 0x7F {
          out += "\\x" + (scalar.value < 0x10 ? "0" : "") + String(scalar.value, radix: 16)
        } else {
          out.unicodeScalars.append(scalar)
        }
      }
    }
    return out + "\""
  }

  /// Plain: letters, digits and `/._-:+@`, not starting with a YAML indicator, and not a word
  /// or number YAML would read as another type.
  private static func isPlain(_ value: String) -> Bool {
    guard let first = value.unicodeScalars.first else { return false }
    let allowed = value.unicodeScalars.allSatisfy {
      ($0 >= "a" && $0 <= "z") || ($0 >= "A" && $0 <= "Z") || ($0 >= "0" && $0 <= "9") || "/._-+@".unicodeScalars.contains($0)
        || ($0 == ":" )
    }
    guard allowed, first != ":", first != "@" else { return false }
    if first == "-" {
      // `-t` is plain; `-`, `- x`, `-1` and `-.5` are not.
      let second = value.unicodeScalars.dropFirst().first
      guard let second, second.properties.numericType == nil, second != "." else { return false }
    }
    if value.contains(": ") || value.hasSuffix(":") { return false }
    if first.properties.numericType != nil || first == "." || first == "+" { return false }
    let lower = value.lowercased()
    return !["true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"].contains(lower)
  }
}
