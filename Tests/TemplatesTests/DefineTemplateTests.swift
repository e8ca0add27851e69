import Templates
import Testing

/// define, template and block.
@Suite struct DefineTemplateTests {
  @Test func defineAndCallWithData() throws {
    // Definitions print nothing where they stand; the call passes dot explicitly.
    let text = "{{define \"item\"}}[{{.}}]{{end}}{{range .}}{{template \"item\" .}}{{end}}"
    #expect(try render(text, dot: ["a", "b"]) == "[a][b]")
  }

  @Test func templateWithoutPipelineGetsNil() throws {
    #expect(try render("{{define \"x\"}}{{.}}{{end}}{{template \"x\"}}", dot: "ignored") == "<no value>")
  }

  @Test func calledTemplateHasItsOwnVariables() throws {
    // Inside the definition `$` is the argument, not the caller's data.
    let text = "{{define \"x\"}}{{$}}{{end}}{{$y := 1}}{{template \"x\" \"arg\"}}"
    #expect(try render(text, dot: "root") == "arg")
  }

  @Test func block() throws {
    #expect(try render("<{{block \"b\" .}}default {{.}}{{end}}>", dot: "d") == "<default d>")
  }

  @Test func defineOverridesBlock() throws {
    let text = "<{{block \"title\" .}}Default{{end}}>{{define \"title\"}}Custom {{.}}{{end}}"
    #expect(try render(text, dot: "x") == "<Custom x>")
  }

  @Test func recursion() throws {
    let text = "{{define \"r\"}}{{if gt . 0}}{{.}}{{template \"r\" (sub . 1)}}{{end}}{{end}}{{template \"r\" 3}}"
    #expect(try render(text) == "321")
  }

  @Test func runawayRecursionIsStopped() {
    let error = renderError("{{define \"r\"}}{{template \"r\"}}{{end}}{{template \"r\"}}")
    #expect(error?.code == .limitExceeded)
    #expect(error?.message == "exceeded maximum template depth (100)")
  }

  @Test func nestingIsBoundedEvenWithAHighTemplateDepth() {
    // Each call nests an if, a range and a template call; the engine stops at its nesting
    // bound with an error instead of exhausting the stack.
    let text = "{{define \"r\"}}{{if true}}{{range 1}}{{template \"r\"}}{{end}}{{end}}{{end}}{{template \"r\"}}"
    let error = renderError(text, options: RenderOptions(maxTemplateDepth: 1_000_000))
    #expect(error?.code == .limitExceeded)
    #expect(error?.message == "exceeded maximum nesting depth (1000)")
  }

  @Test func missingTemplate() throws {
    let template = try Template(name: "t", text: "{{if .}}{{template \"nope\"}}{{end}}")
    #expect(template.unresolvedTemplates == ["nope"])
    // Not reached: no error, as in Go.
    #expect(try template.renderString(data: DictionaryDataSource([:])) == "")
    #expect(throws: TemplateError.self) { try template.renderString(data: DictionaryDataSource([:]), dot: true) }
  }

  @Test func duplicateDefinitionsAreAnError() {
    let error = renderError("{{define \"a\"}}1{{end}}{{define \"a\"}}2{{end}}")
    #expect(error?.code == .syntax)
    #expect(error?.message == "template: multiple definition of template \"a\"")
  }

  @Test func renderOneDefinition() throws {
    let template = try Template(name: "t", text: "main{{define \"part\"}}part {{.}}{{end}}")
    var out: [UInt8] = []
    try template.render(into: &out, templateNamed: "part", data: DictionaryDataSource([:]), dot: 1)
    #expect(String(decoding: out, as: UTF8.self) == "part 1")
    #expect(template.definedTemplates == ["part", "t"])
  }
}
