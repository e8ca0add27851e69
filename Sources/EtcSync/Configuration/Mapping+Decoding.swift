extension Mapping {
  static let keys = [
    "name", "kind", "prefix", "prefixes", "key", "template", "dest", "mode", "owner", "group",
    "dirMode", "createDirs", "check", "reload", "commandTimeout", "wait", "retry", "swap", "format",
    "writeBack", "conflict", "deletes", "writeBackLimits", "keyPrefix", "missingKey", "delimiters",
    "repairDrift",
  ]

  /// The kinds each kind-specific key applies to; a key set on another kind is an error.
  static let applicableKinds: [String: [Kind]] = [
    "prefix": [.template, .tree, .format], "prefixes": [.template, .tree, .format],
    "key": [.file], "template": [.template], "swap": [.tree], "format": [.format],
    "writeBack": [.tree, .file, .format], "conflict": [.tree, .file, .format],
    "deletes": [.tree, .file, .format], "writeBackLimits": [.tree, .file, .format],
    "missingKey": [.template], "delimiters": [.template],
  ]

  /// Reads one element of `mappings`; `keyPrefix` is the top level's, which the mapping's own
  /// replaces.
  init(decoding node: ConfigNode, keyPrefix inherited: String? = nil) throws(ConfigurationError) {
    let map = try node.keyed(Self.keys)
    let nameNode = try map.required(
      "name", "every mapping needs a unique name such as \"nginx-upstreams\"")
    let name = try nameNode.nonEmptyString(expected: "a mapping name")
    guard ValueSyntax.isMappingName(name) else {
      throw nameNode.invalid("a name of letters, digits, '-', '_' and '.' (at most 128)")
    }
    let kind = try Self.kind(of: map)
    try Self.checkApplicable(map, kind: kind)
    let (what, example) = kind == .tree ? ("directory", "/srv/app/config") : ("file", "/etc/app/app.conf")
    let dest = try map.required("dest", "where the \(what) goes, such as dest: \(example)")
      .absolutePath(example: example)
    guard dest != "/" else {
      throw map.error(at: "dest", .invalidValue, "the root directory cannot be a destination")
    }
    self.init(name: name, kind: kind, dest: dest)
    self.keyPrefix = try map["keyPrefix"]?.keyPrefix() ?? inherited
    self.prefixes = try Self.prefixes(of: map, kind: kind, keyPrefix: self.keyPrefix)
    if kind == .file {
      let key = try map.required("key", "the etcd key whose value is the file").nonEmptyString(expected: "an etcd key")
      self.key = self.keyPrefix.map { KeyJoin.join($0, key) } ?? key
    }
    if kind == .template {
      self.template = try map.required(
        "template", "the template file, such as template: /etc/etcsync/templates/app.conf.tmpl"
      ).filePath()
    }
    if kind == .format {
      self.format = try map.required("format", "one of json, yaml, toml, env, properties").oneOf(Format.self)
    }
    if let node = map["missingKey"] {
      self.missingKey = try node.oneOf(MissingKeyOption.self, aliases: ["invalid": .default])
    }
    if let node = map["delimiters"] { self.delimiters = try node.delimiters() }
    try self.decodeFileSettings(map)
    try self.decodeCommands(map)
    try self.decodeWriteBack(map)
  }

  /// `kind:` if given, else inferred from `template:` (template), `key:` (file) or `format:`
  /// (format). A plain `prefix:` could be a tree or a format, so it needs `kind:`.
  private static func kind(of map: KeyedNode) throws(ConfigurationError) -> Kind {
    if let node = map["kind"] { return try node.oneOf(Kind.self) }
    let hints: [(String, Kind)] = [("template", .template), ("key", .file), ("format", .format)]
    let given = hints.filter { map.has($0.0) }
    if given.count > 1 {
      let names = given.map { "\($0.0): (kind \($0.1.rawValue))" }.joined(separator: " and ")
      throw map.error(
        at: given[1].0, .conflict, "both \(names) are given; keep the one for this mapping's kind, or set kind")
    }
    guard let inferred = given.first?.1 else {
      let what =
        map.has("prefix") || map.has("prefixes")
        ? "a prefix alone could be a tree or a format mapping" : "no template:, key: or format: is given"
      throw map.missing("kind", "set kind: template, tree, file or format (\(what))")
    }
    return inferred
  }

  /// Refuses keys that the kind does not use: a typo-like mistake that must not pass silently.
  private static func checkApplicable(_ map: KeyedNode, kind: Kind) throws(ConfigurationError) {
    for key in Self.keys where map.has(key) {
      guard let kinds = self.applicableKinds[key], !kinds.contains(kind) else { continue }
      if key == "writeBack", kind == .template {
        guard try map.bool("writeBack") == true else { continue }
        throw map.error(
          at: key, .conflict, "write-back is not available for template mappings; use a tree, file or format mapping")
      }
      throw map.error(
        at: key, .conflict, "not used by a \(kind.rawValue) mapping; it applies to \(Self.describe(kinds))")
    }
  }

  /// `kind tree` or `kinds tree, file and format`.
  static func describe(_ kinds: [Kind]) -> String {
    let names = kinds.map(\.rawValue)
    guard names.count > 1 else { return "kind " + names.joined() }
    return "kinds " + names.dropLast().joined(separator: ", ") + " and " + names.last!
  }

  /// `prefix: /a/` or `prefixes: [/a/, /b/]`: at least one for `template`, exactly one for
  /// `tree` and `format`, none for `file`. Under a `keyPrefix`, each is joined to it
  /// (``KeyJoin``), and a mapping without a prefix reads the whole `keyPrefix`.
  private static func prefixes(of map: KeyedNode, kind: Kind, keyPrefix: String?) throws(ConfigurationError) -> [String] {
    guard kind != .file else { return [] }
    if let keyPrefix, !map.has("prefix"), !map.has("prefixes") { return [keyPrefix] }
    if map.has("prefix") && map.has("prefixes") {
      throw map.error(at: "prefixes", .conflict, "give either prefix or prefixes, not both")
    }
    var prefixes: [(String, ConfigNode)] = []
    if let node = map["prefix"] {
      if node.isList {
        throw node.invalid("one prefix such as \"/services/web/\"", hint: "write prefixes: for a list")
      }
      prefixes = [(try node.nonEmptyString(expected: "an etcd key prefix such as \"/services/web/\""), node)]
    } else if let node = map["prefixes"] {
      for element in try node.list(expected: "a list of etcd key prefixes") {
        prefixes.append((try element.nonEmptyString(expected: "an etcd key prefix"), element))
      }
      guard !prefixes.isEmpty else { throw node.invalid("at least one prefix") }
    } else {
      throw map.missing("prefix", "a \(kind.rawValue) mapping reads an etcd prefix, such as prefix: /apps/web/")
    }
    if kind != .template, prefixes.count > 1 {
      throw prefixes[1].1.error(.conflict, "a \(kind.rawValue) mapping reads exactly one prefix")
    }
    if let keyPrefix { prefixes = prefixes.map { (KeyJoin.join(keyPrefix, $0.0), $0.1) } }
    for (index, (prefix, node)) in prefixes.enumerated() where prefixes[..<index].contains(where: { $0.0.utf8.elementsEqual(prefix.utf8) }) {
      throw node.error(.conflict, "the prefix \"\(prefix)\" is listed twice")
    }
    return prefixes.map(\.0)
  }

  private mutating func decodeFileSettings(_ map: KeyedNode) throws(ConfigurationError) {
    self.mode = try map["mode"]?.fileMode()
    self.dirMode = try map["dirMode"]?.fileMode()
    for key in ["owner", "group"] {
      guard let node = map[key] else { continue }
      let expected = "a \(key == "owner" ? "user" : "group") name or numeric id"
      let text = try node.nonEmptyString(expected: expected)
      guard ValueSyntax.isPrincipal(text) else { throw node.invalid(expected) }
      if key == "owner" { self.owner = text } else { self.group = text }
    }
    if let createDirs = try map.bool("createDirs") { self.createDirs = createDirs }
    if let swap = try map["swap"]?.oneOf(Swap.self) { self.swap = swap }
  }

  private mutating func decodeCommands(_ map: KeyedNode) throws(ConfigurationError) {
    self.check = try map["check"]?.argv(example: "[nginx, -t, -c, \"{{.src}}\"]")
    self.reload = try map["reload"]?.argv(example: "[systemctl, reload, nginx]")
    self.commandTimeout = try map["commandTimeout"]?.positiveDuration()
    if let node = map["wait"] { self.wait = try WaitSettings(decoding: node) }
    if let node = map["retry"] { self.retry = try RetrySettings(decoding: node) }
  }

  private mutating func decodeWriteBack(_ map: KeyedNode) throws(ConfigurationError) {
    self.writeBack = try map.bool("writeBack") ?? false
    if let repair = try map.bool("repairDrift") {
      // Write-back pushes a local edit to etcd; putting etcd's content back over it would
      // undo what the operator meant to publish.
      if self.writeBack && repair {
        throw map.error(at: "repairDrift", .conflict, "a write-back mapping pushes local edits to etcd instead of repairing them; remove repairDrift")
      }
      self.repairDrift = repair
    }
    if let conflict = try map["conflict"]?.oneOf(ConflictPolicy.self) { self.conflict = conflict }
    self.deletes = try map.bool("deletes") ?? false
    if let node = map["writeBackLimits"] { self.writeBackLimits = try WriteBackLimits(decoding: node) }
    if self.writeBack {
      // A swapped tree is a read-only view (its files live in a hidden directory that the
      // next swap replaces, and an editor saving over a top-level symlink replaces the link):
      // local edits need real files, so a write-back tree is written in place.
      if self.kind == .tree {
        if map["swap"] != nil, self.swap == .symlink {
          throw map.error(at: "swap", .conflict, "a write-back tree is written in place; remove swap: symlink or set swap: in-place")
        }
        self.swap = .inPlace
      }
      // Only JSON and YAML read back to the keys they came from: env and properties rename
      // keys (db/host → DB_HOST), and no TOML reader is available here.
      if self.kind == .format, let format = self.format, format != .json, format != .yaml {
        throw map.error(at: "writeBack", .conflict, "write-back of a format mapping needs format json or yaml; \(format.rawValue) does not read back to its keys")
      }
      return
    }
    if map.has("conflict") {
      throw map.error(at: "conflict", .conflict, "only used with writeBack: true")
    }
    if self.deletes {
      throw map.error(at: "deletes", .conflict, "only used with writeBack: true")
    }
    if map.has("writeBackLimits") {
      throw map.error(at: "writeBackLimits", .conflict, "only used with writeBack: true")
    }
  }
}

