import Templates
import Testing

/// len, index, slice, html, js, urlquery.
@Suite struct GoBuiltinTests {
  @Test(arguments: [
    ("{{len \"abc\"}} {{len \"é\"}} {{len (split \"a,b,c\" \",\")}} {{len (map \"a\" 1)}}", "3 2 3 1"),
    ("{{index (split \"a,b,c\" \",\") 1}}", "b"),
    ("{{index (jsonArray \"[[1,2],[3,4]]\") 1 0}}", "3"),
    ("{{index (map \"k\" \"v\") \"k\"}}", "v"),
    // index on a missing map key yields the zero value (nil), even with missingkey=error.
    ("{{index (map \"k\" \"v\") \"other\"}}", "<no value>"),
    ("{{index \"abc\" 0}}", "97"),
    ("{{slice \"abcdef\" 1 3}} {{slice \"abcdef\" 4}} {{slice \"abc\"}}", "bc ef abc"),
    ("{{slice (split \"a,b,c\" \",\") 1}}", "[b c]"),
    ("{{html \"<a href=\\\"x\\\">&'\"}}", "&lt;a href=&#34;x&#34;&gt;&amp;&#39;"),
    ("{{js \"it's <b>\"}}", "it\\'s \\u003Cb\\u003E"),
    ("{{urlquery \"a b&c=d/é\"}}", "a+b%26c%3Dd%2F%C3%A9"),
  ])
  func builtins(template: String, expected: String) throws {
    #expect(try render(template) == expected)
  }

  @Test(arguments: [
    ("{{len 3}}", "error calling len: len of type int"),
    ("{{index (split \"a\" \",\") 5}}", "error calling index: index out of range: 5"),
    ("{{index nil 1}}", "error calling index: index of untyped nil"),
    ("{{slice \"abc\" 2 1}}", "error calling slice: invalid slice index: 2 > 1"),
    ("{{not}}", "wrong number of args for not: want 1 got 0"),
    ("{{\"a\" \"b\"}}", "can't give argument to non-function \"a\""),
    ("{{split 1 \",\"}}", "wrong type for value; expected string; got int"),
  ])
  func errors(template: String, message: String) {
    #expect(renderError(template)?.message == message)
  }
}
