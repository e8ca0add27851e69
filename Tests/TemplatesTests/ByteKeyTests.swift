import Templates
import Testing

/// etcd keys are bytes: a precomposed `é` (C3 A9) and `e` + combining acute (65 CC 81) are
/// two keys, though Swift's `String` calls them equal. Every store function sees both.
@Suite struct ByteKeyTests {
  static let pre = "\u{E9}"
  static let de = "e\u{301}"
  /// Twins under `/p` (leaves) and `/q` (directories), and a name that starts with a
  /// combining mark (which Swift's graphemes glue to the `/` before it).
  static let data = DictionaryDataSource(stringPairs: [
    ("/p/\(pre)", "precomposed"), ("/p/\(de)", "decomposed"),
    ("/q/\(pre)/x", "1"), ("/q/\(de)/y", "2"),
    ("/r/\u{301}", "mark"),
  ])

  func render(_ text: String, options: RenderOptions = RenderOptions()) throws -> String {
    try Template(name: "t", text: text).renderString(data: Self.data, options: options)
  }

  /// The sprig functions of issue 14 and `eq` keep canonical twins apart, as Go does (strings
  /// are bytes there): `uniq` keeps both, `sortAlpha` and `keys` sort by bytes (e, 0x65, before
  /// C3), `dict` holds two entries, `hasKey` finds only the exact key, `eq` and `ne` compare bytes.
  @Test func sprigFunctionsKeepCanonicalTwinsApart() throws {
    // \(Self.de) sorts first: its first byte is 0x65, the other's 0xC3.
    let hosts = "{{range uniq (ls \"/p\")}}[{{.}}]{{end}}"
    #expect(try render(hosts) == "[\(Self.de)][\(Self.pre)]")
    #expect(try render("{{len (uniq (list \"\(Self.pre)\" \"\(Self.de)\" \"\(Self.pre)\"))}}") == "2")
    #expect(try render("{{range sortAlpha (list \"\(Self.pre)\" \"f\" \"\(Self.de)\")}}[{{.}}]{{end}}")
      == "[\(Self.de)][f][\(Self.pre)]")
    let twins = "dict \"\(Self.pre)\" 1 \"\(Self.de)\" 2"
    #expect(try render("{{len (\(twins))}} {{range keys (\(twins))}}[{{.}}]{{end}} {{values (\(twins))}}")
      == "2 [\(Self.de)][\(Self.pre)] [2 1]")
    #expect(try render("{{hasKey (dict \"\(Self.pre)\" 1) \"\(Self.de)\"}} {{hasKey (dict \"\(Self.pre)\" 1) \"\(Self.pre)\"}}")
      == "false true")
    #expect(try render("{{eq \"\(Self.pre)\" \"\(Self.de)\"}} {{ne \"\(Self.pre)\" \"\(Self.de)\"}} {{lt \"\(Self.de)\" \"\(Self.pre)\"}}")
      == "false true true")
    #expect(try render("{{hasPrefix \"e\" \"\(Self.de)\"}} {{hasPrefix \"e\" \"\(Self.pre)\"}} {{hasSuffix \"\(Self.pre)\" \"/\(Self.de)\"}}")
      == "true false false")
    // The value type itself: Hashable and == by bytes.
    #expect(TemplateValue.string(Self.pre) != TemplateValue.string(Self.de))
    #expect(Set<TemplateValue>([.string(Self.pre), .string(Self.de)]).count == 2)
  }

  @Test func theSourceKeepsBothKeys() {
    #expect(Self.data.count == 5)
    #expect(Self.data.value(forKey: "/p/\(Self.pre)") == Array("precomposed".utf8))
    #expect(Self.data.value(forKey: "/p/\(Self.de)") == Array("decomposed".utf8))
    // Byte order: 0x65 (e) before 0xC3.
    #expect(Self.data.keys(withPrefix: "/p/").map { Array($0.utf8) }
      == [Array("/p/\(Self.de)".utf8), Array("/p/\(Self.pre)".utf8)])
    // The last of two byte-equal keys wins.
    let twice = DictionaryDataSource(stringPairs: [("/a", "1"), ("/a", "2")])
    #expect(twice.count == 1 && twice.value(forKey: "/a") == Array("2".utf8))
  }

  @Test func getvExistsAndGetReadTheirOwnKey() throws {
    #expect(try render("{{getv \"/p/\(Self.pre)\"}} {{getv \"/p/\(Self.de)\"}}") == "precomposed decomposed")
    #expect(try render("{{exists \"/p/\(Self.pre)\"}} {{exists \"/p/\(Self.de)\"}} {{exists \"/p/e\"}}") == "true true false")
    #expect(try render("{{(get \"/p/\(Self.de)\").Value}}") == "decomposed")
    let prefixed = RenderOptions(keyPrefix: "/p")
    #expect(try render("{{getv \"\(Self.pre)\"}} {{getv \"/\(Self.de)\"}}", options: prefixed) == "precomposed decomposed")
    // A key that starts with a combining mark still gets its `/` (hasPrefix saw "/\u{301}").
    #expect(try render("{{getv \"/\u{301}\"}}", options: RenderOptions(keyPrefix: "/r")) == "mark")
    #expect(try render("{{getv \"/\u{301}\"}}", options: RenderOptions(keyPrefix: "/r/")) == "mark")
  }

  @Test func getsAndGetvsListBoth() throws {
    let keys = try render("{{range gets \"/p/*\"}}{{.Key}}={{.Value}};{{end}}")
    #expect(Array(keys.utf8) == Array("/p/\(Self.de)=decomposed;/p/\(Self.pre)=precomposed;".utf8))
    #expect(try render("{{getvs \"/p/*\"}}") == "[decomposed precomposed]")
    #expect(try render("{{len (gets \"/q/*/*\")}}") == "2")
    // Two pairs with canonically equal keys and equal values are still different pairs.
    let same = DictionaryDataSource(stringPairs: [("/\(Self.pre)", "v"), ("/\(Self.de)", "v")])
    let eq = try Template(name: "t", text: "{{eq (get \"/\(Self.pre)\") (get \"/\(Self.de)\")}}")
    #expect(try eq.renderString(data: same) == "false")
  }

  @Test func lsAndLsdirListBoth() throws {
    let ls = try render("{{range ls \"/p\"}}<{{.}}>{{end}}")
    #expect(Array(ls.utf8) == Array("<\(Self.de)><\(Self.pre)>".utf8))
    let lsdir = try render("{{range lsdir \"/q\"}}<{{.}}>{{end}}")
    #expect(Array(lsdir.utf8) == Array("<\(Self.de)><\(Self.pre)>".utf8))
    #expect(try render("{{len (ls \"/p/\")}} {{len (lsdir \"/q/\")}} {{len (ls \"/q/\(Self.pre)\")}}") == "2 2 1")
    // The leaf itself: ls names it by its base, cut at the byte `/`.
    #expect(Array(try render("{{ls \"/r/\u{301}\"}}").utf8) == Array("[\u{301}]".utf8))
  }

  @Test func pathFunctionsCutAtSlashBytes() throws {
    #expect(Array(try render("{{base \"/r/\u{301}\"}}|{{dir \"/r/\u{301}\"}}").utf8) == Array("\u{301}|/r".utf8))
    #expect(Array(try render("{{base \"a/\u{301}/\"}}|{{dir \"a/\u{301}/b\"}}").utf8) == Array("\u{301}|a/\u{301}".utf8))
  }

  @Test func mapsKeepBothKeys() throws {
    #expect(try render("{{len (map \"\(Self.pre)\" 1 \"\(Self.de)\" 2)}}") == "2")
    #expect(try render("{{$m := map \"\(Self.pre)\" 1 \"\(Self.de)\" 2}}{{index $m \"\(Self.de)\"}}{{index $m \"\(Self.pre)\"}}")
      == "21")
    // JSON objects: Go's map[string]interface{} keys are bytes too.
    #expect(try render("{{len (json \"{\\\"\\\\u00e9\\\":1,\\\"e\\\\u0301\\\":2}\")}}") == "2")
    let json = try render("{{toJSON (map \"\(Self.pre)\" 1 \"\(Self.de)\" 2)}}")
    #expect(Array(json.utf8) == Array("{\"\(Self.de)\":2,\"\(Self.pre)\":1}".utf8))
    let value: TemplateValue = [Self.pre: 1, Self.de: 2]
    guard case .map(let map) = value else { Issue.record("not a map"); return }
    #expect(map.count == 2)
  }

  @Test func valuesCompareAsBytes() throws {
    #expect(TemplateValue.string(Self.pre) != TemplateValue.string(Self.de))
    #expect(Set<TemplateValue>([.string(Self.pre), .string(Self.de)]).count == 2)
    #expect(KVPair(key: Self.pre, value: "v") != KVPair(key: Self.de, value: "v"))
    #expect(try render("{{eq \"\(Self.pre)\" \"\(Self.de)\"}}") == "false")
    // replace compares old and new by bytes: é for e + acute is a real replacement.
    let replaced = try render("{{replace \"x\(Self.de)\" \"\(Self.de)\" \"\(Self.pre)\" -1}}")
    #expect(Array(replaced.utf8) == Array("x\(Self.pre)".utf8))
  }

  @Test func yamlQuotesByBytes() throws {
    // ": " followed by a combining mark is still a mapping indicator to a YAML reader.
    let yaml = try render("{{toYAML \"a: \u{301}b\"}}")
    #expect(Array(yaml.utf8) == Array("'a: \u{301}b'".utf8))
  }
}
