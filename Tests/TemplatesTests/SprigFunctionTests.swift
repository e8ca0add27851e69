import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Templates
import Testing

/// The sprig and consul-template functions of issue 14: results as Go's text/template with
/// sprig v3 gives them (expected values worked out from sprig's and Go's sources).
@Suite struct SprigFunctionTests {
  @Test(arguments: [
    // Regular expressions.
    ("{{regexMatch \"^[a-z]+-[0-9]+$\" \"web-12\"}} {{regexMatch \"^[a-z]+$\" \"web-12\"}}", "true false"),
    ("{{regexMatch \"(?i)WEB\" \"web\"}} {{regexMatch \"(?P<n>a)b\" \"xab\"}}", "true true"),
    ("{{regexFind \"[0-9]+\" \"port 8080 and 9090\"}}|{{regexFind \"z\" \"abc\"}}|", "8080||"),
    ("{{regexReplaceAll \"a(x*)b\" \"-ab-axxb-\" \"${1}W\"}}", "-W-xxW-"),
    ("{{regexReplaceAll \"a(x*)b\" \"-ab-axxb-\" \"$1W\"}}", "---"),
    ("{{regexReplaceAll \"(?P<host>[a-z]+):(?P<port>[0-9]+)\" \"db:5432\" \"$port@$host $$ $9 ${x\"}}", "5432@db $  ${x"),
    ("{{regexReplaceAll \"a*\" \"baaac\" \"X\"}}", "XbXcX"),
    ("{{regexReplaceAll \"\" \"ab\" \"-\"}}", "-a-b-"),
    ("{{regexReplaceAll \".\" \"é\" \"x\"}}", "x"),
    ("{{regexReplaceAll \"^\" \"a\\nb\" \">\"}}", ">a\nb"),
    // Go's $ (without (?m)) is the end of the text only; \d, \s and \w are ASCII.
    ("{{regexMatch \"a$\" \"a\\n\"}} {{regexMatch \"(?m)a$\" \"a\\n\"}} {{regexMatch \"^\\\\d+$\" \"\u{661}\u{662}\"}} {{regexMatch \"^\\\\w$\" \"é\"}}",
     "false true false false"),
    // Hashes (FIPS 180 and RFC 1321 test vectors).
    ("{{sha256sum \"abc\"}}", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    ("{{sha256sum \"\"}}", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ("{{sha1sum \"abc\"}}", "a9993e364706816aba3e25717850c26c9cd0d89d"),
    ("{{md5sum \"abc\"}} {{md5sum \"\"}}", "900150983cd24fb0d6963f7d28e17f72 d41d8cd98f00b204e9800998ecf8427e"),
    // Collections.
    ("{{$d := dict \"name\" \"web\" \"port\" 80}}{{$d.name}}:{{$d.port}} {{len $d}}", "web:80 2"),
    ("{{$d := dict \"a\" 1 2 \"x\" \"odd\"}}{{index $d \"2\"}} [{{index $d \"odd\"}}]", "x []"),
    ("{{list 1 \"a\" true}} {{len (list)}}", "[1 a true] 0"),
    ("{{append (list 1 2) 3}}", "[1 2 3]"),
    ("{{$l := list}}{{range seq 1 3}}{{$l = append $l .}}{{end}}{{$l}}", "[1 2 3]"),
    ("{{hasKey (dict \"a\" 1) \"a\"}} {{hasKey (dict \"a\" 1) \"b\"}}", "true false"),
    ("{{keys (dict \"b\" 1 \"a\" 2) (dict \"c\" 3)}}", "[a b c]"),
    ("{{values (dict \"b\" 1 \"a\" 2)}}", "[2 1]"),
    ("{{uniq (list 1 2 1 \"1\" 2 \"a\" \"a\")}}", "[1 2 1 a]"),
    ("{{sortAlpha (list \"b\" \"B\" \"a\" 10 2)}} {{sortAlpha \"x\"}}", "[10 2 B a b] [x]"),
    // Strings.
    ("[{{trim \"  x y \\n\"}}]", "[x y]"),
    ("{{trimPrefix \"v\" \"v1.2\"}} {{trimPrefix \"x\" \"v1.2\"}} {{\"v2\" | trimPrefix \"v\"}}", "1.2 v1.2 2"),
    ("{{hasPrefix \"web\" \"web-1\"}} {{hasSuffix \".conf\" \"a.conf\"}} {{hasSuffix \"x\" \"\"}}", "true true false"),
    ("{{title \"hello wide-world_x élan 1st\"}}", "Hello Wide-World_x Élan 1st"),
    ("{{quote \"a\" 1 nil \"b\\\"c\"}} {{squote \"a\" 1}}", "\"a\" \"1\" \"b\\\"c\" 'a' '1'"),
    ("{{quote \"é\\n\"}}", "\"é\\n\""),
    ("x:{{\"a: 1\\nb: 2\" | nindent 2}}", "x:\n  a: 1\n  b: 2"),
    // Logic and conversion.
    ("{{ternary \"yes\" \"no\" true}} {{ternary \"yes\" \"no\" (eq 1 2)}}", "yes no"),
    ("{{coalesce \"\" 0 nil \"x\" \"y\"}} {{coalesce \"\" 0}}", "x <no value>"),
    ("{{empty \"\"}} {{empty 0}} {{empty (list)}} {{empty \"0\"}} {{empty (dict \"a\" 1)}}", "true true true false false"),
    ("{{required \"need a port\" \"80\"}} {{required \"m\" 0}}", "80 0"),
    ("{{toInt \"42\"}} {{toInt \"0x1F\"}} {{toInt \"017\"}} {{toInt \"1_000\"}} {{toInt \"8.00\"}} {{toInt \"-9\"}}", "42 31 15 0 8 -9"),
    ("{{toInt \"0b1_01\"}} {{toInt \"abc\"}} {{toInt 3.9}} {{toInt -3.9}} {{toInt true}} {{toInt nil}}", "5 0 3 -3 1 0"),
    ("{{toInt \"9223372036854775807\"}} {{toInt \"-9223372036854775808\"}} {{toInt \"9223372036854775808\"}}",
     "9223372036854775807 -9223372036854775808 0"),
    ("{{toString 42}} {{toString 1.5}} {{toString true}} {{toString nil}} {{toString (list 1 2)}}", "42 1.5 true <nil> [1 2]"),
    ("{{max 1 5 3}} {{min 4 -2 9}} {{max \"7\" 2}} {{min 3}}", "5 -2 7 3"),
    ("{{sub 5 3}} {{mul 3 4}} {{div 7 2}} {{mod 7 2}}", "2 12 3 1"),
    // URLs.
    ("{{$u := urlParse \"https://user:pw@db.example.com:5432/app%20db?sslmode=require#frag\"}}{{$u.scheme}}|{{$u.host}}|{{$u.hostname}}|{{$u.path}}|{{$u.query}}|{{$u.fragment}}|{{$u.userinfo}}|{{$u.opaque}}",
     "https|db.example.com:5432|db.example.com|/app db|sslmode=require|frag|user:pw|"),
    ("{{$u := urlParse \"mailto:ops@example.com\"}}{{$u.scheme}}|{{$u.opaque}}|{{$u.path}}", "mailto|ops@example.com|"),
    ("{{$u := urlParse \"http://[::1]:8080/x\"}}{{$u.host}}|{{$u.hostname}}", "[::1]:8080|::1"),
    ("{{$u := urlParse \"/just/a/path?q=1\"}}{{$u.scheme}}|{{$u.host}}|{{$u.path}}|{{$u.query}}", "||/just/a/path|q=1"),
    // Base64 aliases.
    ("{{b64enc \"Value\"}} {{b64dec \"VmFsdWU=\"}}", "VmFsdWU= Value"),
  ])
  func function(template: String, expected: String) throws {
    #expect(try render(template, options: lenient) == expected)
  }

  @Test func requiredFailsTheRenderWithTheMessage() {
    let error = renderError("a\n{{required \"etcd key /db/url must be set\" (getv \"/db/url\" \"\")}}")
    #expect(error?.code == .function)
    #expect(error?.message == "error calling required: etcd key /db/url must be set")
    #expect(error?.location?.line == 2)
    #expect(renderError("{{required \"m\" nil}}")?.message == "error calling required: m")
  }

  @Test(arguments: [
    ("{{regexMatch \"(\" \"x\"}}", "error calling regexMatch: error parsing regexp"),
    ("{{urlParse \":foo\"}}", "missing protocol scheme"),
    ("{{urlParse \"a:b/c\" | printf \"%v\"}}{{urlParse \"x/%zz\"}}", "invalid URL escape \"%zz\""),
    ("{{urlParse \"a b:c\"}}", "first path segment in URL cannot contain colon"),
    ("{{append \"x\" 1}}", "Cannot push on type string"),
    ("{{hasKey (list) \"a\"}}", "expected map[string]interface {}; got []interface {}"),
    ("{{ternary 1 2 \"true\"}}", "expected bool; got string"),
    ("{{uniq 1}}", "Cannot find uniq on type int"),
    ("{{max}}", "wrong number of args for max: want at least 1 got 0"),
  ])
  func errors(template: String, message: String) {
    let error = renderError(template)
    #expect(error?.message.contains(message) == true, "\(String(describing: error))")
  }

  @Test func appendIsBounded() {
    // Each append copies the list; a loop of appends is quadratic, so lists stop at 10,000.
    let error = renderError("{{$l := list}}{{range seq 1 20000}}{{$l = append $l .}}{{end}}")
    #expect(error?.code == .limitExceeded)
    #expect((try? render("{{$l := list}}{{range seq 1 10000}}{{$l = append $l .}}{{end}}{{len $l}}")) == "10000")
  }

  @Test func growingStringFunctionsAreBounded() {
    let small = RenderOptions(maxOutputSize: 1_000)
    let values = ["/s": String(repeating: "a", count: 600)]
    #expect(renderError("{{regexReplaceAll \"a\" (getv \"/s\") \"bb\"}}", values, options: small)?.code == .limitExceeded)
    #expect(renderError("{{quote (getv \"/s\") (getv \"/s\")}}", values, options: small)?.code == .limitExceeded)
    #expect(renderError("{{nindent 1000 \"x\"}}", options: small)?.code == .limitExceeded)
    #expect(renderError("{{nindent 1000001 \"x\"}}")?.code == .function)
  }

  @Test func hashesReadTheValueBytes() throws {
    // A value that is not UTF-8 is hashed as its bytes (Go's string is bytes too); the
    // digests of FF FE come from Python's hashlib.
    let template = try Template(name: "t", text: "{{md5sum (getv \"/b\")}} {{getv \"/b\" | sha256sum}}")
    let output = try template.renderString(data: DictionaryDataSource(["/b": [0xFF, 0xFE]]))
    #expect(output == "f3b25701fe362ec84616a93a45ce9998 b3d510ef04275ca8e698e5b3cbb0ece3949ef9252f0cdc839e9ee347409a2209")
  }

  @Test func hostnameAndFileExists() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sprig-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    FileManager.default.createFile(atPath: directory + "/present", contents: Data())
    try FileManager.default.createSymbolicLink(atPath: directory + "/dangling", withDestinationPath: directory + "/nothing")
    let text = "{{fileExists .d}} {{fileExists (printf \"%s/present\" .d)}} {{fileExists (printf \"%s/missing\" .d)}} "
      + "{{fileExists (printf \"%s/dangling\" .d)}} {{fileExists (printf \"%s/present/x\" .d)}}"
    #expect(try render(text, dot: ["d": .string(directory)]) == "true true false false false")
    var buffer = [CChar](repeating: 0, count: 256)
    #expect(gethostname(&buffer, 255) == 0)
    let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    #expect(!name.isEmpty)
    #expect(try render("{{hostname}}") == name)
  }

  @Test func customDelimitersLeaveBracesAlone() throws {
    let delimiters = try TemplateDelimiters(left: "[[", right: "]]")
    let text = "image: {{ .Values.image }}\n[[- /* comment */ -]]\nurl: [[ getv \"/db/url\" | quote ]]\n[[ if true ]]x[[ end ]]"
    let template = try Template(name: "helm.tmpl", text: text, delimiters: delimiters)
    let output = try template.renderString(data: DictionaryDataSource(strings: ["/db/url": "pg://db"]))
    #expect(output == "image: {{ .Values.image }}url: \"pg://db\"\nx")
    // The closing delimiter is what ends an action: "}}" inside one is no longer special.
    let error = #expect(throws: TemplateError.self) { try Template(name: "t", text: "[[ getv \"/a\" }}", delimiters: delimiters) }
    #expect(error?.message.contains("unclosed action") == true || error?.message.contains("unrecognized character") == true)
    #expect(throws: TemplateError.self) { try TemplateDelimiters(left: "", right: "]]") }
  }

  @Test func loaderUsesTheDelimitersForIncludesToo() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("delims-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    try "<<template \"part.tmpl\" .>>{{keep}}".write(toFile: directory + "/main.tmpl", atomically: false, encoding: .utf8)
    try "<<.>>".write(toFile: directory + "/part.tmpl", atomically: false, encoding: .utf8)
    var loader = try TemplateLoader(directory: directory)
    loader.delimiters = try TemplateDelimiters(left: "<<", right: ">>")
    let template = try loader.load("main.tmpl")
    #expect(try template.renderString(data: DictionaryDataSource(strings: [:]), dot: .string("v")) == "v{{keep}}")
  }
}
