/// Control structures: if/with (with else-if chains), range, template, block and define.
extension Parser {
  mutating func parseConditional(isWith: Bool, at start: Int) throws(TemplateError) -> Node {
    try enterNesting(at: start)
    defer { nesting -= 1 }
    let keyword = isWith ? "with" : "if"
    let mark = scope.mark
    defer { scope.restore(mark) }
    let pipeline = try parsePipeline(context: keyword, end: .rightDelim)
    let bodyMark = scope.mark
    let (body, end) = try parseList()
    var elseBody: [Node] = []
    switch end {
    case .end:
      break
    case .eof:
      throw fail("unexpected EOF: {{\(keyword)}} is not closed by {{end}}", at: start)
    case .elseMarker:
      // Variables declared in the body are not visible in the else branch.
      scope.restore(bodyMark)
      let following = peekNonSpace()
      if following.kind == .keyword(.if) || following.kind == .keyword(.with) {
        guard following.kind == .keyword(isWith ? .with : .if) else {
          throw fail("{{else \(text(following))}} cannot follow {{\(keyword)}}", at: following.start)
        }
        _ = next()
        elseBody = [try parseConditional(isWith: isWith, at: following.start)]
      } else {
        elseBody = try parseElseBody(opener: keyword, at: start)
      }
    }
    return .conditional(Conditional(isWith: isWith, pipeline: pipeline, body: body, elseBody: elseBody))
  }

  /// Parses an `{{else}}` branch up to its `{{end}}`.
  private mutating func parseElseBody(opener: String, at start: Int) throws(TemplateError) -> [Node] {
    let (nodes, end) = try parseList()
    switch end {
    case .end: return nodes
    case .elseMarker(let offset): throw fail("expected {{end}}; found {{else}}", at: offset)
    case .eof: throw fail("unexpected EOF: {{\(opener)}} is not closed by {{end}}", at: start)
    }
  }

  mutating func parseRange(at start: Int) throws(TemplateError) -> Node {
    try enterNesting(at: start)
    defer { nesting -= 1 }
    let mark = scope.mark
    defer { scope.restore(mark) }
    let pipeline = try parsePipeline(context: "range", end: .rightDelim)
    let bodyMark = scope.mark
    rangeDepth += 1
    let (body, end) = try parseList()
    rangeDepth -= 1
    var elseBody: [Node] = []
    switch end {
    case .end:
      break
    case .eof:
      throw fail("unexpected EOF: {{range}} is not closed by {{end}}", at: start)
    case .elseMarker(let offset):
      if case .keyword = peekNonSpace().kind {
        throw fail("{{else \(text(peek))}} cannot follow {{range}}", at: offset)
      }
      scope.restore(bodyMark)
      elseBody = try parseElseBody(opener: "range", at: start)
    }
    let variables = pipeline.variables
    let loop = RangeLoop(
      pipeline: pipeline,
      elementSlot: variables.last,
      indexSlot: variables.count == 2 ? variables[0] : nil,
      body: body,
      elseBody: elseBody)
    return .range(loop)
  }

  mutating func parseTemplateCall(at start: Int) throws(TemplateError) -> Node {
    let name = try templateName(context: "template clause")
    calledTemplates.insert(name)
    if peekNonSpace().kind == .rightDelim {
      _ = next()
      return .templateCall(TemplateCall(name: name, pipeline: nil, offset: Int32(start)))
    }
    let pipeline = try parsePipeline(context: "template clause", end: .rightDelim)
    return .templateCall(TemplateCall(name: name, pipeline: pipeline, offset: Int32(start)))
  }

  /// `{{block "name" pipeline}}body{{end}}`: defines `name` and executes it in place.
  mutating func parseBlock(at start: Int) throws(TemplateError) -> Node {
    let name = try templateName(context: "block clause")
    let pipeline = try parsePipeline(context: "block clause", end: .rightDelim)
    try parseDefinitionBody(name: name, opener: "block", at: start)
    definitions[definitions.count - 1].isBlockDefault = true
    return .templateCall(TemplateCall(name: name, pipeline: pipeline, offset: Int32(start)))
  }

  /// `{{define "name"}}body{{end}}` at the top level.
  mutating func parseDefine(at start: Int) throws(TemplateError) {
    let name = try templateName(context: "define clause")
    _ = try expect(.rightDelim, in: "define clause")
    try parseDefinitionBody(name: name, opener: "define", at: start)
  }

  /// Parses a body with a fresh variable scope (only `$`) and records it as a tree.
  private mutating func parseDefinitionBody(name: String, opener: String, at start: Int)
    throws(TemplateError)
  {
    let savedScope = scope
    let savedRangeDepth = rangeDepth
    scope = Scope()
    rangeDepth = 0
    defer {
      scope = savedScope
      rangeDepth = savedRangeDepth
    }
    let body = try parseElseBody(opener: opener, at: start)
    definitions.append(
      Tree(name: name, source: source, root: body, slotCount: scope.slotCount, isEmpty: Parser.isBlank(body)))
  }

  private mutating func templateName(context: String) throws(TemplateError) -> String {
    let token = nextNonSpace()
    switch token.kind {
    case .string, .rawString:
      return try unquote(token)
    default:
      throw fail("unexpected \(describe(token)) in \(context)", at: token.start)
    }
  }
}
