import Yams

extension AgentConfiguration {
  /// Reads the configuration file at `path` and applies `ETCSYNC_*` variables from
  /// `environment` and then `overrides` (the command-line flags) over it.
  ///
  /// Relative paths in the file (templates, TLS files, the password file) are taken relative
  /// to the file's directory. With `checkFiles`, files the configuration names must exist
  /// and be readable and commands must be found, as `etcsync check` wants; without it
  /// nothing outside the configuration file is looked at.
  ///
  /// - Parameters:
  ///   - path: The YAML file; errors name it as given.
  ///   - environment: The process environment (`ProcessInfo.processInfo.environment`);
  ///     taken as a parameter so tests need not change the real one.
  ///   - overrides: Values from command-line flags; they win over everything.
  ///   - checkFiles: Also check referenced files, users, groups and commands.
  /// - Throws: The first problem found, with file, line, column and field.
  public static func load(
    path: String,
    environment: [String: String],
    overrides: ConfigurationOverrides = ConfigurationOverrides(),
    checkFiles: Bool = false
  ) throws(ConfigurationError) -> AgentConfiguration {
    let bytes: [UInt8]
    do {
      bytes = try ConfigFiles.readFile(path, limit: 16 * 1024 * 1024)
    } catch {
      throw ConfigurationError(
        .fileAccess, file: path, message: "cannot read the configuration file: \(error.reason)")
    }
    guard let yaml = String(validating: bytes, as: UTF8.self) else {
      throw ConfigurationError(.syntax, file: path, message: "the configuration file is not UTF-8 text")
    }
    let absolute = ConfigFiles.resolve(path, against: ConfigFiles.currentDirectory())
    return try self.load(
      yaml: yaml, sourceName: path, baseDirectory: ConfigFiles.directory(of: absolute),
      environment: environment, overrides: overrides, checkFiles: checkFiles)
  }

  /// Reads a configuration from YAML text; the same as ``load(path:environment:overrides:checkFiles:)``
  /// without the file.
  ///
  /// - Parameters:
  ///   - yaml: The configuration text.
  ///   - sourceName: The name errors give the text, such as `etcsync.yaml`.
  ///   - baseDirectory: The directory relative paths are resolved against; `nil` leaves them
  ///     as written.
  public static func load(
    yaml: String,
    sourceName: String = "<configuration>",
    baseDirectory: String? = nil,
    environment: [String: String] = [:],
    overrides: ConfigurationOverrides = ConfigurationOverrides(),
    checkFiles: Bool = false
  ) throws(ConfigurationError) -> AgentConfiguration {
    let context = DecodingContext(sourceName: sourceName, baseDirectory: baseDirectory)
    var written: [String: String] = [:]
    let root = try self.compose(yaml, context: context, environment: environment, written: &written)
    var decoded = try self.decode(root)
    var locator = FieldLocator(sourceName: sourceName, marks: context.marks)
    try decoded.apply(ConfigurationOverrides(environment: environment), from: .environment, locator: &locator)
    try decoded.apply(overrides, from: .flags, locator: &locator)
    var configuration = try decoded.finish(locator)
    configuration.writtenWithDollars = written
    try configuration.validate(locator)
    if checkFiles { try configuration.checkFiles(locator, environment: environment) }
    return configuration
  }

  /// Parses the YAML into nodes, syntax errors keeping libyaml's line and column, and expands
  /// `${NAME}` variables in its values (``ConfigVariables``) before anything reads them.
  static func compose(
    _ yaml: String, context: DecodingContext, environment: [String: String] = [:]
  ) throws(ConfigurationError) -> ConfigNode {
    var written: [String: String] = [:]
    return try self.compose(yaml, context: context, environment: environment, written: &written)
  }

  /// ``compose(_:context:environment:)``, collecting by field path the values whose `$$` or
  /// `${…}` the expansion changed (``AgentConfiguration/writtenWithDollars``).
  static func compose(
    _ yaml: String, context: DecodingContext, environment: [String: String], written: inout [String: String]
  ) throws(ConfigurationError) -> ConfigNode {
    let root: Node?
    do {
      root = try Yams.compose(yaml: yaml)
    } catch let error as YamlError {
      throw Self.syntaxError(error, yaml: yaml, sourceName: context.sourceName)
    } catch {
      throw ConfigurationError(.syntax, file: context.sourceName, message: "invalid YAML: \(error)")
    }
    let expanded = try ConfigVariables.expand(
      root ?? Node(""), path: "", environment: environment, sourceName: context.sourceName, written: &written)
    return ConfigNode(node: expanded, path: "", context: context)
  }

  private static func syntaxError(_ error: YamlError, yaml: String, sourceName: String) -> ConfigurationError {
    func located(_ mark: (line: Int, column: Int)?, _ message: String) -> ConfigurationError {
      ConfigurationError(.syntax, file: sourceName, line: mark?.line, column: mark?.column, message: message)
    }
    func withContext(_ problem: String, _ context: YamlError.Context?) -> String {
      guard let context else { return "invalid YAML: \(problem)" }
      return "invalid YAML: \(problem) (\(context.text) at line \(context.mark.line), column \(context.mark.column))"
    }
    switch error {
    case .scanner(let context, let problem, let mark, _),
      .parser(let context, let problem, let mark, _),
      .composer(let context, let problem, let mark, _):
      return located((mark.line, mark.column), withContext(problem, context))
    case .reader(let problem, let offset, _, _):
      return located(offset.map { Self.mark(atCharacterOffset: $0, in: yaml) }, "invalid YAML: \(problem)")
    case .duplicatedKeysInMapping(let duplicates, let context):
      let keys = duplicates.map { "\"\($0)\"" }.joined(separator: ", ")
      let message = "duplicate key \(keys) in one mapping; each key may appear once"
      return located((context.mark.line, context.mark.column), message)
    default:
      return located(nil, "invalid YAML: \(error)")
    }
  }

  private static func mark(atCharacterOffset offset: Int, in text: String) -> (line: Int, column: Int) {
    var line = 1
    var column = 1
    for character in text.prefix(offset) {
      if character == "\n" {
        line += 1
        column = 1
      } else {
        column += 1
      }
    }
    return (line, column)
  }
}
