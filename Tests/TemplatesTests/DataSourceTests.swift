import Templates
import Testing

/// The data-source protocol, the in-memory source, and the key prefix.
@Suite struct DataSourceTests {
  /// A source that records what the engine asks for, to prove it reads by prefix.
  struct CountingSource: TemplateDataSource {
    let inner: DictionaryDataSource
    let visits: Counter

    final class Counter: @unchecked Sendable {
      var prefixes: [String] = []
      var entries = 0
    }

    func value(forKey key: String) -> [UInt8]? { inner.value(forKey: key) }

    func forEachEntry(withPrefix prefix: String, _ body: (String, [UInt8]) -> Bool) {
      visits.prefixes.append(prefix)
      inner.forEachEntry(withPrefix: prefix) { key, value in
        visits.entries += 1
        return body(key, value)
      }
    }
  }

  @Test func dictionarySourceOrdersKeysByBytes() {
    let source = DictionaryDataSource(strings: ["/b": "2", "/a/z": "3", "/a": "1", "/a-b": "4", "/é": "5", "/B": "6"])
    #expect(source.keys(withPrefix: "") == ["/B", "/a", "/a-b", "/a/z", "/b", "/é"])
    #expect(source.keys(withPrefix: "/a") == ["/a", "/a-b", "/a/z"])
    #expect(source.keys(withPrefix: "/a/") == ["/a/z"])
    #expect(source.keys(withPrefix: "/c").isEmpty)
    #expect(source.value(forKey: "/é") == Array("5".utf8))
    #expect(source.value(forKey: "/zz") == nil)
    #expect(source.count == 6)
    var seen: [String] = []
    source.forEachEntry(withPrefix: "/") { key, _ in
      seen.append(key)
      return seen.count < 2
    }
    #expect(seen == ["/B", "/a"])
  }

  @Test func globsReadOnlyTheLiteralPrefix() throws {
    var entries: [String: String] = ["/other/x": "o"]
    for i in 0..<50 { entries["/svc/web/n\(i)"] = "v\(i)" }
    let counter = CountingSource.Counter()
    let source = CountingSource(inner: DictionaryDataSource(strings: entries), visits: counter)
    let template = try Template(name: "t", text: "{{len (gets \"/svc/web/n1*\")}}")
    #expect(try template.renderString(data: source) == "11")
    #expect(counter.prefixes == ["/svc/web/n1"])
    #expect(counter.entries == 11)
  }

  @Test func keyPrefixIsAddedAndRemoved() throws {
    let values = ["/app/db/host": "h", "/app/db/port": "5432", "/apple/db/host": "wrong", "/app/x": "1"]
    for prefix in ["/app", "/app/"] {
      let options = RenderOptions(keyPrefix: prefix)
      #expect(try render("{{getv \"/db/host\"}} {{getv \"db/port\"}}", values, options: options) == "h 5432")
      #expect(try render("{{range gets \"/db/*\"}}{{.Key}}={{.Value}} {{end}}", values, options: options)
        == "/db/host=h /db/port=5432 ")
      #expect(try render("{{ls \"/\"}} {{lsdir \"/\"}} {{ls \"/db\"}}", values, options: options) == "[db x] [db] [host port]")
      #expect(try render("{{exists \"/db/host\"}} {{exists \"/app/db/host\"}}", values, options: options) == "true false")
    }
  }

  @Test func keysWithoutLeadingSlash() throws {
    // etcd keys need not start with "/"; without a prefix they are read as written.
    let values = ["services/web/a": "1", "services/web/b": "2"]
    #expect(try render("{{ls \"services/web\"}} {{len (gets \"services/web/*\")}} {{getv \"services/web/a\"}}", values)
      == "[a b] 2 1")
  }

  @Test func bytesAreRenderedAsTheyAre() throws {
    let bytes: [UInt8] = [0x61, 0xFF, 0x62]  // not valid UTF-8
    let template = try Template(name: "t", text: "[{{getv \"/b\"}}]")
    #expect(try template.render(data: DictionaryDataSource(["/b": bytes])) == Array("[".utf8) + bytes + Array("]".utf8))
  }

  @Test func renderIntoReusesTheBuffer() throws {
    let template = try Template(name: "t", text: "{{getv \"/a\"}}")
    var buffer = Array("prefix:".utf8)
    try template.render(into: &buffer, data: DictionaryDataSource(strings: ["/a": "1"]))
    #expect(String(decoding: buffer, as: UTF8.self) == "prefix:1")
  }

  @Test func lsSortsNamesThatKeyOrderDoesNotKeepSorted() throws {
    // Byte order puts "/a/b-x/1" before "/a/b/1" ('-' < '/'), and the leaf "/a/b" first:
    // the child names still come out sorted and unique.
    let values = ["/a/b": "leaf", "/a/b-x/1": "1", "/a/b/1": "2", "/a/c": "3"]
    #expect(try render("{{ls \"/a\"}} {{lsdir \"/a\"}}", values) == "[b b-x c] [b b-x]")
  }

  @Test func globSyntax() throws {
    let values = ["/g/a*b": "1", "/g/axb": "2", "/g/é": "3", "/g/z": "4", "/g/sub/x": "5"]
    // A `\*` in the pattern is a literal star; `?` and classes match one character, never `/`.
    // Results follow key order, which is byte order: "/g/z" (0x7A) before "/g/é" (0xC3 0xA9).
    #expect(try render("{{range gets \"/g/a\\\\*b\"}}{{.Value}}{{end}}", values) == "1")
    #expect(try render("{{range gets \"/g/?\"}}{{.Value}}{{end}}", values) == "43")
    #expect(try render("{{range gets \"/g/[^a-y]\"}}{{.Value}}{{end}}", values) == "43")
    #expect(try render("{{range gets \"/g/*/*\"}}{{.Value}}{{end}}", values) == "5")
    #expect(try render("{{range gets \"/g/a*\"}}{{.Value}}{{end}}", values) == "12")
  }
}
