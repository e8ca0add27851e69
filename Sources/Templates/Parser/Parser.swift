/// What parsing one file yields: its top-level tree, the trees it defines, and the names
/// of the templates it calls (so a loader can look for them as files).
struct ParsedFile {
  var trees: [Tree]
  var calledTemplates: Set<String>
}

/// A recursive-descent parser over the lexer's tokens, following Go's text/template
/// grammar. Variables are resolved to frame slots while parsing.
struct Parser {
  /// How deep control structures and parentheses may nest.
  static let maxNesting = 200

  let source: SourceText
  let tokens: [Token]
  var index = 0
  var definitions: [Tree] = []
  var calledTemplates: Set<String> = []
  /// Per-tree state, saved and restored around `define` and `block` bodies.
  var scope = Scope()
  var rangeDepth = 0
  var nesting = 0

  /// Parses a whole file into its trees.
  static func parse(_ source: SourceText, delimiters: TemplateDelimiters = .standard) throws(TemplateError) -> ParsedFile {
    // Nodes keep offsets as Int32; a larger text would trap converting them.
    guard source.bytes.count < Int(Int32.max) else {
      throw TemplateError(code: .limitExceeded, message: "template \(source.name) is larger than \(Int32.max) bytes")
    }
    var parser = Parser(source: source, tokens: try Lexer.tokenize(source, delimiters: delimiters))
    let root = try parser.parseTopLevel()
    let main = Tree(
      name: source.name, source: source, root: root, slotCount: parser.scope.slotCount,
      isEmpty: Parser.isBlank(root))
    return ParsedFile(trees: [main] + parser.definitions, calledTemplates: parser.calledTemplates)
  }

  // MARK: - Token access

  var peek: Token { tokens[min(index, tokens.count - 1)] }

  /// The next token; past the end it keeps returning EOF (and still advances, so that
  /// stepping back with `index -= 1` is always right).
  mutating func next() -> Token {
    let token = peek
    index += 1
    return token
  }

  mutating func peekNonSpace() -> Token {
    while index < tokens.count, tokens[index].kind == .space { index += 1 }
    return peek
  }

  mutating func nextNonSpace() -> Token {
    _ = peekNonSpace()
    return next()
  }

  func text(_ token: Token) -> String {
    String(decoding: source.bytes[token.start..<token.end], as: UTF8.self)
  }

  func fail(_ message: String, at offset: Int) -> TemplateError {
    source.error(.syntax, message, at: offset)
  }

  func describe(_ token: Token) -> String {
    switch token.kind {
    case .eof: return "EOF"
    case .rightDelim: return "\"}}\""
    case .leftDelim: return "\"{{\""
    case .text: return "text"
    case .space: return "space"
    default: return "<\(text(token))>"
    }
  }

  mutating func expect(_ kind: Token.Kind, in context: String) throws(TemplateError) -> Token {
    let token = nextNonSpace()
    guard token.kind == kind else {
      throw fail("unexpected \(describe(token)) in \(context)", at: token.start)
    }
    return token
  }

  mutating func enterNesting(at offset: Int) throws(TemplateError) {
    nesting += 1
    if nesting > Parser.maxNesting {
      throw source.error(.limitExceeded, "nesting deeper than \(Parser.maxNesting) levels", at: offset)
    }
  }

  // MARK: - Lists of nodes

  /// What ends a list of nodes.
  enum ListEnd {
    case end(offset: Int)
    case elseMarker(offset: Int)
    case eof
  }

  private mutating func parseTopLevel() throws(TemplateError) -> [Node] {
    var nodes: [Node] = []
    while peek.kind != .eof {
      if peek.kind == .leftDelim {
        let saved = index
        _ = next()
        if peekNonSpace().kind == .keyword(.define) {
          let defineToken = next()
          try parseDefine(at: defineToken.start)
          continue
        }
        index = saved
      }
      switch try parseItem() {
      case .node(let node): nodes.append(node)
      case .end(let offset): throw fail("unexpected {{end}}", at: offset)
      case .elseMarker(let offset): throw fail("unexpected {{else}}", at: offset)
      }
    }
    return nodes
  }

  /// Parses nodes up to `{{end}}`, `{{else}}` or EOF.
  mutating func parseList() throws(TemplateError) -> ([Node], ListEnd) {
    var nodes: [Node] = []
    while peek.kind != .eof {
      switch try parseItem() {
      case .node(let node): nodes.append(node)
      case .end(let offset): return (nodes, .end(offset: offset))
      case .elseMarker(let offset): return (nodes, .elseMarker(offset: offset))
      }
    }
    return (nodes, .eof)
  }

  enum Item {
    case node(Node)
    case end(offset: Int)
    case elseMarker(offset: Int)
  }

  private mutating func parseItem() throws(TemplateError) -> Item {
    let token = next()
    switch token.kind {
    case .text:
      return .node(.text(Array(source.bytes[token.start..<token.end])))
    case .leftDelim:
      return try parseAction()
    default:
      throw fail("unexpected \(describe(token)) in input", at: token.start)
    }
  }

  private mutating func parseAction() throws(TemplateError) -> Item {
    let token = peekNonSpace()
    guard case .keyword(let keyword) = token.kind else {
      let pipeline = try parsePipeline(context: "command", end: .rightDelim)
      return .node(.action(pipeline))
    }
    _ = next()
    switch keyword {
    case .end:
      _ = try expect(.rightDelim, in: "end")
      return .end(offset: token.start)
    case .else:
      let following = peekNonSpace()
      if following.kind == .keyword(.if) || following.kind == .keyword(.with) {
        return .elseMarker(offset: token.start)
      }
      _ = try expect(.rightDelim, in: "else")
      return .elseMarker(offset: token.start)
    case .if: return .node(try parseConditional(isWith: false, at: token.start))
    case .with: return .node(try parseConditional(isWith: true, at: token.start))
    case .range: return .node(try parseRange(at: token.start))
    case .template: return .node(try parseTemplateCall(at: token.start))
    case .block: return .node(try parseBlock(at: token.start))
    case .break, .continue:
      guard rangeDepth > 0 else {
        throw fail("{{\(keyword.rawValue)}} outside {{range}}", at: token.start)
      }
      _ = try expect(.rightDelim, in: keyword.rawValue)
      return .node(keyword == .break ? .breakLoop : .continueLoop)
    case .define:
      throw fail("{{define}} is only allowed at the top level", at: token.start)
    case .nil:
      index -= 1
      let pipeline = try parsePipeline(context: "command", end: .rightDelim)
      return .node(.action(pipeline))
    }
  }

  static func isBlank(_ nodes: [Node]) -> Bool {
    nodes.allSatisfy { node in
      if case .text(let bytes) = node { return bytes.allSatisfy(isSpace) }
      return false
    }
  }
}
