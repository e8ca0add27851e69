import Templates
import Testing

/// if / else if / else, with, range (lists, maps, ints, else, break, continue) and
/// variable scope, with expected outputs worked out from Go's text/template rules.
@Suite struct ControlFlowTests {
  static let chain = "{{if eq .n 1}}one{{else if eq .n 2}}two{{else if eq .n 3}}three{{else}}many{{end}}"

  @Test(arguments: [(1, "one"), (2, "two"), (3, "three"), (4, "many")])
  func elseIfChain(n: Int, expected: String) throws {
    #expect(try render(Self.chain, dot: ["n": .int(n)]) == expected)
  }

  @Test(arguments: [
    // Truth: false, 0, "", nil and empty collections are false; everything else true.
    ("{{if 0}}T{{else}}F{{end}}", "F"),
    ("{{if 1}}T{{else}}F{{end}}", "T"),
    ("{{if \"\"}}T{{else}}F{{end}}", "F"),
    ("{{if \"0\"}}T{{else}}F{{end}}", "T"),
    ("{{if 0.0}}T{{else}}F{{end}}", "F"),
    ("{{if not 1}}T{{else}}F{{end}}", "F"),
    ("{{if split \"\" \",\"}}T{{else}}F{{end}}", "T"),
    ("{{if .}}T{{else}}F{{end}}", "F"),
  ])
  func truth(template: String, expected: String) throws {
    #expect(try render(template) == expected)
  }

  @Test func nilIsNotACommand() {
    // Go rejects a bare nil as a pipeline: `{{if nil}}` is an execution error.
    #expect(renderError("{{if nil}}T{{end}}")?.message == "nil is not a command")
  }

  @Test func withSetsDotAndHasElse() throws {
    let text = "{{with .a}}a={{.}}{{else with .b}}b={{.}}{{else}}none{{end}}"
    #expect(try render(text, dot: ["a": "x", "b": "y"]) == "a=x")
    #expect(try render(text, dot: ["a": "", "b": "y"]) == "b=y")
    #expect(try render(text, dot: ["a": "", "b": 0]) == "none")
  }

  @Test func ifDeclarationIsVisibleInBothBranches() throws {
    let text = "{{if $x := .a}}[{{$x}}]{{else}}({{$x}}){{end}}"
    #expect(try render(text, dot: ["a": "v"]) == "[v]")
    #expect(try render(text, dot: ["a": ""]) == "()")
  }

  @Test func rangeOverListWithIndex() throws {
    #expect(try render("{{range $i, $v := .}}{{$i}}={{$v}},{{end}}", dot: ["a", "b"]) == "0=a,1=b,")
    #expect(try render("{{range $v := .}}<{{$v}}>{{end}}", dot: ["a", "b"]) == "<a><b>")
    #expect(try render("{{range .}}<{{.}}>{{end}}", dot: ["a", "b"]) == "<a><b>")
  }

  @Test func rangeOverMapVisitsKeysInOrder() throws {
    let dot: TemplateValue = ["b": 2, "a": 1, "c": 3, "B": 0]
    // Byte order: "B" (0x42) sorts before "a" (0x61).
    #expect(try render("{{range $k, $v := .}}{{$k}}:{{$v}} {{end}}", dot: dot) == "B:0 a:1 b:2 c:3 ")
    #expect(try render("{{range .}}{{.}}{{end}}", dot: dot) == "0123")
  }

  @Test func rangeElse() throws {
    let text = "{{range .}}item{{else}}empty{{end}}"
    #expect(try render(text, dot: []) == "empty")
    #expect(try render(text, dot: [:]) == "empty")
    #expect(try render(text, dot: nil) == "empty")
    #expect(try render(text, dot: 0) == "empty")
    #expect(try render(text, dot: ["x"]) == "item")
  }

  @Test func rangeOverInteger() throws {
    #expect(try render("{{range 3}}{{.}}{{end}}") == "012")
    #expect(try render("{{range $i := 3}}{{$i}}{{end}}") == "012")
  }

  @Test func breakAndContinue() throws {
    let text = "{{range .}}{{if eq . 3}}{{break}}{{end}}{{if eq . 1}}{{continue}}{{end}}{{.}}{{end}}"
    #expect(try render(text, dot: [0, 1, 2, 3, 4]) == "02")
    // break leaves only the innermost range.
    let nested = "{{range .}}[{{range .}}{{if eq . 2}}{{break}}{{end}}{{.}}{{end}}]{{end}}"
    #expect(try render(nested, dot: [[1, 2, 3], [4, 2]]) == "[1][4]")
  }

  @Test func variableScopeInRangeAndWith() throws {
    // A declaration inside the body is new in each iteration and ends with the body.
    let shadow = "{{$x := \"outer\"}}{{range .}}{{$x := .}}{{$x}}{{end}} {{$x}}"
    #expect(try render(shadow, dot: ["a", "b"]) == "ab outer")
    // Assignment changes the outer variable and persists across iterations.
    let sum = "{{$sum := 0}}{{range .}}{{$sum = add $sum .}}{{end}}{{$sum}}"
    #expect(try render(sum, dot: [1, 2, 3]) == "6")
    let with = "{{$x := 1}}{{with .a}}{{$x := 2}}{{$x}}{{end}}{{$x}}"
    #expect(try render(with, dot: ["a": true]) == "21")
    // `$` is the data passed to the template, whatever dot is.
    let root = "{{range .items}}{{$.title}}:{{.}} {{end}}"
    #expect(try render(root, dot: ["title": "T", "items": ["a", "b"]]) == "T:a T:b ")
    // The range variables keep their last values only inside the range.
    let outer = "{{$v := \"before\"}}{{range $v := .}}{{end}}{{$v}}"
    #expect(try render(outer, dot: ["a"]) == "before")
  }

  @Test func variablesEndWithTheirControlStructure() {
    let error = renderError("{{range .}}{{$y := 1}}{{end}}{{$y}}", dot: [1])
    #expect(error?.code == .syntax)
    #expect(error?.message == "undefined variable \"$y\"")
    #expect(error?.location == SourceLocation(template: "test.tmpl", line: 1, column: 32))
  }

  @Test func rangeOverNonCollectionIsAnError() {
    let error = renderError("{{range \"abc\"}}{{end}}")
    #expect(error?.code == .execution)
    #expect(error?.message == "range can't iterate over abc")
  }

  @Test func breakOutsideRange() {
    #expect(renderError("{{break}}")?.message == "{{break}} outside {{range}}")
    #expect(renderError("{{if true}}{{continue}}{{end}}")?.message == "{{continue}} outside {{range}}")
  }
}
