/// Executes parsed trees against a data source, writing bytes to `out`.
///
/// One renderer serves one render call; the trees it walks are shared and immutable.
/// Variables live in `frames`, one block of slots per active template call.
struct Renderer {
  enum Flow { case normal, breakLoop, continueLoop }

  var out: [UInt8]
  var frames: [TemplateValue] = []
  var frameBase = 0
  /// Active `{{template}}` calls.
  var depth = 0
  /// Active control-structure bodies and template calls, bounded to protect the stack.
  var nesting = 0
  static let maxNesting = 1000
  var tree: Tree
  let set: TemplateSet
  let functions: FunctionContext
  let missingKeyIsError: Bool
  let maxDepth: Int
  /// ``RenderOptions/maxOutputSize``: the bytes this render may add to `out`.
  let maxOutput: Int
  /// `out.count` when the render started (a caller's buffer may hold earlier output).
  var outputBase = 0
  /// ``RenderOptions/maxIterations``, and the `range` iterations run so far.
  let maxIterations: Int
  var iterations = 0

  init(tree: Tree, set: TemplateSet, out: [UInt8], functions: FunctionContext, options: RenderOptions) {
    self.tree = tree
    self.set = set
    self.out = out
    self.functions = functions
    self.missingKeyIsError = options.missingKey == .error
    self.maxDepth = options.maxTemplateDepth
    self.maxOutput = max(0, options.maxOutputSize)
    self.maxIterations = max(0, options.maxIterations)
  }

  /// Runs the tree with `dot` as both `.` and `$`.
  mutating func run(dot: TemplateValue) throws(TemplateError) {
    outputBase = out.count
    frames = Array(repeating: .null, count: tree.slotCount)
    frames[0] = dot
    _ = try walk(tree.root, dot: dot)
  }

  func fail(_ code: TemplateError.Code, _ message: String, at offset: Int32, key: String? = nil)
    -> TemplateError
  {
    tree.source.error(code, message, at: Int(offset), key: key)
  }

  // MARK: - Nodes

  mutating func walk(_ nodes: [Node], dot: TemplateValue) throws(TemplateError) -> Flow {
    for node in nodes {
      switch node {
      case .text(let bytes):
        out.append(contentsOf: bytes)
        try checkOutput(at: 0)
      case .action(let pipeline):
        let value = try evaluate(pipeline, dot: dot)
        if pipeline.variables.isEmpty {
          GoFormat.appendValue(value, to: &out, limit: outputLimit)
          try checkOutput(at: pipeline.offset)
        }
      case .conditional(let conditional):
        let value = try evaluate(conditional.pipeline, dot: dot)
        try enter(at: conditional.pipeline.offset)
        defer { nesting -= 1 }
        let flow: Flow
        if value.isTrue {
          flow = try walk(conditional.body, dot: conditional.isWith ? value : dot)
        } else {
          flow = try walk(conditional.elseBody, dot: dot)
        }
        if flow != .normal { return flow }
      case .range(let loop):
        try walkRange(loop, dot: dot)
      case .templateCall(let call):
        try walkTemplate(call, dot: dot)
      case .breakLoop:
        return .breakLoop
      case .continueLoop:
        return .continueLoop
      }
    }
    return .normal
  }

  /// The `out.count` past which the output is too large (saturating, never trapping).
  var outputLimit: Int {
    let (limit, overflow) = outputBase.addingReportingOverflow(maxOutput)
    return overflow ? Int.max : limit
  }

  /// Fails once the output has grown past ``RenderOptions/maxOutputSize``.
  private func checkOutput(at offset: Int32) throws(TemplateError) {
    if out.count > outputLimit {
      throw fail(.limitExceeded, "output exceeds the limit of \(maxOutput) bytes", at: offset)
    }
  }

  /// Counts one more `range` iteration, failing past ``RenderOptions/maxIterations``.
  private mutating func iterate(at offset: Int32) throws(TemplateError) {
    iterations += 1
    if iterations > maxIterations {
      throw fail(.limitExceeded, "exceeded the limit of \(maxIterations) range iterations", at: offset)
    }
  }

  /// Counts one more level of nesting, failing past ``maxNesting``.
  private mutating func enter(at offset: Int32) throws(TemplateError) {
    nesting += 1
    if nesting > Renderer.maxNesting {
      throw fail(.limitExceeded, "exceeded maximum nesting depth (\(Renderer.maxNesting))", at: offset)
    }
  }

  private mutating func walkRange(_ loop: RangeLoop, dot: TemplateValue) throws(TemplateError) {
    let value = try evaluate(loop.pipeline, dot: dot)
    try enter(at: loop.pipeline.offset)
    defer { nesting -= 1 }
    switch value {
    case .list(let items) where !items.isEmpty:
      for (index, item) in items.enumerated() {
        try iterate(at: loop.pipeline.offset)
        if let slot = loop.elementSlot { frames[frameBase + slot] = item }
        if let slot = loop.indexSlot { frames[frameBase + slot] = .int(index) }
        if try walk(loop.body, dot: item) == .breakLoop { break }
      }
      return
    case .map(let map) where !map.isEmpty:
      for key in map.keys.sorted() {
        try iterate(at: loop.pipeline.offset)
        let item = map[key] ?? .null
        if let slot = loop.elementSlot { frames[frameBase + slot] = item }
        if let slot = loop.indexSlot { frames[frameBase + slot] = .string(key.string) }
        if try walk(loop.body, dot: item) == .breakLoop { break }
      }
      return
    case .int(let count) where count > 0:
      if loop.indexSlot != nil {
        throw fail(.execution, "can't use \(count) to iterate over more than one variable", at: loop.pipeline.offset)
      }
      for index in 0..<count {
        try iterate(at: loop.pipeline.offset)
        if let slot = loop.elementSlot { frames[frameBase + slot] = .int(index) }
        if try walk(loop.body, dot: .int(index)) == .breakLoop { break }
      }
      return
    case .list, .map, .int, .null:
      break
    default:
      throw fail(.execution, "range can't iterate over \(GoFormat.sprint([value]))", at: loop.pipeline.offset)
    }
    _ = try walk(loop.elseBody, dot: dot)
  }

  private mutating func walkTemplate(_ call: TemplateCall, dot: TemplateValue) throws(TemplateError) {
    guard let target = set.trees[call.name] else {
      throw fail(.execution, "no such template \"\(call.name)\"", at: call.offset)
    }
    guard depth < maxDepth else {
      throw fail(.limitExceeded, "exceeded maximum template depth (\(maxDepth))", at: call.offset)
    }
    let newDot: TemplateValue
    if let pipeline = call.pipeline {
      newDot = try evaluate(pipeline, dot: dot)
    } else {
      newDot = .null
    }
    try enter(at: call.offset)
    let savedBase = frameBase
    let savedTree = tree
    frameBase = frames.count
    frames.append(contentsOf: repeatElement(.null, count: target.slotCount))
    frames[frameBase] = newDot
    tree = target
    depth += 1
    defer {
      frames.removeLast(frames.count - frameBase)
      frameBase = savedBase
      tree = savedTree
      depth -= 1
      nesting -= 1
    }
    _ = try walk(target.root, dot: newDot)
  }
}
