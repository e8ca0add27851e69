import Templates
import Testing

/// Numbers and sizes from etcd that used to trap or allocate without bound: each case
/// crashed the process, hung, or built a huge string before the fix.
@Suite struct ArithmeticLimitTests {
  /// A render's error code, or nil when it succeeds.
  func code(_ text: String, _ values: [String: String] = [:], dot: TemplateValue = .null,
    options: RenderOptions = RenderOptions()) -> TemplateError.Code?
  {
    renderError(text, values, dot: dot, options: options)?.code
  }

  @Test(arguments: [
    // `*` width: abs(Int.min) trapped; Go refuses anything beyond ±1e6 as BADWIDTH.
    ("{{printf \"%*d\" .min 5}}", "%!(BADWIDTH)5"),
    ("{{printf \"%*d|\" .max 5}}", "%!(BADWIDTH)5|"),
    ("{{printf \"%*d|\" 1000001 5}}", "%!(BADWIDTH)5|"),
    ("{{printf \"%*d|\" -1000001 5}}", "%!(BADWIDTH)5|"),
    ("{{printf \"%*d|\" -3 5}}", "5  |"),
    ("{{printf \"%*d|\" 1.5 5}}", "%!(BADWIDTH)5|"),
    // `*` precision: Int.max zero-padded Int.max digits; negative is bad in Go.
    ("{{printf \"%.*d|\" .max 5}}", "%!(BADPREC)5|"),
    ("{{printf \"%.*d|\" .min 5}}", "%!(BADPREC)5|"),
    ("{{printf \"%.*d|\" -1 5}}", "%!(BADPREC)5|"),
    ("{{printf \"%.*f|\" .max 1.5}}", "%!(BADPREC)1.500000|"),
    ("{{printf \"%.*s|\" 2 \"abc\"}}", "ab|"),
    // A literal width or precision past 1e6 makes Go give up on the rest of the format.
    ("{{printf \"%99999999999999999999d|\" 5}}", "%!(NOVERB)%!(EXTRA int=5)"),
    ("{{printf \"%.99999999999999999999d|\" 5}}", "%!(NOVERB)%!(EXTRA int=5)"),
    ("{{printf \"%[99999999999999999999]d|\" 5}}", "%!d(BADINDEX)|"),
    // The star's number comes from etcd through atoi.
    ("{{printf \"%*d\" (atoi (getv \"/w\")) 1}}", "%!(BADWIDTH)1"),
    // Go's wrapping int arithmetic.
    ("{{div .min -1}} {{mod .min -1}} {{add .max 1}} {{sub .min 1}} {{mul .max 2}}",
     "-9223372036854775808 0 -9223372036854775808 9223372036854775807 -2"),
    ("{{atoi \"-9223372036854775808\"}} {{atoi \"+9223372036854775807\"}}",
     "-9223372036854775808 9223372036854775807"),
    ("{{len (seq 1 1000000)}} {{seq .max .max}} {{seq .min .min}} {{seq .max .min}}",
     "1000000 [9223372036854775807] [-9223372036854775808] []"),
  ])
  func printfAndNumbers(template: String, expected: String) throws {
    let dot: TemplateValue = ["min": .int(Int.min), "max": .int(Int.max)]
    #expect(try render(template, ["/w": "-9223372036854775808"], dot: dot) == expected)
  }

  @Test func atoiOutOfRangeIsGoError() {
    let error = renderError("{{atoi \"9223372036854775808\"}}")
    #expect(error?.message == "error calling atoi: strconv.Atoi: parsing \"9223372036854775808\": value out of range")
    #expect(renderError("{{atoi \"-9223372036854775809\"}}")?.message.hasSuffix("value out of range") == true)
    #expect(renderError("{{atoi \"99999999999999999999999999\"}}")?.message.hasSuffix("value out of range") == true)
    #expect(renderError("{{atoi \"1e3\"}}")?.message.hasSuffix("invalid syntax") == true)
  }

  @Test func seqRefusesOverflowAndHugeRanges() {
    let dot: TemplateValue = ["min": .int(Int.min), "max": .int(Int.max)]
    // last - first overflowed Int and trapped.
    #expect(code("{{seq .min .max}}", dot: dot) == .limitExceeded)
    #expect(code("{{seq -1 .max}}", dot: dot) == .limitExceeded)
    #expect(code("{{seq 0 1000000}}") == .limitExceeded)
    #expect(code("{{seq (atoi (getv \"/n\")) 5}}", ["/n": "-9223372036854775808"]) == .limitExceeded)
  }

