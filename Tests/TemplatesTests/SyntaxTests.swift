import Templates
import Testing

/// Lexical conformance with Go's text/template: trim markers, comments, literals.
/// Each expected output follows from the rules in Go's package documentation:
/// `{{- ` removes all white space (space, tab, CR, LF) before the action, ` -}}` all after it;
/// the `-` must be separated from the rest of the action by white space.
@Suite struct SyntaxTests {
  @Test(arguments: [
    // Both markers remove the spaces on their side only.
    ("a  {{- \"x\" -}}  b", "axb"),
    ("a  {{- \"x\"}}  b", "ax  b"),
    ("a  {{\"x\" -}}  b", "a  xb"),
    // Newlines count as white space.
    ("a\n\t {{- \"x\" -}} \r\n b", "axb"),
    // `{{-3}}` is the number -3, not a trim marker.
    ("a {{-3}}", "a -3"),
    ("a {{- 3}}", "a3"),
    // A comment with trim markers removes the text around it.
    ("x \n {{- /* note */ -}} \n y", "xy"),
    ("a {{/* c */}} b", "a  b"),
    ("a{{/* spans\nlines */}}b", "ab"),
    // Actions may span lines (Go 1.16+).
    ("{{if\n  eq 1 1\n}}yes{{end}}", "yes"),
  ])
  func trimMarkersAndComments(template: String, expected: String) throws {
    #expect(try render(template) == expected)
  }

  @Test func trimInListTemplate() throws {
    // Derivation: "<ul>\n" loses its newline to `{{- range`; each iteration is
    // "\n  <li>" + item + "</li>" (the trailing "\n" goes to `{{- end`); then "\n</ul>".
    let text = "<ul>\n{{- range .}}\n  <li>{{.}}</li>\n{{- end}}\n</ul>"
    #expect(try render(text, dot: ["a", "b"]) == "<ul>\n  <li>a</li>\n  <li>b</li>\n</ul>")
  }

  @Test(arguments: [
    ("{{\"a\\tb\\n\\\"q\\\"\\\\\"}}", "a\tb\n\"q\"\\"),
    ("{{\"\\x41\\u00e9\\U0001F600\\101\"}}", "Aé😀A"),
    ("{{`raw \\n {{ text`}}", "raw \\n {{ text"),
    ("{{'a'}} {{'\\n'}}", "97 10"),
    ("{{42}} {{-7}} {{0x1F}} {{0o17}} {{017}} {{0b101}} {{1_000}}", "42 -7 31 15 15 5 1000"),
    ("{{1.5}} {{1e3}} {{1e6}} {{100000.0}} {{0.000012}} {{.5}}", "1.5 1000 1e+06 100000 1.2e-05 0.5"),
    ("{{true}} {{false}}", "true false"),
    ("{{print nil}}", "<nil>"),
  ])
  func literals(template: String, expected: String) throws {
    #expect(try render(template) == expected)
  }

  @Test func printedValues() throws {
    // An action prints with fmt's %v; nil prints as "<no value>" (Go's text/template).
    #expect(try render("{{.}}") == "<no value>")
    #expect(try render("{{.}}", dot: ["a", "b"]) == "[a b]")
    #expect(try render("{{.}}", dot: ["b": 2, "a": 1]) == "map[a:1 b:2]")
    #expect(try render("{{get \"/k\"}}", ["/k": "v"]) == "{/k v}")
    #expect(try render("{{.}}", dot: [["x": 1.5], "y", nil]) == "[map[x:1.5] y <nil>]")
  }

  @Test func valuesAreNeverEvaluated() throws {
    // A value that looks like a template is data: it is copied as is.
    let values = ["/v": "{{getv \"/secret\"}} {{/* x */}}", "/secret": "s3cr3t"]
    #expect(try render("{{getv \"/v\"}}", values) == "{{getv \"/secret\"}} {{/* x */}}")
  }

  @Test func declarationsPrintNothing() throws {
    #expect(try render("[{{$x := 1}}][{{$x = 2}}]{{$x}}") == "[][]2")
  }

  @Test func parenthesesAndChains() throws {
    #expect(try render("{{(print \"a\" \"b\")}}") == "ab")
    #expect(try render("{{(json \"{\\\"a\\\":{\\\"b\\\":7}}\").a.b}}") == "7")
    #expect(try render("{{len (split (printf \"%s,%s\" \"x\" \"y\") \",\")}}") == "2")
    #expect(try render("{{\"a,b\" | split \",\" | len}}") == "1")
  }

  @Test func pipelinesPassTheValueLast() throws {
    // `x | f a` calls f(a, x).
    #expect(try render("{{\"b\" | printf \"%s-%s\" \"a\"}}") == "a-b")
    #expect(try render("{{getv \"/k\" | toUpper | printf \"<%s>\"}}", ["/k": "v"]) == "<V>")
  }
}
