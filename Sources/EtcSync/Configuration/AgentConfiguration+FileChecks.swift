extension AgentConfiguration {
  /// The search path used when the environment has no `PATH`.
  static let defaultSearchPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

  /// What `etcsync check` adds to parsing: the files the configuration names are readable,
  /// users, groups and commands exist, and destinations have the right type. Reads only;
  /// nothing is created or changed.
  func checkFiles(_ locator: FieldLocator, environment: [String: String]) throws(ConfigurationError) {
    if let tls = self.etcd.tls {
      try Self.checkReadable(tls.ca, field: "etcd.tls.ca", what: "CA file", locator)
      try Self.checkReadable(tls.cert, field: "etcd.tls.cert", what: "certificate file", locator)
      try Self.checkReadable(tls.key, field: "etcd.tls.key", what: "key file", locator)
    }
    if let auth = self.etcd.auth {
      do {
        _ = try AuthSettings.readPassword(auth.passwordFile)
      } catch {
        throw locator.error(
          .fileAccess, field: "etcd.auth.passwordFile",
          "cannot read the password file \"\(auth.passwordFile)\": \(error.reason)")
      }
    }
    let searchPath = environment["PATH"] ?? Self.defaultSearchPath
    for (index, mapping) in self.mappings.enumerated() {
      let field = "mappings[\(index)]"
      try Self.checkReadable(mapping.template, field: "\(field).template", what: "template", locator)
      try Self.checkDestination(mapping, field: field, locator)
      let root = mapping.kind == .tree ? mapping.dest : ConfigFiles.directory(of: mapping.dest)
      try Self.checkTrusted(root, field: "\(field).dest", locator)
      try Self.checkPrincipals(mapping, field: field, locator)
      for (key, argv) in [("check", mapping.check), ("reload", mapping.reload)] {
        try Self.checkProgram(argv?.first, field: "\(field).\(key)[0]", searchPath: searchPath, locator)
      }
    }
    // Exec mode's child, as `run` would start it (`--exec -- CMD` replaces it there; `check`
    // sees the file's).
    try Self.checkProgram(self.exec?.command.first, field: "exec.command[0]", searchPath: searchPath, locator)
    if case .success(let kind) = ConfigFiles.kind(self.state.dir), kind != .directory {
      throw locator.error(.fileAccess, field: "state.dir", "\"\(self.state.dir)\" exists and is not a directory")
    }
    try Self.checkTrusted(self.state.dir, field: "state.dir", locator)
  }

  /// `program` (argv[0] of a check, reload or exec command) exists and is executable, looked
  /// up in `searchPath` unless it contains `/`.
  private static func checkProgram(
    _ program: String?, field: String, searchPath: String, _ locator: FieldLocator
  ) throws(ConfigurationError) {
    guard let program, Self.findExecutable(program, searchPath: searchPath) == nil else { return }
    let reason =
      program.contains("/")
      ? "\"\(program)\" is not an executable file" : "\"\(program)\" is not found in PATH (\(searchPath))"
    throw locator.error(.fileAccess, field: field, reason)
  }

  /// The agent refuses a root whose path another user controls (see `TrustedPath`); `check`
  /// says so first. It judges with the user it runs as: run it as the agent's user.
  private static func checkTrusted(_ path: String, field: String, _ locator: FieldLocator) throws(ConfigurationError) {
    guard let problem = TrustedPath.problem(path) else { return }
    throw locator.error(.fileAccess, field: field, "\(problem.message) (at \"\(problem.path)\")")
  }

  private static func checkReadable(
    _ path: String?, field: String, what: String, _ locator: FieldLocator
  ) throws(ConfigurationError) {
    guard let path, let failure = ConfigFiles.checkReadableFile(path) else { return }
    throw locator.error(.fileAccess, field: field, "cannot read the \(what) \"\(path)\": \(failure.reason)")
  }

  /// A tree's destination must be a directory if it exists, any other kind's must not be;
  /// without `createDirs` the parent directory must already exist.
  private static func checkDestination(
    _ mapping: Mapping, field: String, _ locator: FieldLocator
  ) throws(ConfigurationError) {
    switch ConfigFiles.kind(mapping.dest) {
    case .success(.directory) where mapping.kind != .tree:
      throw locator.error(
        .conflict, field: "\(field).dest",
        "\"\(mapping.dest)\" is a directory; a \(mapping.kind.rawValue) mapping writes a file")
    case .success(.file) where mapping.kind == .tree:
      throw locator.error(
        .conflict, field: "\(field).dest", "\"\(mapping.dest)\" is a file; a tree mapping writes a directory")
    default:
      break
    }
    guard !mapping.createDirs else { return }
    let parent = ConfigFiles.directory(of: mapping.dest)
    guard case .success(.directory) = ConfigFiles.kind(parent) else {
      throw locator.error(
        .fileAccess, field: "\(field).dest",
        "the directory \"\(parent)\" does not exist and createDirs is false")
    }
  }

  private static func checkPrincipals(
    _ mapping: Mapping, field: String, _ locator: FieldLocator
  ) throws(ConfigurationError) {
    if let owner = mapping.owner, !owner.allSatisfy(\.isNumber), !ConfigFiles.userExists(owner) {
      throw locator.error(.fileAccess, field: "\(field).owner", "no user named \"\(owner)\" on this machine")
    }
    if let group = mapping.group, !group.allSatisfy(\.isNumber), !ConfigFiles.groupExists(group) {
      throw locator.error(.fileAccess, field: "\(field).group", "no group named \"\(group)\" on this machine")
    }
  }

  /// The path `program` runs from: itself when it contains `/`, else the first executable
  /// match in `searchPath`.
  static func findExecutable(_ program: String, searchPath: String) -> String? {
    if program.contains("/") { return ConfigFiles.isExecutableFile(program) ? program : nil }
    for directory in searchPath.split(separator: ":") where !directory.isEmpty {
      let candidate = "\(directory)/\(program)"
      if ConfigFiles.isExecutableFile(candidate) { return candidate }
    }
    return nil
  }
}
