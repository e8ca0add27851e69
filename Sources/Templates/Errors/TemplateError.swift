/// A failure to load, parse or render a template.
///
/// The description names the template, line and column, like a compiler does:
/// `nginx.conf.tmpl:12:18: error calling getv: key does not exist: /db/host`.
public struct TemplateError: Error, Sendable, Hashable, CustomStringConvertible {
  /// What kind of failure this is; compare with the static members.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private let name: String
    private init(_ name: String) { self.name = name }

    /// The template text is malformed: unclosed action, unknown function, bad syntax.
    public static let syntax = Code("syntax")
    /// A key read with `get` or `getv` (without default) is not in the data source.
    public static let missingKey = Code("missingKey")
    /// A field or map key that the template reads is absent (missingkey=error).
    public static let missingField = Code("missingField")
    /// A function failed or got arguments of the wrong type or number.
    public static let function = Code("function")
    /// Any other failure while rendering: bad comparison, range over a non-list, no such template.
    public static let execution = Code("execution")
    /// A template or include tried to read a file outside the templates directory.
    public static let pathEscape = Code("pathEscape")
    /// A template file could not be read.
    public static let io = Code("io")
    /// Nesting or recursion went deeper than allowed.
    public static let limitExceeded = Code("limitExceeded")

    public var description: String { name }
  }

  /// The kind of failure.
  public var code: Code
  /// What went wrong, without the location prefix.
  public var message: String
  /// Where in which template it went wrong, when known.
  public var location: SourceLocation?
  /// The data-source key involved, for ``Code/missingKey`` errors.
  public var key: String?

  /// Creates an error; the engine makes these, tests and callers may too.
  public init(code: Code, message: String, location: SourceLocation? = nil, key: String? = nil) {
    self.code = code
    self.message = message
    self.location = location
    self.key = key
  }

  public var description: String {
    guard let location else { return message }
    return "\(location): \(message)"
  }
}

/// A position in a template's source: template name, 1-based line and 1-based column
/// (columns count Unicode scalars).
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
  /// The template's name (for files, the path relative to the templates directory).
  public var template: String
  /// The 1-based line.
  public var line: Int
  /// The 1-based column, in Unicode scalars.
  public var column: Int

  /// Creates a location.
  public init(template: String, line: Int, column: Int) {
    self.template = template
    self.line = line
    self.column = column
  }

  public var description: String { "\(template):\(line):\(column)" }
}
