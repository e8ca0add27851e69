/// A parsed template, ready to render any number of times, from any thread.
///
/// ```swift
/// let template = try Template(name: "upstreams.tmpl", text: source)
/// let bytes = try template.render(data: snapshot, options: RenderOptions(keyPrefix: "/services/web"))
/// ```
///
/// Files and their `{{template}}` includes are loaded with ``TemplateLoader``.
public struct Template: Sendable {
  /// The name errors use for the main file (for files, the path relative to the templates
  /// directory).
  public let name: String
  let set: TemplateSet
  let calledTemplates: Set<String>

  /// Parses template text. `{{template "x"}}` can call templates defined in the text;
  /// to include other files, load the template with a ``TemplateLoader``. `delimiters`
  /// replaces `{{` and `}}` (Go's `Delims`).
  public init(name: String, text: String, delimiters: TemplateDelimiters = .standard) throws(TemplateError) {
    let file = try Parser.parse(SourceText(name: name, bytes: Array(text.utf8)), delimiters: delimiters)
    var set = TemplateSet()
    try set.add(file)
    self.init(name: name, set: set, calledTemplates: file.calledTemplates)
  }

  init(name: String, set: TemplateSet, calledTemplates: Set<String>) {
    self.name = name
    self.set = set
    self.calledTemplates = calledTemplates
  }

  /// The names of every template this one can execute, sorted.
  public var definedTemplates: [String] { ByteOrder.sorted(Array(set.trees.keys)) }

  /// Names passed to `{{template}}` that are neither defined nor a file; rendering fails
  /// only if such a call is reached, as in Go, so `check` commands may report these.
  public var unresolvedTemplates: [String] {
    ByteOrder.sorted(Array(set.unresolved(calledTemplates)))
  }

  /// Renders the template and returns the output bytes.
  ///
  /// - Parameters:
  ///   - data: the snapshot that `get`, `getv`, `gets`, `ls` and the rest read.
  ///   - dot: the value of `.` and `$` at the start (confd passes nil).
  ///   - options: key prefix, missing-key policy, environment, clock and resolver.
  /// - Throws: ``TemplateError`` naming the template, line and column; nothing is
  ///   returned then, so the caller keeps the previous file.
  public func render(
    data: some TemplateDataSource, dot: TemplateValue = .null, options: RenderOptions = RenderOptions()
  ) throws(TemplateError) -> [UInt8] {
    var out: [UInt8] = []
    try render(into: &out, data: data, dot: dot, options: options)
    return out
  }

  /// Renders the template, appending to `buffer` (reuse one buffer to avoid reallocation).
  /// On error `buffer` may hold partial output.
  public func render(
    into buffer: inout [UInt8], data: some TemplateDataSource, dot: TemplateValue = .null,
    options: RenderOptions = RenderOptions()
  ) throws(TemplateError) {
    try render(into: &buffer, templateNamed: name, data: data, dot: dot, options: options)
  }

  /// Renders one of the templates this one defines (`{{define "name"}}`), appending to `buffer`.
  public func render(
    into buffer: inout [UInt8], templateNamed templateName: String, data: some TemplateDataSource,
    dot: TemplateValue = .null, options: RenderOptions = RenderOptions()
  ) throws(TemplateError) {
    guard let tree = set.trees[templateName] else {
      throw TemplateError(code: .execution, message: "no such template \"\(templateName)\"")
    }
    let functions = FunctionContext(data: data, options: options)
    var renderer = Renderer(tree: tree, set: set, out: [], functions: functions, options: options)
    swap(&renderer.out, &buffer)
    defer { swap(&renderer.out, &buffer) }
    try renderer.run(dot: dot)
  }

  /// Renders and decodes the output as UTF-8 text (convenient in tests).
  public func renderString(
    data: some TemplateDataSource, dot: TemplateValue = .null, options: RenderOptions = RenderOptions()
  ) throws(TemplateError) -> String {
    String(decoding: try render(data: data, dot: dot, options: options), as: UTF8.self)
  }
}

/// The strings that open and close an action, `{{` and `}}` unless a template renders Go or
/// Helm templates itself and needs others (`[[` and `]]`). Trim markers and comments work
/// with any: `[[- /* note */ -]]`.
public struct TemplateDelimiters: Sendable, Hashable {
  /// Opens an action.
  public let left: String
  /// Closes an action.
  public let right: String

  /// `{{` and `}}`.
  public static let standard = TemplateDelimiters(uncheckedLeft: "{{", right: "}}")

  /// Custom delimiters; both must be non-empty (Go falls back to the default for an empty one,
  /// which would surprise here).
  public init(left: String, right: String) throws(TemplateError) {
    guard !left.isEmpty, !right.isEmpty else {
      throw TemplateError(code: .syntax, message: "template delimiters must not be empty")
    }
    self.init(uncheckedLeft: left, right: right)
  }

  private init(uncheckedLeft left: String, right: String) {
    self.left = left
    self.right = right
  }
}
