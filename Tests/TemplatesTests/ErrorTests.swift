import Templates
import Testing

/// Errors name the template, line and column; missing keys fail the render.
@Suite struct ErrorTests {
  @Test func missingKeyInGetv() {
    let error = renderError("line one\n  {{getv \"/db/host\"}}", ["/db/port": "5432"], name: "app.conf.tmpl")
    #expect(error?.code == .missingKey)
    #expect(error?.key == "/db/host")
    #expect(error?.location == SourceLocation(template: "app.conf.tmpl", line: 2, column: 5))
    #expect(error?.description == "app.conf.tmpl:2:5: error calling getv: key does not exist: /db/host")
  }

  @Test func missingKeyInGetNamesTheFullKeyUnderAPrefix() {
    let error = renderError("{{get \"/db/host\"}}", options: RenderOptions(keyPrefix: "/app"))
    #expect(error?.code == .missingKey)
    #expect(error?.key == "/app/db/host")
    #expect(error?.message == "error calling get: key does not exist: /db/host (read as /app/db/host)")
  }

  @Test func missingKeyInAPipelineStage() {
    let error = renderError("{{\"/x\" | getv | toUpper}}")
    #expect(error?.location?.column == 10)
    #expect(error?.key == "/x")
  }

  @Test func missingMapKeyIsAnErrorByDefault() {
    let error = renderError("{{.Foo}}", dot: ["Bar": 1])
    #expect(error?.code == .missingField)
    #expect(error?.message == "map has no entry for key \"Foo\"")
    #expect(error?.location == SourceLocation(template: "test.tmpl", line: 1, column: 3))
    let nested = renderError("{{$d := json \"{\\\"a\\\":{}}\"}}{{$d.a.b}}")
    #expect(nested?.message == "map has no entry for key \"b\"")
    #expect(renderError("{{.Foo}}")?.message == "nil data; no entry for key \"Foo\"")
  }

  @Test func missingMapKeyWithGoDefaultPolicy() throws {
    #expect(try render("{{.Foo}}", dot: ["Bar": 1], options: lenient) == "<no value>")
    #expect(try render("{{.a.b}}", dot: [:], options: lenient) == "<no value>")
    #expect(try render("{{if .Foo}}y{{else}}n{{end}}", dot: [:], options: lenient) == "n")
  }

  @Test func fieldsOfOtherTypes() {
    #expect(renderError("{{.Key}}", dot: "s")?.message == "can't evaluate field Key in type string")
    #expect(renderError("{{(get \"/k\").Nope}}", ["/k": "v"])?.message
      == "can't evaluate field Nope in type memkv.KVPair")
    #expect(renderError("{{.a 1}}", dot: ["a": 1])?.message == "a is not a method but has arguments")
  }

  @Test(arguments: [
    ("abc\n{{ .foo", "unclosed action", 2, 1),
    ("{{if .x}}yes", "unexpected EOF: {{if}} is not closed by {{end}}", 1, 3),
    ("a\n{{range .}}{{else}}", "unexpected EOF: {{range}} is not closed by {{end}}", 2, 3),
    ("x {{end}}", "unexpected {{end}}", 1, 5),
    ("{{else}}", "unexpected {{else}}", 1, 3),
    ("\n\n   {{foo 1}}", "function \"foo\" not defined", 3, 6),
    ("{{$x}}", "undefined variable \"$x\"", 1, 3),
    ("{{.a | 1}}", "non executable command in pipeline stage 2", 1, 8),
    ("{{/* x", "unclosed comment", 1, 1),
    ("{{/* x */ }}", "comment ends before closing delimiter", 1, 1),
    ("{{\"abc}}", "unterminated quoted string", 1, 3),
    ("{{.x-}}", "bad character U+002D '-'", 1, 5),
    ("{{3x}}", "bad number syntax: \"3x\"", 1, 3),
    ("{{#}}", "unrecognized character in action: U+0023 '#'", 1, 3),
    ("{{}}", "missing value for command", 1, 3),
    ("{{(1}}", "unclosed left paren", 1, 5),
    ("{{1)}}", "unexpected right paren", 1, 4),
    ("{{if}}{{end}}", "missing value for if", 1, 5),
    ("{{template .}}", "unexpected <.> in template clause", 1, 12),
    ("{{with 1}}{{else if 2}}{{end}}", "{{else if}} cannot follow {{with}}", 1, 18),
    ("{{range $a, $b, $c := .}}{{end}}", "too many declarations in range", 1, 15),
    ("é{{bad}}", "function \"bad\" not defined", 1, 4),
  ])
  func parseErrors(text: String, message: String, line: Int, column: Int) {
    let error = renderError(text, name: "conf.tmpl")
    #expect(error?.code == .syntax || error?.code == .limitExceeded)
    #expect(error?.message == message)
    #expect(error?.location == SourceLocation(template: "conf.tmpl", line: line, column: column))
  }

  @Test func errorLocationsInsideDefinitions() {
    let text = "{{define \"inner\"}}\n  {{getv \"/missing\"}}{{end}}\n{{template \"inner\"}}"
    let error = renderError(text, name: "outer.tmpl")
    #expect(error?.location == SourceLocation(template: "outer.tmpl", line: 2, column: 5))
  }

  @Test func deepNestingIsRefused() {
    let text = String(repeating: "{{if 1}}", count: 300) + String(repeating: "{{end}}", count: 300)
    #expect(renderError(text)?.code == .limitExceeded)
    let parens = "{{" + String(repeating: "(", count: 300) + "1" + String(repeating: ")", count: 300) + "}}"
    #expect(renderError(parens)?.code == .limitExceeded)
  }
}
