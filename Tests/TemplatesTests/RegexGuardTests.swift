import Templates
import Testing

/// The regex functions refuse what would let a pattern or a value from etcd hold a render for
/// exponential time on Swift's backtracking engine (see docs/templates.md).
@Suite struct RegexGuardTests {
  /// 30 `a`s then `b`: `^(a+)+$` backtracks through 2^30 ways of splitting the `a`s.
  static let hostile = String(repeating: "a", count: 30) + "b"

  @Test func nestedQuantifierFromTemplateIsRefused() throws {
    let error = try #require(renderError("{{regexMatch \"^(a+)+$\" (getv \"/x\")}}", ["/x": Self.hostile]))
    #expect(error.code == .function)
    #expect(error.message.contains("refused"))
  }

  @Test func nestedQuantifierFromEtcdIsRefused() throws {
    let error = try #require(
      renderError("{{regexReplaceAll (getv \"/pattern\") (getv \"/x\") \"\"}}", ["/pattern": "(a*)*$", "/x": Self.hostile]))
    #expect(error.message.contains("refused"))
  }

  @Test(arguments: [
    "(a+)+", "(a*)*", "(a|a)*", "(a|ab)+", "(a?)*", "(\\w+\\s?)*x", "((ab)*c)+", "(?:a+){2,}", "(x+x+)+y",
    "(.|a)*", "([a-z]+)*", "(a|)+", "(?i:(A|a)+)", "^(a{1,30}){1,30}$", "(ab?)*c", "((a?){5}){20}",
  ])
  func exponentialShapesAreRefused(pattern: String) throws {
    let error = try #require(renderError("{{regexMatch (getv \"/p\") \"x\"}}", ["/p": pattern]))
    #expect(error.message.contains("exponential time"), "\(pattern): \(error.message)")
  }

  @Test(arguments: [
    ("(a)\\1", "back reference"), ("\\k<n>", "back reference"), ("a(?=b)", "look-ahead"),
    ("a(?!b)", "look-ahead"), ("(?<=a)b", "look-behind"), ("(?<!a)b", "look-behind"),
    ("(?>a+)b", "atomic group"), ("a*+b", "possessive"), ("a++b", "possessive"), ("a{2,}+", "possessive"),
    ("(?x) a", "the group"),
  ])
  func syntaxRE2RefusesIsRefused(pattern: String, what: String) throws {
    let error = try #require(renderError("{{regexMatch (getv \"/p\") \"ab\"}}", ["/p": pattern]))
    #expect(error.code == .function)
    #expect(error.message.contains(what), "\(pattern): \(error.message)")
    #expect(error.message.contains("RE2 syntax only"))
  }

  @Test func longPatternIsALimit() throws {
    let pattern = String(repeating: "a", count: 1025)
    let error = try #require(renderError("{{regexMatch (getv \"/p\") \"a\"}}", ["/p": pattern]))
    #expect(error.code == .limitExceeded)
    #expect(try render("{{regexMatch (getv \"/p\") (getv \"/p\")}}", ["/p": String(pattern.dropLast())]) == "true")
  }

  @Test func longSubjectIsALimit() throws {
    let text = String(repeating: "a", count: 64 * 1024 + 1)
    for function in ["regexMatch", "regexFind"] {
      let error = try #require(renderError("{{\(function) \"b\" (getv \"/x\")}}", ["/x": text]))
      #expect(error.code == .limitExceeded)
    }
    let replace = try #require(renderError("{{regexReplaceAll \"b\" (getv \"/x\") \"\"}}", ["/x": text]))
    #expect(replace.code == .limitExceeded)
    #expect(try render("{{regexMatch \"a$\" (getv \"/x\")}}", ["/x": String(text.dropLast())]) == "true")
  }

  @Test(arguments: [
    ("^[a-z]+-[0-9]+$", "web-12", "true"), ("(foo|bar)*baz", "foobarbaz", "true"), ("^(ab){2}$", "abab", "true"),
    ("^a{2,5}$", "aaa", "true"), ("^(?i)web(-[0-9]+)?$", "WEB-3", "true"), ("(?P<n>a)b", "xab", "true"),
    ("^(?:[0-9]{1,3}\\.){3}[0-9]{1,3}$", "10.0.0.1", "true"), ("^[^/]+/(x|y)$", "a/y", "true"),
    ("(a|b|c)+d", "abcabd", "true"), ("^\\s*#", "  # c", "true"), ("[[:alpha:]]+", "1", "false"),
    ("(?m)^x$", "a\nx", "true"), ("^(?:[0-9]{1,3}\\.){3}[0-9]{1,3}(:[0-9]{1,5})?$", "10.0.0.1:80", "true"), ("\\Q(a+)+\\E", "(a+)+", "true"), ("a{", "a{", "true"),
  ])
  func ordinaryPatternsWork(pattern: String, text: String, expected: String) throws {
    #expect(try render("{{regexMatch (getv \"/p\") (getv \"/x\")}}", ["/p": pattern, "/x": text]) == expected)
  }
}
