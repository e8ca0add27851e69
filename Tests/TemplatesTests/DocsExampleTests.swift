import Templates
import Testing

/// The examples of docs/templates.md, run against the store the page describes.
@Suite struct DocsExampleTests {
  static let store = ["/app/name": "web", "/app/port": "8080", "/hosts/a": "10.0.0.1", "/hosts/b": "10.0.0.2"]
  static let options = RenderOptions(
    environment: ["HOSTNAME": "web-1"],
    clock: { TemplateTime(seconds: 1_422_048_896, isUTC: true) },
    resolver: DNSResolver(
      lookupIP: { _ in ["::1", "127.0.0.1"] },
      lookupSRV: { _, _, _ in [SRVRecord(target: "a.example.com.", port: 5269, priority: 10, weight: 5)] }))

  @Test(arguments: [
    ("{{and 1 0 \"x\"}}", "0"),
    ("{{or \"\" (getv \"/app/name\")}}", "web"),
    ("{{not \"\"}}", "true"),
    ("{{len (gets \"/hosts/*\")}}", "2"),
    ("{{index (split \"a:b\" \":\") 1}}", "b"),
    ("{{slice \"abcdef\" 1 3}}", "bc"),
    ("{{print \"port \" 8080}}", "port 8080"),
    ("{{printf \"%-6s|%5.1f|%03d|%q|%x\" \"ab\" 3.14159 7 \"a\" 255}}", "ab    |  3.1|007|\"a\"|ff"),
    ("{{println \"a\" 1}}", "a 1\n"),
    ("{{eq (getv \"/app/name\") \"api\" \"web\"}}", "true"),
    ("{{ne 1 2}}", "true"),
    ("{{lt 1 2}} {{ge \"b\" \"a\"}}", "true true"),
    ("{{html \"<a&b>\"}}", "&lt;a&amp;b&gt;"),
    ("{{js \"it's\"}}", "it\\'s"),
    ("{{urlquery \"a b&c\"}}", "a+b%26c"),
    ("{{with get \"/app/name\"}}{{.Key}}={{.Value}}{{end}}", "/app/name=web"),
    ("{{range gets \"/hosts/*\"}}{{base .Key}}:{{.Value}} {{end}}", "a:10.0.0.1 b:10.0.0.2 "),
    ("{{getv \"/app/port\"}}", "8080"),
    ("{{getv \"/app/tls\" \"off\"}}", "off"),
    ("{{join (getvs \"/hosts/*\") \",\"}}", "10.0.0.1,10.0.0.2"),
    ("{{if exists \"/app/tls\"}}tls{{else}}plain{{end}}", "plain"),
    ("{{ls \"/app\"}}", "[name port]"),
    ("{{lsdir \"/\"}}", "[app hosts]"),
    ("{{base \"/services/web/a\"}}", "a"),
    ("{{dir \"/services/web/a\"}}", "/services/web"),
    ("{{$u := split \"db:5432\" \":\"}}{{index $u 1}}", "5432"),
    ("{{join (split \"a,b\" \",\") \"-\"}}", "a-b"),
    ("{{toUpper \"web\"}}", "WEB"),
    ("{{toLower \"WEB\"}}", "web"),
    ("{{contains \"foobar\" \"oba\"}}", "true"),
    ("{{replace \"a-b-c\" \"-\" \"_\" -1}}", "a_b_c"),
    ("{{trimSuffix \"app.conf\" \".conf\"}}", "app"),
    ("{{$d := json \"{\\\"ip\\\":\\\"10.0.0.5\\\",\\\"port\\\":80}\"}}{{$d.ip}}:{{$d.port}}", "10.0.0.5:80"),
    ("{{range jsonArray \"[\\\"a\\\",\\\"b\\\"]\"}}{{.}};{{end}}", "a;b;"),
    ("{{base64Encode \"Value\"}}", "VmFsdWU="),
    ("{{base64Decode \"VmFsdWU=\"}}", "Value"),
    ("{{add (atoi (getv \"/app/port\")) 1}}", "8081"),
    ("{{if parseBool \"true\"}}yes{{end}}", "yes"),
    ("{{add 1 2}} {{sub 5 3}} {{mul 3 4}} {{div 7 2}} {{mod 7 2}}", "3 2 12 3 1"),
    ("{{range seq 1 3}}{{.}}{{end}}", "123"),
    ("{{reverse (split \"a,b,c\" \",\")}}", "[c b a]"),
    ("{{sortByLength (split \"ccc,a,bb\" \",\")}}", "[a bb ccc]"),
    ("{{range sortKVByLength (gets \"/hosts/*\")}}{{.Key}} {{end}}", "/hosts/a /hosts/b "),
    ("{{$m := map \"name\" \"es\" \"port\" 9200}}{{$m.name}}:{{index $m \"port\"}}", "es:9200"),
    ("{{getenv \"HOSTNAME\"}} {{getenv \"HOST_IP\" \"127.0.0.1\"}}", "web-1 127.0.0.1"),
    ("{{datetime.Format \"2006-01-02T15:04:05Z07:00\"}}", "2015-01-23T21:34:56Z"),
    ("{{range lookupIP \"localhost\"}}{{.}} {{end}}", "127.0.0.1 ::1 "),
    ("{{lookupIPV4 \"localhost\"}}", "[127.0.0.1]"),
    ("{{range lookupSRV \"xmpp-server\" \"tcp\" \"example.com\"}}{{.Target}}:{{.Port}} {{end}}", "a.example.com.:5269 "),
    ("{{toJSON (map \"b\" 1 \"a\" \"x\")}}", "{\"a\":\"x\",\"b\":1}"),
    ("{{toYAML (map \"name\" \"web\" \"ports\" (split \"80,443\" \",\"))}}", "name: web\nports:\n- \"80\"\n- \"443\""),
    ("{{\"line1\\nline2\" | indent 4}}", "    line1\n    line2"),
    ("{{trimSpace \"  x \\n\"}}", "x"),
    ("{{getv \"/app/tls\" \"\" | default \"off\"}}", "off"),
    ("{{with getv \"/a\" \"\"}}a={{.}}{{else with getv \"/app/name\" \"\"}}b={{.}}{{else}}none{{end}}", "b=web"),
  ])
  func example(template: String, expected: String) throws {
    #expect(try render(template, Self.store, options: Self.options) == expected)
  }
}
