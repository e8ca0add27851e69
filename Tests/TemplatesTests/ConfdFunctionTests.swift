import Templates
import Testing

/// confd's functions, with its names and argument order, and the extra functions.
@Suite struct ConfdFunctionTests {
  static let store = [
    "/test/user": "mary", "/test/pass": "abc", "/nada/url": "url",
    "/test/data/abc": "123", "/test/data/def/ghi": "456", "/test/data/jkl/mno": "789",
    "/k/ccc": "3", "/k/a": "1", "/k/bb": "2",
    "/x/1": "b", "/x/2": "a",
    "/json/1": "{\"Id\":\"host1\", \"IP\":\"192.168.10.11\"}",
    "/json/2": "{\"Id\":\"host2\", \"IP\":\"192.168.10.12\", \"port\": 8080}",
  ]

  @Test(arguments: [
    // get returns a KVPair; base and dir are Go's path.Base and path.Dir.
    ("{{with get \"/test/user\"}}{{base .Key}}={{.Value}}{{end}}", "user=mary"),
    ("{{getv \"/test/user\"}} {{getv \"/none\" \"fallback\"}} {{getv \"/none\" \"\"}}|", "mary fallback |"),
    ("{{exists \"/test/user\"}} {{exists \"/test\"}} {{exists \"/none\"}}", "true false false"),
    // gets: path.Match globs (`*` stops at `/`), results in key order.
    ("{{range gets \"/test/*\"}}{{.Key}}={{.Value}} {{end}}", "/test/pass=abc /test/user=mary "),
    ("{{range gets \"/test/?ass\"}}{{.Key}}{{end}} {{len (gets \"/test/[pu]*\")}} {{len (gets \"/none/*\")}}", "/test/pass 2 0"),
    ("{{range gets \"/test/data/*\"}}{{.Key}} {{end}}", "/test/data/abc "),
    // getvs: values sorted as strings (memkv sorts the values, not the keys).
    ("{{getvs \"/x/*\"}}", "[a b]"),
    // ls: child names (leaves and directories); lsdir: only those with keys below them.
    ("{{ls \"/test/data\"}} {{ls \"/test/data/\"}} {{ls \"/none\"}}", "[abc def jkl] [abc def jkl] []"),
    ("{{lsdir \"/test/data\"}} {{lsdir \"/test\"}}", "[def jkl] [data]"),
    ("{{ls \"/test/data/abc\"}}", "[abc]"),
    ("{{ls \"/\"}}", "[json k nada test x]"),
    ("{{base \"/a/b/c\"}} {{base \"/a/b/\"}} {{base \"\"}} {{base \"/\"}}", "c b . /"),
    ("{{dir \"/services/data/url\"}} {{dir \"url\"}} {{dir \"/a\"}} {{dir \"/a/b/\"}}", "/services/data . / /a/b"),
    ("{{$u := split \"db:5432\" \":\"}}{{index $u 0}}/{{index $u 1}} {{split \"a,b\" \",\"}}", "db/5432 [a b]"),
    ("{{join (split \"a,b,c\" \",\") \"-\"}} {{join (getvs \"/x/*\") \",\"}}", "a-b-c a,b"),
    ("{{toUpper \"value\"}} {{toLower \"VaLuE\"}} {{toUpper \"é\"}}", "VALUE value É"),
    ("{{contains \"foobar\" \"oba\"}} {{contains \"foo\" \"x\"}}", "true false"),
    ("{{replace \"a-b-c\" \"-\" \"_\" -1}} {{replace \"a-b-c\" \"-\" \"_\" 1}}", "a_b_c a_b-c"),
    ("{{trimSuffix \"file.conf\" \".conf\"}} {{trimSuffix \"file\" \".conf\"}}", "file file"),
    ("{{range getvs \"/json/*\"}}{{$d := json .}}{{$d.Id}}@{{$d.IP}} {{end}}", "host1@192.168.10.11 host2@192.168.10.12 "),
    // JSON numbers are float64 in Go and print in %v form.
    ("{{(json (getv \"/json/2\")).port}}", "8080"),
    ("{{range jsonArray \"[\\\"1\\\", \\\"2\\\", 3.5]\"}}num: {{.}} {{end}}", "num: 1 num: 2 num: 3.5 "),
    ("{{base64Encode \"Value\"}} {{base64Decode \"VmFsdWU=\"}}", "VmFsdWU= Value"),
    ("{{atoi \"42\"}} {{add (atoi \"-40\") 2}} {{parseBool \"true\"}}", "42 -38 true"),
    ("{{add 1 2}} {{sub 5 3}} {{mul 3 4}} {{div 7 2}} {{mod 7 2}} {{div -7 2}}", "3 2 12 3 1 -3"),
    ("{{range seq 1 3}}{{.}}{{end}} {{seq 3 1}}", "123 []"),
    ("{{reverse (split \"a,b,c\" \",\")}} {{range reverse (gets \"/x/*\")}}{{.Key}} {{end}}", "[c b a] /x/2 /x/1 "),
    ("{{sortByLength (split \"ccc,a,bb\" \",\")}}", "[a bb ccc]"),
    ("{{range sortKVByLength (gets \"/k/*\")}}{{.Key}} {{end}}", "/k/a /k/bb /k/ccc "),
    ("{{$m := map \"name\" \"es\" \"port\" 9200}}{{index $m \"name\"}}:{{index $m \"port\"}} {{$m.name}}", "es:9200 es"),
    ("{{toJSON (map \"b\" 1 \"a\" \"x<y\" \"c\" (split \"p,q\" \",\"))}}", "{\"a\":\"x\\u003cy\",\"b\":1,\"c\":[\"p\",\"q\"]}"),
    ("{{toJSON (get \"/test/user\")}} {{toJSON 1.5}} {{toJSON nil}}", "{\"Key\":\"/test/user\",\"Value\":\"mary\"} 1.5 null"),
    ("{{indent 4 \"a\\nb\"}}|{{indent 2 \"a\\n\\nb\\n\"}}|", "    a\n    b|  a\n\n  b\n|"),
    ("{{trimSpace \"  x y \\n\"}}|", "x y|"),
    ("{{default \"d\" \"\"}} {{\"\" | default \"d\"}} {{\"v\" | default \"d\"}} {{0 | default 5}}", "d d v 5"),
  ])
  func functions(template: String, expected: String) throws {
    #expect(try render(template, Self.store) == expected)
  }