  @Test func indentIsBounded() {
    let dot: TemplateValue = ["max": .int(Int.max)]
    // Array(repeating:count: Int.max) crashed.
    #expect(code("{{indent .max \"x\"}}", dot: dot) == .function)
    #expect(code("{{indent 1000001 \"x\"}}") == .function)
    #expect(code("{{indent -1 \"x\"}}") == .function)
    // A wide indent over many lines is refused before it is built.
    let lines = String(repeating: "x\n", count: 1000)
    #expect(code("{{indent 1000000 (getv \"/l\")}}", ["/l": lines]) == .limitExceeded)
    #expect((try? render("{{indent 3 \"a\\n\\nb\"}}")) == "   a\n\n   b")
  }

  @Test func growingFunctionsAreBounded() {
    let small = RenderOptions(maxOutputSize: 10_000)
    let big = String(repeating: "y", count: 5_000)
    let values = ["/s": big]
    // replace with an empty `old` inserts `new` at every character: 5,001 × 5,000 bytes.
    #expect(code("{{replace (getv \"/s\") \"\" (getv \"/s\") -1}}", values, options: small) == .limitExceeded)
    #expect(code("{{replace (getv \"/s\") \"y\" (getv \"/s\") .max}}", values, dot: ["max": .int(Int.max)], options: small)
      == .limitExceeded)
    #expect((try? render("{{replace \"aaa\" \"\" \"-\" 2}}")) == "-a-aa")
    #expect(code("{{join (split (getv \"/s\") \"\") (getv \"/s\")}}", values, options: small) == .limitExceeded)
    // One format repeating a big argument.
    let format = String(repeating: "%[1]s", count: 100)
    #expect(code("{{printf (getv \"/f\") (getv \"/s\")}}", ["/f": format, "/s": big], options: small) == .limitExceeded)
    #expect(code("{{print (getv \"/s\") (getv \"/s\") (getv \"/s\")}}", values, options: small) == .limitExceeded)
    #expect(code("{{html (getv \"/s\") (getv \"/s\") (getv \"/s\")}}", values, options: small) == .limitExceeded)
    // Widths are capped per directive, but many directives still add up.
    #expect(code("{{printf (getv \"/f\") 1}}", ["/f": String(repeating: "%[1]9000d", count: 10)], options: small)
      == .limitExceeded)
    #expect(code("{{base64Encode (getv \"/s\")}}{{$x := base64Encode (print (getv \"/s\") (getv \"/s\"))}}", values,
      options: RenderOptions(maxOutputSize: 12_000)) == .limitExceeded)
  }

  @Test func outputIsBounded() {
    let small = RenderOptions(maxOutputSize: 1_000)
    #expect(code("{{range seq 1 1000}}xx{{end}}", options: small) == .limitExceeded)
    #expect(code("{{range seq 1 1000}}{{.}}{{end}}", options: small) == .limitExceeded)
    #expect(code("{{seq 1 1000}}", options: small) == .limitExceeded)
    #expect((try? render("{{range seq 1 10}}x{{end}}", options: small)) == "xxxxxxxxxx")
    // The limit counts this render's bytes, not what the caller's buffer held before.
    var buffer = [UInt8](repeating: 0, count: 5_000)
    #expect(throws: Never.self) {
      try Template(name: "t", text: "abc").render(into: &buffer, data: DictionaryDataSource([:]), options: small)
    }
  }

  @Test func rangeIterationsAreBounded() {
    // A count from etcd used to loop for ever (Int.max iterations with an empty body).
    let options = RenderOptions(maxIterations: 10_000)
    #expect(code("{{range (atoi (getv \"/n\"))}}{{end}}", ["/n": "9223372036854775807"], options: options)
      == .limitExceeded)
    #expect(code("{{range seq 1 200}}{{range seq 1 200}}{{end}}{{end}}", options: options) == .limitExceeded)
    #expect((try? render("{{range 3}}{{.}}{{end}}", options: options)) == "012")
  }
}
