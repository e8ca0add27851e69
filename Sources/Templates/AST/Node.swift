/// The parsed form of template text: immutable values, built once by the parser and
/// walked by every render. Positions are byte offsets into the template's source.

/// One element of a template body.
indirect enum Node: Sendable {
  /// Literal text, copied to the output.
  case text([UInt8])
  /// `{{pipeline}}`: prints the value unless the pipeline declares or assigns a variable.
  case action(Pipeline)
  /// `{{if}}` or `{{with}}`, with its else branch (an `else if` chain nests here).
  case conditional(Conditional)
  /// `{{range}}`.
  case range(RangeLoop)
  /// `{{template "name" pipeline}}` (also what `{{block}}` executes).
  case templateCall(TemplateCall)
  /// `{{break}}` inside a range.
  case breakLoop
  /// `{{continue}}` inside a range.
  case continueLoop
}

/// `{{if pipeline}}` / `{{with pipeline}}` with body and else branch.
struct Conditional: Sendable {
  /// `with` sets dot to the pipeline's value in the body; `if` leaves dot alone.
  var isWith: Bool
  var pipeline: Pipeline
  var body: [Node]
  var elseBody: [Node]
}

/// `{{range [$i, $v :=] pipeline}} body {{else}} elseBody {{end}}`.
struct RangeLoop: Sendable {
  var pipeline: Pipeline
  /// Slot of the element variable (`$v`), if declared.
  var elementSlot: Int?
  /// Slot of the index or key variable (`$i` in `$i, $v`), if declared.
  var indexSlot: Int?
  var body: [Node]
  var elseBody: [Node]
}

/// `{{template "name" pipeline}}`.
struct TemplateCall: Sendable {
  var name: String
  var pipeline: Pipeline?
  var offset: Int32
}

/// Commands joined by `|`, with optional variable declarations in front.
///
/// Pipelines and commands are classes so that walking the tree passes references instead of
/// copying (and retaining) their arrays at every step.
final class Pipeline: Sendable {
  let offset: Int32
  /// Variable slots set to the pipeline's value (`$x :=` or `$x =`).
  let variables: [Int]
  let commands: [Command]

  init(offset: Int32, variables: [Int], commands: [Command]) {
    self.offset = offset
    self.variables = variables
    self.commands = commands
  }
}

/// One stage of a pipeline: an operand, or a function or method with arguments.
final class Command: Sendable {
  let offset: Int32
  let arguments: [Expression]

  init(offset: Int32, arguments: [Expression]) {
    self.offset = offset
    self.arguments = arguments
  }
}

/// An operand: something that yields a value.
indirect enum Expression: Sendable {
  /// `.`
  case dot(offset: Int32)
  /// `nil`
  case nilValue(offset: Int32)
  /// A string, number or bool literal.
  case literal(TemplateValue, offset: Int32)
  /// `.A.B` on dot.
  case field(names: [String], offset: Int32)
  /// `$x.A.B`; slot 0 is `$`.
  case variable(slot: Int, name: String, fields: [String], offset: Int32)
  /// A function name.
  case function(Builtin, offset: Int32)
  /// `(pipeline).A.B` or `function.A.B`.
  case chain(Expression, fields: [String], offset: Int32)
  /// `(pipeline)`.
  case pipeline(Pipeline)

  var offset: Int32 {
    switch self {
    case .dot(let o), .nilValue(let o), .literal(_, let o), .field(_, let o),
      .variable(_, _, _, let o), .function(_, let o), .chain(_, _, let o):
      return o
    case .pipeline(let p): return p.offset
    }
  }

  /// How Go's error messages show the operand.
  var description: String {
    switch self {
    case .dot: return "."
    case .nilValue: return "nil"
    case .literal(let v, _):
      if case .string(let s) = v { return "\"\(s)\"" }
      return GoFormat.sprint([v])
    case .field(let names, _): return names.map { "." + $0 }.joined()
    case .variable(_, let name, let fields, _): return name + fields.map { "." + $0 }.joined()
    case .function(let f, _): return f.rawValue
    case .chain(let base, let fields, _): return base.description + fields.map { "." + $0 }.joined()
    case .pipeline: return "(pipeline)"
    }
  }
}

/// One named template: a file's top level, or a `{{define}}`/`{{block}}` body.
struct Tree: Sendable {
  var name: String
  var source: SourceText
  var root: [Node]
  /// Variable slots one execution needs (slot 0 is `$`).
  var slotCount: Int
  /// Whether the body is only whitespace (Go lets such a definition be replaced).
  var isEmpty: Bool
  /// Whether this is a `{{block}}`'s default body, which any `{{define}}` of the name replaces.
  var isBlockDefault = false
}