  @Test func toYAML() throws {
    let text = "{{toYAML (map \"name\" \"web\" \"ports\" (split \"80,443\" \",\") \"tls\" (map \"on\" true \"ca\" \"\"))}}"
    // go-yaml v2 layout: sorted keys, sequences at the key's indentation, strings that
    // would read back as numbers, bools or null quoted.
    let expected = ["name: web", "ports:", "- \"80\"", "- \"443\"", "tls:", "  ca: \"\"", "  \"on\": true"]
      .joined(separator: "\n")
    #expect(try render(text) == expected)
    #expect(try render("{{toYAML (jsonArray \"[{\\\"a\\\":1,\\\"b\\\":\\\"x: y\\\"},[1,2]]\")}}")
      == "- a: 1\n  b: 'x: y'\n- - 1\n  - 2")
    #expect(try render("{{toYAML (map \"text\" \"line1\\nline2\")}}") == "text: |-\n  line1\n  line2")
  }

  @Test func getenvUsesTheConfiguredEnvironment() throws {
    let options = RenderOptions(environment: ["HOSTNAME": "web-1", "EMPTY": ""])
    let text = "{{getenv \"HOSTNAME\"}} {{getenv \"NOPE\"}}|{{getenv \"NOPE\" \"127.0.0.1\"}} {{getenv \"EMPTY\" \"d\"}}"
    #expect(try render(text, options: options) == "web-1 |127.0.0.1 d")
  }

  @Test func getenvReadsTheProcessEnvironmentByDefault() throws {
    #expect(try render("{{getenv \"PATH\" \"none\"}}") != "none")
  }

  @Test func datetime() throws {
    // 1422048896 is 2015-01-23 21:34:56 UTC (a Friday, day 23 of the year).
    let time = TemplateTime(seconds: 1_422_048_896, nanoseconds: 93_250_283, isUTC: true)
    let options = RenderOptions(clock: { time })
    #expect(try render("{{datetime}}", options: options) == "2015-01-23 21:34:56.093250283 +0000 UTC")
    #expect(try render("{{datetime.Format \"Jan 2, 2006 at 3:04pm (MST)\"}}", options: options)
      == "Jan 23, 2015 at 9:34pm (UTC)")
    #expect(try render("{{datetime.Format \"Monday 02/01/06 15:04:05.000 Z07:00 002 _2\"}}", options: options)
      == "Friday 23/01/15 21:34:56.093 Z 023 23")
    #expect(try render("{{(datetime).Unix}} {{datetime.Year}} {{datetime.UTC.Hour}}", options: options)
      == "1422048896 2015 21")
    #expect(try render("{{datetime.Format \"2006-01-02T15:04:05.999Z07:00\"}}", options: options)
      == "2015-01-23T21:34:56.093Z")
  }

  @Test func lookupIPSortsAddresses() throws {
    let resolver = DNSResolver(
      lookupIP: { _ in ["10.0.0.2", "::1", "10.0.0.10", "10.0.0.1"] }, lookupSRV: { _, _, _ in [] })
    let options = RenderOptions(resolver: resolver)
    // Sorted as strings, as confd does ("10.0.0.10" before "10.0.0.2").
    #expect(try render("{{range lookupIP \"h\"}}{{.}} {{end}}", options: options) == "10.0.0.1 10.0.0.10 10.0.0.2 ::1 ")
    #expect(try render("{{lookupIPV4 \"h\"}} {{lookupIPV6 \"h\"}}", options: options) == "[10.0.0.1 10.0.0.10 10.0.0.2] [::1]")
  }

  @Test func lookupIPWithTheSystemResolver() throws {
    let output = try render("{{range lookupIP \"localhost\"}}{{.}} {{end}}")
    #expect(output.contains("127.0.0.1") || output.contains("::1"))
    #expect(try render("{{lookupIP \"no-such-host.invalid\"}}") == "[]")
  }

  @Test func lookupSRV() throws {
    let resolver = DNSResolver(
      lookupIP: { _ in [] },
      lookupSRV: { service, proto, name in
        #expect(service == "xmpp-server" && proto == "tcp" && name == "example.com")
        return [
          SRVRecord(target: "b.example.com.", port: 5269, priority: 10, weight: 5),
          SRVRecord(target: "a.example.com.", port: 5269, priority: 20, weight: 0),
        ]
      })
    let text = "{{range lookupSRV \"xmpp-server\" \"tcp\" \"example.com\"}}{{.Target}}:{{.Port}} p{{.Priority}} w{{.Weight}}; {{end}}"
    #expect(try render(text, options: RenderOptions(resolver: resolver))
      == "a.example.com.:5269 p20 w0; b.example.com.:5269 p10 w5; ")
  }

  @Test(arguments: [
    ("{{gets \"/a/[\"}}", "error calling gets: syntax error in pattern"),
    ("{{json \"[1]\"}}", "error calling json: json: cannot unmarshal array into Go value of type map[string]interface {}"),
    ("{{json \"{\"}}", "error calling json: unexpected end of JSON input"),
    ("{{json \"{} x\"}}", "error calling json: invalid character 'x' after top-level value"),
    ("{{base64Decode \"@@\"}}", "error calling base64Decode: illegal base64 data at input byte 0"),
    ("{{atoi \"4x\"}}", "error calling atoi: strconv.Atoi: parsing \"4x\": invalid syntax"),
    ("{{div 1 0}}", "error calling div: runtime error: integer divide by zero"),
    ("{{map \"a\"}}", "error calling map: invalid map call"),
    ("{{add \"1\" 2}}", "wrong type for value; expected int; got string"),
    ("{{replace \"a\" \"b\"}}", "wrong number of args for replace: want 4 got 2"),
  ])
  func functionErrors(template: String, message: String) {
    #expect(renderError(template, Self.store)?.message == message)
  }
}
