/// A configuration problem, with where it was found and what was expected.
///
/// Its description has the compiler-like form `FILE:LINE:COLUMN: FIELD: MESSAGE`, for example
/// `etcsync.yaml:14:12: mappings[1].mode: expected an octal file mode such as "0644", got
/// "rw-r--r--"`. Parts that are unknown are left out: a bad `ETCSYNC_LOG_LEVEL` has no file or
/// line, and its `field` names the variable. No description ever contains a password.
public struct ConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
  /// What kind of problem this is, for programs that react to some kinds differently.
  public struct Code: Sendable, Hashable, CustomStringConvertible {
    private enum Wrapped: String, Sendable, Hashable {
      case syntax, unknownKey, missingKey, invalidValue, conflict, fileAccess
    }
    private let wrapped: Wrapped
    private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

    /// The text is not valid YAML.
    public static let syntax = Code(.syntax)
    /// A key that etcsync does not know (often a typo).
    public static let unknownKey = Code(.unknownKey)
    /// A required key is absent.
    public static let missingKey = Code(.missingKey)
    /// A value has the wrong type or is out of range.
    public static let invalidValue = Code(.invalidValue)
    /// Settings that contradict each other: two mappings with one name, overlapping
    /// destinations, a key that does not apply to the mapping's kind.
    public static let conflict = Code(.conflict)
    /// A file the configuration names cannot be read (the configuration file itself, a
    /// template, a password file, a TLS file), or a command cannot be found.
    public static let fileAccess = Code(.fileAccess)

    public var description: String { self.wrapped.rawValue }
  }

  /// The kind of problem.
  public var code: Code
  /// The configuration file as it was named (or `sourceName`), or a file the configuration
  /// refers to; `nil` for problems in environment variables and command-line flags.
  public var file: String?
  /// Line in `file`, starting at 1.
  public var line: Int?
  /// Column in `file`, starting at 1 (counted in Unicode scalars, as libyaml does).
  public var column: Int?
  /// The field path such as `mappings[1].wait.min`, or the environment variable or flag
  /// (`ETCSYNC_ENDPOINTS`, `--log-level`) that carried the bad value.
  public var field: String?
  /// What is wrong and what was expected.
  public var message: String

  /// Creates an error; `line` and `column` are only meaningful together with `file`.
  public init(
    _ code: Code,
    file: String? = nil,
    line: Int? = nil,
    column: Int? = nil,
    field: String? = nil,
    message: String
  ) {
    self.code = code
    self.file = file
    self.line = line
    self.column = column
    self.field = field
    self.message = message
  }

  /// `FILE:LINE:COLUMN: FIELD: MESSAGE`, leaving out what is unknown.
  public var description: String {
    var location = ""
    if let file = self.file {
      location = file
      if let line = self.line {
        location += ":\(line)"
        if let column = self.column { location += ":\(column)" }
      }
    }
    var parts: [String] = []
    if !location.isEmpty { parts.append(location) }
    if let field = self.field, !field.isEmpty { parts.append(field) }
    parts.append(self.message)
    return parts.joined(separator: ": ")
  }
}
