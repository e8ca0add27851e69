import EtcdTestSupport
import Templates
import Testing

/// Renders confd's functions (and the Go built-ins) over extreme numbers and strings from a
/// seeded generator. The oracle: the process survives, and every render either returns
/// output within the size limit or throws a ``TemplateError``.
@Suite struct FuzzTests {
  /// Replayable by seed.
  typealias Generator = SplitMix64

  static let ints: [Int] = [
    Int.min, Int.min + 1, Int.max, Int.max - 1, -1, 0, 1, 2, 7, -7, 1_000_000, 1_000_001, -1_000_000,
    -1_000_001, 9_999_999, 10_000_000, Int(Int32.max), Int(Int32.min), 1 << 32, -(1 << 62), 255, 0x10FFFF, 0xD800,
  ]
  static let doubles: [Double] = [
    .nan, .infinity, -.infinity, 1e308, -1e308, .leastNonzeroMagnitude, -0.0, 0.5, 9.2e18, 9.3e18, -9.3e18, 1e19, 3.0,
  ]
  static let strings: [String] = [
    "", " ", "0", "-1", "+1", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
    "-9223372036854775809", "99999999999999999999999", "1e309", "NaN", "inf", "-Inf", "+Inf", "0x10", "1_000",
    "true", "T", "x", "\u{E9}", "e\u{301}", "\u{301}", "/\u{301}", "/p/\u{E9}", "/p/e\u{301}", "/", "//", "/p/",
    "/p/*", "/*/*", "[", "[]", "[^", "\\", "*", "?", "..", "/../..", "\u{0}", "\r\n", "a\nb\n\n", "\u{FEFF}",
    "\u{1F600}", "%", "%*d", "%.*f", "%-*d", "%0*x", "%[1]*d", "%[99999999999999999999]d", "%[0]d", "%[2]s",
    "%!", "%99999999999999999999d", "%.99999999999999999999f", "%9999999d", "%1000001s", "%*.*f|%-*d|%0*x",
    "%v%v%v%v", "%U", "%c", "%q", "%#v", "%x", "% x", "%#q", "%e", "%g", "%.1000f", "%T",
    "{\"a\":1}", "[1,2,\"x\"]", "{\"\\u00e9\":1,\"e\\u0301\":2}", "[[[[[[[[[[", "{\"a\":", "\"\\ud800\"",
    "1e400", "-0", "VmFsdWU=", "====", "Vm\nFs", "a:b", "- x", "null", "~", "yes",
    String(repeating: "x", count: 100_000), String(repeating: "\u{301}", count: 10_000),
    String(repeating: "a\n", count: 10_000), String(repeating: "/", count: 5_000),
    String(repeating: "%d", count: 2_000), String(repeating: "[", count: 1_000),
  ]
  /// Invalid UTF-8 reaches templates only as bytes from the data source.
  static let byteStrings: [[UInt8]] = [[0xFF], [0xC3], [0xE0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0x2F, 0xCC]]

  static func value(_ g: inout Generator) -> TemplateValue {
    switch g.next() % 12 {
    case 0, 1, 2, 3: return .int(g.pick(ints))
    case 4: return .double(g.pick(doubles))
    case 5, 6, 7, 8: return .string(g.pick(strings))
    case 9: return .bytes(g.pick(byteStrings))
    case 10: return g.pick([.null, .bool(true), .bool(false), .list([]), .map([:])])
    default:
      return .list([.int(g.pick(ints)), .string(g.pick(strings)), .double(g.pick(doubles))])
    }
  }

