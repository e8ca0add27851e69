/// Pipelines, commands and operands.
extension Parser {
  /// Parses `[$x :=] command | command ...` up to and including `end` (`}}` or `)`).
  mutating func parsePipeline(context: String, end: Token.Kind) throws(TemplateError) -> Pipeline {
    let start = peekNonSpace().start
    var declared: [(name: String, offset: Int)] = []
    var isAssign = false
    try parseDeclarations(context: context, into: &declared, isAssign: &isAssign)
    var commands: [Command] = []
    while true {
      let token = nextNonSpace()
      if token.kind == end { break }
      switch token.kind {
      case .bool, .char, .dot, .field, .identifier, .number, .keyword(.nil), .rawString, .string,
        .variable, .leftParen:
        index -= 1
        commands.append(try parseCommand())
      default:
        throw fail("unexpected \(describe(token)) in \(context)", at: token.start)
      }
    }
    try checkPipeline(commands, context: context, at: start)
    // Declared names become visible after the pipeline, so `$x := $x` reads the outer `$x`.
    var slots: [Int] = []
    for (name, offset) in declared {
      if isAssign {
        guard let slot = scope.lookup(name) else {
          throw fail("undefined variable \"\(name)\"", at: offset)
        }
        slots.append(slot)
      } else {
        slots.append(scope.declare(name))
      }
    }
    return Pipeline(offset: Int32(start), variables: slots, commands: commands)
  }

  private mutating func parseDeclarations(
    context: String, into declared: inout [(name: String, offset: Int)], isAssign: inout Bool
  ) throws(TemplateError) {
    while peekNonSpace().kind == .variable {
      let saved = index
      let variable = next()
      let following = peekNonSpace()
      switch following.kind {
      case .declare, .assign:
        _ = next()
        isAssign = following.kind == .assign
        declared.append((text(variable), variable.start))
        return
      case .comma:
        _ = next()
        declared.append((text(variable), variable.start))
        guard context == "range", declared.count < 2 else {
          throw fail("too many declarations in \(context)", at: following.start)
        }
        guard peekNonSpace().kind == .variable else {
          throw fail("range can only initialize variables", at: peek.start)
        }
      default:
        index = saved
        if !declared.isEmpty {
          throw fail("missing := after range variables", at: following.start)
        }
        return
      }
    }
  }

  private func checkPipeline(_ commands: [Command], context: String, at start: Int) throws(TemplateError) {
    guard !commands.isEmpty else {
      throw fail("missing value for \(context)", at: start)
    }
    for (stage, command) in commands.enumerated().dropFirst() {
      switch command.arguments[0] {
      case .dot, .nilValue, .literal:
        throw fail("non executable command in pipeline stage \(stage + 1)", at: Int(command.offset))
      default:
        continue
      }
    }
  }

  private mutating func parseCommand() throws(TemplateError) -> Command {
    let start = peekNonSpace().start
    var arguments: [Expression] = []
    loop: while true {
      _ = peekNonSpace()
      if let operand = try parseOperand() { arguments.append(operand) }
      let token = next()
      switch token.kind {
      case .space:
        continue
      case .rightDelim, .rightParen:
        index -= 1
      case .pipe:
        break
      default:
        throw fail("unexpected \(describe(token)) in operand", at: token.start)
      }
      break loop
    }
    guard !arguments.isEmpty else { throw fail("empty command", at: start) }
    return Command(offset: Int32(start), arguments: arguments)
  }

  /// A term with an optional `.Field.Chain` straight after it.
  private mutating func parseOperand() throws(TemplateError) -> Expression? {
    guard let term = try parseTerm() else { return nil }
    guard peek.kind == .field else { return term }
    var fields: [String] = []
    while peek.kind == .field {
      fields.append(String(text(next()).dropFirst()))
    }
    switch term {
    case .field(let names, let offset):
      return .field(names: names + fields, offset: offset)
    case .variable(let slot, let name, let names, let offset):
      return .variable(slot: slot, name: name, fields: names + fields, offset: offset)
    case .literal, .nilValue, .dot:
      throw fail("unexpected . after term \"\(term.description)\"", at: Int(term.offset))
    default:
      return .chain(term, fields: fields, offset: term.offset)
    }
  }

  private mutating func parseTerm() throws(TemplateError) -> Expression? {
    let token = nextNonSpace()
    let offset = Int32(token.start)
    switch token.kind {
    case .identifier:
      let name = text(token)
      guard let function = Builtin(rawValue: name) else {
        throw fail("function \"\(name)\" not defined", at: token.start)
      }
      return .function(function, offset: offset)
    case .dot:
      return .dot(offset: offset)
    case .keyword(.nil):
      return .nilValue(offset: offset)
    case .variable:
      let name = text(token)
      guard let slot = scope.lookup(name) else {
        throw fail("undefined variable \"\(name)\"", at: token.start)
      }
      return .variable(slot: slot, name: name, fields: [], offset: offset)
    case .field:
      return .field(names: [String(text(token).dropFirst())], offset: offset)
    case .bool:
      return .literal(.bool(text(token) == "true"), offset: offset)
    case .number, .char:
      return .literal(try number(token), offset: offset)
    case .string, .rawString:
      return .literal(.string(try unquote(token)), offset: offset)
    case .leftParen:
      try enterNesting(at: token.start)
      defer { nesting -= 1 }
      return .pipeline(try parsePipeline(context: "parenthesized pipeline", end: .rightParen))
    default:
      index -= 1
      return nil
    }
  }
}
