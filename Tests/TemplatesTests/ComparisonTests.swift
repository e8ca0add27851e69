import Templates
import Testing

/// eq, ne, lt, le, gt, ge and the logic functions, with Go's typing rules.
@Suite struct ComparisonTests {
  @Test(arguments: [
    ("{{eq 1 1}} {{eq 1 2}} {{eq 1 2 3 1}}", "true false true"),
    ("{{eq \"a\" \"b\" \"a\"}} {{ne \"a\" \"b\"}} {{ne 1 1}}", "true true false"),
    ("{{lt 1 2}} {{le 2 2}} {{gt 2 1}} {{ge 1 2}}", "true true true false"),
    ("{{lt \"a\" \"b\"}} {{gt \"b\" \"a\"}} {{lt \"B\" \"a\"}}", "true true true"),
    ("{{lt 1.5 2.5}} {{ge 1.5 1.5}}", "true true"),
    ("{{eq true true}} {{eq true false}}", "true false"),
    ("{{eq (getv \"/k\") \"v\"}}", "true"),
    ("{{eq (get \"/k\") (get \"/k\")}}", "true"),
  ])
  func comparisons(template: String, expected: String) throws {
    #expect(try render(template, ["/k": "v"]) == expected)
  }

  @Test(arguments: [
    ("{{eq 1 \"1\"}}", "error calling eq: incompatible types for comparison"),
    ("{{lt 1 1.5}}", "error calling lt: incompatible types for comparison"),
    ("{{eq 1.0 1}}", "error calling eq: incompatible types for comparison"),
    ("{{lt true false}}", "error calling lt: invalid type for comparison"),
    ("{{gt (split \"a\" \",\") 1}}", "error calling gt: invalid type for comparison"),
    ("{{eq (split \"a\" \",\") (split \"a\" \",\")}}", "error calling eq: non-comparable type [a]: []string"),
    ("{{eq 1}}", "error calling eq: missing argument for comparison"),
    ("{{lt 1}}", "wrong number of args for lt: want 2 got 1"),
  ])
  func incompatibleTypesAreErrors(template: String, message: String) {
    let error = renderError(template)
    #expect(error?.message == message)
  }

  @Test(arguments: [
    // and/or return the deciding operand, not a bool, and stop evaluating there.
    ("{{and 1 0 \"x\"}}", "0"),
    ("{{and 1 2}}", "2"),
    ("{{or 0 \"\" \"x\" \"y\"}}", "x"),
    ("{{or 0 \"\"}}", ""),
    ("{{or \"x\" (getv \"/missing\")}}", "x"),
    ("{{and \"\" (getv \"/missing\")}}", ""),
    ("{{\"piped\" | or \"\"}}", "piped"),
    ("{{not 0}} {{not \"a\"}} {{not (and 1 \"\")}}", "true false true"),
  ])
  func logic(template: String, expected: String) throws {
    #expect(try render(template) == expected)
  }
}
