import Templates
import Testing

/// printf, print and println against Go's fmt rules (verbs, flags, width, precision and
/// the `%!verb(type=value)` forms for mistakes).
@Suite struct PrintfTests {
  @Test(arguments: [
    ("{{printf \"%s|%v\" \"x\" \"y\"}}", "x|y"),
    ("{{printf \"%d|%v\" 42 42}}", "42|42"),
    ("{{printf \"%5d|%-5d|%05d\" 42 42 42}}", "   42|42   |00042"),
    ("{{printf \"%+d|% d|%03d\" 5 5 -5}}", "+5| 5|-05"),
    ("{{printf \"%.3d|%6.3d\" 7 7}}", "007|   007"),
    ("{{printf \"%x %X %o %O %b\" 255 255 8 8 5}}", "ff FF 10 0o10 101"),
    ("{{printf \"%#x %#o %#b\" 255 8 5}}", "0xff 010 0b101"),
    ("{{printf \"%c|%q|%U|%#U\" 65 65 65 233}}", "A|'A'|U+0041|U+00E9 'é'"),
    ("{{printf \"%q\" \"a\\\"b\\n\"}}", "\"a\\\"b\\n\""),
    ("{{printf \"%+q|%#q\" \"é\" \"raw\"}}", "\"\\u00e9\"|`raw`"),
    ("{{printf \"%x|%X|% x|%#x\" \"hi\" \"hi\" \"hi\" \"hi\"}}", "6869|6869|68 69|0x6869"),
    ("{{printf \"%5s|%-5s|%.2s|%5.1s|\" \"ab\" \"ab\" \"abcdef\" \"xyz\"}}", "   ab|ab   |ab|    x|"),
    ("{{printf \"%t|%v\" true false}}", "true|false"),
    ("{{printf \"%f|%.2f|%8.3f|%-8.2f|\" 3.14159 3.14159 3.14159 2.5}}", "3.141590|3.14|   3.142|2.50    |"),
    ("{{printf \"%6.2f|%+.1f|%08.3f\" -1.5 2.25 -3.5}}", " -1.50|+2.2|-003.500"),
    ("{{printf \"%e|%E|%.2e|%+.1e\" 1234.5678 1234.5678 1234.5678 12345.0}}", "1.234568e+03|1.234568E+03|1.23e+03|+1.2e+04"),
    ("{{printf \"%g|%g|%g|%.3g|%G\" 1234.5678 0.00001 1e21 1234.5678 1e-7}}", "1234.5678|1e-05|1e+21|1.23e+03|1E-07"),
    ("{{printf \"%v|%v|%v|%v\" 1e6 100000.0 123456789.0 0.5}}", "1e+06|100000|1.23456789e+08|0.5"),
    ("{{printf \"%%|%5%|%d%%\" 50}}", "%|%|50%"),
    ("{{printf \"%*d|%-*d|%.*f\" 5 42 4 7 1 3.14159}}", "   42|7   |3.1"),
    ("{{printf \"%[2]s %[1]s\" \"a\" \"b\"}}", "b a"),
  ])
  func verbs(template: String, expected: String) throws {
    #expect(try render(template) == expected)
  }

  @Test(arguments: [
    // Mistakes print in place, as Go's fmt does, instead of failing the render.
    ("{{printf \"%d\" \"x\"}}", "%!d(string=x)"),
    ("{{printf \"%s\" 5}}", "%!s(int=5)"),
    ("{{printf \"%d\" 1.5}}", "%!d(float64=1.5)"),
    ("{{printf \"%d %d\" 1}}", "1 %!d(MISSING)"),
    ("{{printf \"%d\" 1 2}}", "1%!(EXTRA int=2)"),
    ("{{printf \"%s\" nil}}", "%!s(<nil>)"),
    ("{{printf \"%v\" nil}}", "<nil>"),
    ("{{printf \"%z\" 1}}", "%!z(int=1)"),
    ("{{printf \"abc%\"}}", "abc%!(NOVERB)"),
  ])
  func badVerbs(template: String, expected: String) throws {
    #expect(try render(template) == expected)
  }

  @Test func compositeValues() throws {
    #expect(try render("{{printf \"%s\" (split \"a,b\" \",\")}}") == "[a b]")
    #expect(try render("{{printf \"%q\" (split \"a,b\" \",\")}}") == "[\"a\" \"b\"]")
    #expect(try render("{{printf \"%d\" (split \"a\" \",\")}}") == "[%!d(string=a)]")
    #expect(try render("{{printf \"%v\" (map \"b\" 2 \"a\" 1)}}") == "map[a:1 b:2]")
    #expect(try render("{{printf \"%v|%+v\" (get \"/k\") (get \"/k\")}}", ["/k": "v"]) == "{/k v}|{Key:/k Value:v}")
    #expect(try render("{{printf \"%T %T %T %T\" 1 \"s\" 1.5 (split \"a\" \",\")}}") == "int string float64 []string")
  }

  @Test func valuesFromTheStoreAreStrings() throws {
    #expect(try render("{{printf \"%s=%q (%d bytes)\" \"k\" (getv \"/k\") (len (getv \"/k\"))}}", ["/k": "v1"])
      == "k=\"v1\" (2 bytes)")
  }

  @Test(arguments: [
    // print adds a space between operands when neither is a string.
    ("{{print \"a\" \"b\"}}", "ab"),
    ("{{print 1 2}}", "1 2"),
    ("{{print \"a\" 1 2 \"b\"}}", "a1 2b"),
    ("{{print 1.5 true nil}}", "1.5 true <nil>"),
    // println always separates and ends with a newline.
    ("{{println \"a\" 1 \"b\"}}", "a 1 b\n"),
    ("{{println}}", "\n"),
  ])
  func printAndPrintln(template: String, expected: String) throws {
    #expect(try render(template) == expected)
  }
}
