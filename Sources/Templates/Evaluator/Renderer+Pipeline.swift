/// Pipelines, commands, operands, fields and function calls.
extension Renderer {
  mutating func evaluate(_ pipeline: Pipeline, dot: TemplateValue) throws(TemplateError) -> TemplateValue {
    var value: TemplateValue?
    for command in pipeline.commands {
      value = try evaluate(command, dot: dot, final: value)
    }
    let result = value ?? .null
    for slot in pipeline.variables { frames[frameBase + slot] = result }
    return result
  }

  /// One command; `final` is the previous stage's value, passed as the last argument.
  private mutating func evaluate(_ command: Command, dot: TemplateValue, final: TemplateValue?)
    throws(TemplateError) -> TemplateValue
  {
    let arguments = command.arguments
    let rest = arguments[1...]
    switch arguments[0] {
    case .field(let names, let offset):
      return try fieldChain(names, of: dot, dot: dot, arguments: rest, final: final, at: offset)
    case .chain(let base, let names, let offset):
      if case .nilValue = base { throw fail(.execution, "indirection through explicit nil", at: offset) }
      let receiver = try argument(base, dot: dot)
      return try fieldChain(names, of: receiver, dot: dot, arguments: rest, final: final, at: offset)
    case .variable(let slot, _, let names, let offset):
      let value = frames[frameBase + slot]
      if names.isEmpty {
        try notAFunction(arguments, final: final)
        return value
      }
      return try fieldChain(names, of: value, dot: dot, arguments: rest, final: final, at: offset)
    case .function(let function, let offset):
      return try call(function, arguments: rest, dot: dot, final: final, at: offset)
    case .pipeline(let pipeline):
      try notAFunction(arguments, final: final)
      return try evaluate(pipeline, dot: dot)
    case .dot:
      try notAFunction(arguments, final: final)
      return dot
    case .nilValue(let offset):
      throw fail(.execution, "nil is not a command", at: offset)
    case .literal(let value, _):
      try notAFunction(arguments, final: final)
      return value
    }
  }

  private func notAFunction(_ arguments: [Expression], final: TemplateValue?) throws(TemplateError) {
    if arguments.count > 1 || final != nil {
      throw fail(
        .execution, "can't give argument to non-function \(arguments[0].description)", at: arguments[0].offset)
    }
  }

  /// An operand in argument position: functions and methods are called with no arguments.
  mutating func argument(_ expression: Expression, dot: TemplateValue) throws(TemplateError) -> TemplateValue {
    switch expression {
    case .dot: return dot
    case .nilValue: return .null
    case .literal(let value, _): return value
    case .field(let names, let offset):
      return try fieldChain(names, of: dot, dot: dot, arguments: [], final: nil, at: offset)
    case .variable(let slot, _, let names, let offset):
      let value = frames[frameBase + slot]
      if names.isEmpty { return value }
      return try fieldChain(names, of: value, dot: dot, arguments: [], final: nil, at: offset)
    case .function(let function, let offset):
      return try call(function, arguments: [], dot: dot, final: nil, at: offset)
    case .chain(let base, let names, let offset):
      let receiver = try argument(base, dot: dot)
      return try fieldChain(names, of: receiver, dot: dot, arguments: [], final: nil, at: offset)
    case .pipeline(let pipeline):
      return try evaluate(pipeline, dot: dot)
    }
  }

  // MARK: - Fields

  private mutating func fieldChain(
    _ names: [String], of receiver: TemplateValue, dot: TemplateValue,
    arguments: ArraySlice<Expression>, final: TemplateValue?, at offset: Int32
  ) throws(TemplateError) -> TemplateValue {
    var value = receiver
    let last = names.count - 1
    for i in 0..<last {
      value = try field(names[i], of: value, dot: dot, arguments: [], final: nil, at: offset)
    }
    return try field(names[last], of: value, dot: dot, arguments: arguments, final: final, at: offset)
  }

  private mutating func field(
    _ name: String, of receiver: TemplateValue, dot: TemplateValue,
    arguments: ArraySlice<Expression>, final: TemplateValue?, at offset: Int32
  ) throws(TemplateError) -> TemplateValue {
    let hasArguments = !arguments.isEmpty || final != nil
    switch receiver {
    case .map(let map):
      if hasArguments {
        throw fail(.execution, "\(name) is not a method but has arguments", at: offset)
      }
      if let value = map[ExactString(name)] { return value }
      if missingKeyIsError {
        throw fail(.missingField, "map has no entry for key \"\(name)\"", at: offset, key: name)
      }
      return .null
    case .kvPair(let pair) where name == "Key" || name == "Value":
      if hasArguments {
        throw fail(.execution, "\(name) has arguments but cannot be invoked as function", at: offset)
      }
      return name == "Key" ? .string(pair.key) : .bytes(pair.value)
    case .time(let time):
      var values: [TemplateValue] = []
      for expression in arguments { values.append(try argument(expression, dot: dot)) }
      if let final { values.append(final) }
      do throws(FunctionFailure) {
        return try time.callMethod(name, values)
      } catch {
        throw convert(error, function: name, at: offset)
      }
    case .null:
      if missingKeyIsError {
        throw fail(.missingField, "nil data; no entry for key \"\(name)\"", at: offset, key: name)
      }
      return .null
    default:
      throw fail(.execution, "can't evaluate field \(name) in type \(receiver.goTypeName)", at: offset)
    }
  }

  // MARK: - Functions

  private mutating func call(
    _ function: Builtin, arguments: ArraySlice<Expression>, dot: TemplateValue,
    final: TemplateValue?, at offset: Int32
  ) throws(TemplateError) -> TemplateValue {
    let count = arguments.count + (final == nil ? 0 : 1)
    do throws(FunctionFailure) {
      try function.checkArity(count)
    } catch {
      throw convert(error, function: function.rawValue, at: offset)
    }
    if function == .and || function == .or {
      // Short-circuit: stop at the first value that decides, and return it.
      var value = TemplateValue.null
      for expression in arguments {
        value = try argument(expression, dot: dot)
        if value.isTrue == (function == .or) { return value }
      }
      return final ?? value
    }
    var values: [TemplateValue] = []
    values.reserveCapacity(count)
    for expression in arguments { values.append(try argument(expression, dot: dot)) }
    if let final { values.append(final) }
    let result: TemplateValue
    do throws(FunctionFailure) {
      result = try functions.call(function, values)
    } catch {
      throw convert(error, function: function.rawValue, at: offset)
    }
    // Functions that can grow a string check before they build it; this catches the rest
    // (escaping, encoding) before the value spreads further.
    let size: Int
    switch result {
    case .string(let s): size = s.utf8.count
    case .bytes(let b): size = b.count
    default: size = 0
    }
    if size > maxOutput {
      throw fail(
        .limitExceeded, "error calling \(function.rawValue): result exceeds the limit of \(maxOutput) bytes",
        at: offset)
    }
    return result
  }

  func convert(_ failure: FunctionFailure, function: String, at offset: Int32) -> TemplateError {
    let message = failure.kind == .call ? "error calling \(function): \(failure.message)" : failure.message
    return fail(failure.code, message, at: offset, key: failure.key)
  }
}