extension ConfigNode {
  /// A `keyPrefix`: joined to `/` and cleaned as confd does (``KeyJoin/root(_:)``).
  func keyPrefix() throws(ConfigurationError) -> String {
    KeyJoin.root(try self.nonEmptyString(expected: "an etcd key prefix such as \"/config/hosts/web-1\""))
  }

  /// `delimiters: ["[[", "]]"]`: two non-empty strings without white space.
  func delimiters() throws(ConfigurationError) -> Mapping.Delimiters {
    let expected = "two delimiters such as [\"[[\", \"]]\"]"
    let elements = try self.list(expected: expected)
    guard elements.count == 2 else { throw self.invalid(expected) }
    var texts: [String] = []
    for element in elements {
      let text = try element.nonEmptyString(expected: "a non-empty delimiter such as \"[[\"")
      guard !text.utf8.contains(where: { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) else {
        throw element.invalid("a delimiter without white space")
      }
      texts.append(text)
    }
    return Mapping.Delimiters(left: texts[0], right: texts[1])
  }

  /// An octal file mode: `"0644"`, `"644"` or `"0o644"`, at most `"07777"`.
  func fileMode() throws(ConfigurationError) -> UInt16 {
    let expected = "an octal file mode such as \"0644\""
    guard let mode = ValueSyntax.fileMode(try self.string(expected: expected)) else {
      throw self.invalid(expected)
    }
    return mode
  }

  /// A command as a list of arguments. A single string is refused: commands never run
  /// through a shell unless the user writes `[sh, -c, "…"]`.
  func argv(example: String) throws(ConfigurationError) -> [String] {
    let expected = "a list of arguments such as \(example)"
    guard self.isList else {
      let hint = "commands do not run through a shell; write [sh, -c, \"...\"] to use one"
      throw self.invalid(expected, hint: hint)
    }
    let argv = try self.stringList(expected: expected)
    guard !argv.isEmpty else { throw self.invalid("at least the program to run, such as \(example)") }
    return argv
  }
}