  /// Every function with its arguments taken from `$a` to `$d` (or built from them).
  static let shapes: [String] = [
    "{{add $a $b}}", "{{sub $a $b}}", "{{mul $a $b}}", "{{div $a $b}}", "{{mod $a $b}}",
    "{{seq $a $b}}", "{{len (seq $a $b)}}", "{{range seq $a $b}}.{{end}}", "{{range $a}}.{{end}}",
    "{{indent $a $b}}", "{{$b | indent $a}}", "{{atoi $a}}", "{{add (atoi $a) (atoi $b)}}", "{{parseBool $a}}",
    "{{printf $a $b $c $d}}", "{{printf \"%*d|%.*f|%-*s\" $a $b $c $d $a $b}}", "{{printf \"%*.*f\" $a $b $c}}",
    "{{printf \"%[1]*[2]d\" $a $b}}", "{{printf $a $a $a}}", "{{print $a $b $c}}", "{{println $a $b}}",
    "{{printf \"%v %d %s %q %x %X %e %g %c %U %T %t\" $a $a $a $a $a $a $a $a $a $a $a $a}}",
    "{{replace $a $b $c $d}}", "{{replace $a \"\" $b -1}}", "{{join (split $a $b) $c}}", "{{split $a $b}}",
    "{{base $a}}", "{{dir $a}}", "{{toUpper $a}}", "{{toLower $a}}", "{{contains $a $b}}", "{{trimSuffix $a $b}}",
    "{{trimSpace $a}}", "{{default $a $b}}", "{{json $a}}", "{{jsonArray $a}}", "{{toJSON (json $a)}}",
    "{{toYAML (jsonArray $a)}}", "{{base64Encode $a}}", "{{base64Decode $a}}", "{{base64Decode (base64Encode $a)}}",
    "{{toJSON $a}}", "{{toYAML $a}}", "{{toYAML (map $a $b $c $d)}}", "{{map $a $b}}", "{{index (map $a $b) $a}}",
    "{{reverse $a}}", "{{sortByLength (split $a $b)}}", "{{sortKVByLength (gets $a)}}", "{{reverse (gets $a)}}",
    "{{get $a}}", "{{getv $a}}", "{{getv $a $b}}", "{{gets $a}}", "{{getvs $a}}", "{{exists $a}}", "{{ls $a}}",
    "{{lsdir $a}}", "{{range ls $a}}{{getv (printf \"%s/%s\" $b .)}}{{end}}", "{{len $a}}", "{{index $a $b}}",
    "{{slice $a $b $c}}", "{{slice $a $b}}", "{{html $a}}", "{{js $a}}", "{{urlquery $a $b}}",
    "{{eq $a $b}}", "{{ne $a $b}}", "{{lt $a $b}}", "{{le $a $b}}", "{{gt $a $b}}", "{{ge $a $b}}",
    "{{getenv $a $b}}", "{{lookupIP $a}}", "{{lookupSRV $a $b $c}}", "{{(datetime).Format $a}}",
    "{{if $a}}{{$a}}{{else}}{{$b}}{{end}}", "{{range $i, $v := $a}}{{$i}}{{$v}}{{end}}", "{{with $a}}{{.}}{{end}}",
  ]

  @Test func confdFunctionsOverExtremeValues() throws {
    let templates = try Self.shapes.map { shape in
      try Template(name: "fuzz.tmpl", text: "{{$a := .a}}{{$b := .b}}{{$c := .c}}{{$d := .d}}" + shape)
    }
    var pairs: [(key: String, value: [UInt8])] = []
    for (n, s) in Self.strings.prefix(60).enumerated() { pairs.append(("/" + s, Array(s.utf8))); pairs.append(("/k/\(n)/" + s, [])) }
    for bytes in Self.byteStrings { pairs.append(("/b/" + String(decoding: bytes, as: UTF8.self), bytes)) }
    let data = DictionaryDataSource(pairs: pairs)
    let limit = 1 << 20
    let options = RenderOptions(
      missingKey: .noValue, environment: ["x": "y"], clock: { TemplateTime(seconds: Int64.max, isUTC: true) },
      resolver: DNSResolver(lookupIP: { _ in ["10.0.0.1", "::1"] }, lookupSRV: { _, _, _ in [] }),
      maxOutputSize: limit, maxIterations: 20_000)
    var g = Generator(seed: 0x5EED_E7C5_0000_0011)
    var rendered = 0
    var failed = 0
    for _ in 0..<4_000 {
      let index = Int(g.next() % UInt64(templates.count))
      let dot: TemplateValue = [
        "a": Self.value(&g), "b": Self.value(&g), "c": Self.value(&g), "d": Self.value(&g),
      ]
      do {
        let out = try templates[index].render(data: data, dot: dot, options: options)
        #expect(out.count <= limit, "\(Self.shapes[index])")
        rendered += 1
      } catch {
        // Typed throws: a TemplateError is the only way out besides output.
        #expect(!error.message.isEmpty)
        failed += 1
      }
    }
    // The generator reaches both outcomes.
    #expect(rendered > 500 && failed > 500)
  }

  @Test func everyShapeSeesTheEdgesOnce() throws {
    // Each shape with the most extreme ints and strings in each position, deterministically.
    let edges: [TemplateValue] = [
      .int(Int.min), .int(Int.max), .int(-1), .double(.nan), .double(-.infinity),
      .string("9223372036854775808"), .string(""), .string("%*d"), .string(String(repeating: "%9999999d", count: 3)),
      .bytes([0xFF, 0xFE]),
    ]
    let options = RenderOptions(missingKey: .noValue, resolver: DNSResolver(lookupIP: { _ in [] }, lookupSRV: { _, _, _ in [] }),
      maxOutputSize: 1 << 20, maxIterations: 10_000)
    let data = DictionaryDataSource(strings: ["/a": "1"])
    for shape in Self.shapes {
      let template = try Template(name: "edge.tmpl", text: "{{$a := .a}}{{$b := .b}}{{$c := .c}}{{$d := .d}}" + shape)
      for (i, a) in edges.enumerated() {
        let b = edges[(i + 3) % edges.count]
        let dot: TemplateValue = ["a": a, "b": b, "c": edges[(i + 5) % edges.count], "d": a]
        if let out = try? template.render(data: data, dot: dot, options: options) {
          #expect(out.count <= 1 << 20, "\(shape)")
        }
      }
    }
  }
}
