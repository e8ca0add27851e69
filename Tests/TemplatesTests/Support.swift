import Templates
import Testing

/// Renders `text` as a template named `name` with string values; fails the test on error.
func render(
  _ text: String, _ values: [String: String] = [:], dot: TemplateValue = .null,
  options: RenderOptions = RenderOptions(), name: String = "test.tmpl"
) throws -> String {
  let template = try Template(name: name, text: text)
  return try template.renderString(data: DictionaryDataSource(strings: values), dot: dot, options: options)
}

/// The error a render throws (parse or execution), or nil if it succeeds.
func renderError(
  _ text: String, _ values: [String: String] = [:], dot: TemplateValue = .null,
  options: RenderOptions = RenderOptions(), name: String = "test.tmpl"
) -> TemplateError? {
  do {
    _ = try render(text, values, dot: dot, options: options, name: name)
    return nil
  } catch let error as TemplateError {
    return error
  } catch {
    Issue.record("unexpected error type: \(error)")
    return nil
  }
}

/// Options with the `<no value>` policy (confd's behaviour) instead of missing-key errors.
let lenient = RenderOptions(missingKey: .noValue)
