/// A failure inside a function or method, before the evaluator adds the template location.
struct FunctionFailure: Error {
  enum Kind {
    /// The function ran and failed; shown as `error calling NAME: message`.
    case call
    /// Wrong number or type of arguments; shown as the message alone.
    case argument
    /// A failure shown as the message alone (bad comparison, no such field).
    case execution
  }

  var kind: Kind
  var message: String
  var code: TemplateError.Code
  var key: String?

  static func call(_ message: String, code: TemplateError.Code = .function, key: String? = nil)
    -> FunctionFailure
  {
    FunctionFailure(kind: .call, message: message, code: code, key: key)
  }

  static func argument(_ message: String) -> FunctionFailure {
    FunctionFailure(kind: .argument, message: message, code: .function)
  }

  static func execution(_ message: String, code: TemplateError.Code = .execution) -> FunctionFailure {
    FunctionFailure(kind: .execution, message: message, code: code)
  }
}
