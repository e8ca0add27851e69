import EtcSync
import Testing

@Suite("{{.NAME}} substitution")
struct ArgumentSubstitutionTests {
  @Test(
    "placeholders are replaced, everything else is kept",
    arguments: [
      ("{{.src}}", "/tmp/f"),
      ("-c={{.src}}", "-c=/tmp/f"),
      ("{{ .src }}", "/tmp/f"),
      ("{{.src}}{{.src}}", "/tmp/f/tmp/f"),
      ("{{.missing}}", "{{.missing}}"),
      ("{{src}}", "{{src}}"),
      ("{{.src", "{{.src"),
      ("{{.State.Running}}", "{{.State.Running}}"),
      ("{{{.src}}}", "{/tmp/f}"),
      ("plain", "plain"),
      ("", ""),
    ])
  func substitutes(argument: String, expected: String) {
    #expect(ArgumentSubstitution.substitute(argument, with: ["src": "/tmp/f"]) == expected)
  }

  @Test("values are inserted once, never re-scanned or evaluated")
  func noRescan() {
    let values = ["src": "{{.dest}} $(id) `id`", "dest": "X"]
    #expect(ArgumentSubstitution.substitute(["a{{.src}}b"], with: values) == ["a{{.dest}} $(id) `id`b"])
  }

  @Test("argv without values is returned as is")
  func noValues() {
    #expect(ArgumentSubstitution.substitute(["nginx", "-t", "{{.src}}"], with: [:]) == ["nginx", "-t", "{{.src}}"])
  }
}
