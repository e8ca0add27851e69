/// sprig's regexMatch, regexFind and regexReplaceAll, on Swift's `Regex` with Unicode-scalar
/// semantics (Go matches runes, not grapheme clusters).
///
/// Patterns are compiled at each call. Go's RE2 syntax reads the same here for what both
/// have (classes, `(?i)`, `(?P<name>…)`, ASCII `\d`/`\s`/`\w`, `[[:alpha:]]`, `^`/`$`, lazy
/// `*?`). Swift's engine backtracks, so ``RegexGuard`` first refuses what RE2 refuses (back
/// references, look-around), the nested and ambiguous repetitions that take exponential time
/// on hostile data (`(a+)+$`), and over-long patterns and subjects.
/// A pattern that does not compile fails the render (sprig's `regexMatch` returns false).
enum RegexFunctions {
  static func call(_ function: Builtin, _ a: [TemplateValue], maxSize: Int) throws(FunctionFailure) -> TemplateValue {
    let pattern = try string(a[0])
    try RegexGuard.check(pattern: pattern)
    let regex = try compile(pattern)
    let text = try string(a[1])
    try RegexGuard.check(subject: text)
    switch function {
    case .regexMatch:
      return .bool(text.firstMatch(of: regex) != nil)
    case .regexFind:
      return .string(text.firstMatch(of: regex).map { String(text[$0.range]) } ?? "")
    case .regexReplaceAll:
      return .string(try replaceAll(text, regex, template: try string(a[2]), maxSize: maxSize))
    default:
      preconditionFailure("not a regex function: \(function)")
    }
  }

  private static func compile(_ pattern: String) throws(FunctionFailure) -> Regex<AnyRegexOutput> {
    do {
      // Go's \d, \s, \w and \b are ASCII-only; Swift's are Unicode unless told.
      return try Regex(pattern).matchingSemantics(.unicodeScalar).asciiOnlyDigits().asciiOnlyWhitespace()
        .asciiOnlyWordCharacters()
    } catch {
      throw .call("error parsing regexp: \(error)")
    }
  }

  /// Go's `Regexp.ReplaceAllString`: every match replaced by `template` with `$1`, `${1}`,
  /// `$name`, `${name}` expanded and `$$` as `$`; an empty match right after a previous match
  /// is skipped, as Go does.
  static func replaceAll(_ text: String, _ regex: Regex<AnyRegexOutput>, template: String, maxSize: Int)
    throws(FunctionFailure) -> String
  {
    var out: [UInt8] = []
    var copied = text.startIndex
    var previousEnd: String.Index?
    for match in text.matches(of: regex) {
      if match.range.isEmpty, match.range.lowerBound == previousEnd { continue }
      out += text[copied..<match.range.lowerBound].utf8
      expand(template, match.output, into: &out)
      copied = match.range.upperBound
      previousEnd = match.range.upperBound
      guard out.count <= maxSize else { throw .tooLarge(limit: maxSize) }
    }
    out += text[copied...].utf8
    guard out.count <= maxSize else { throw .tooLarge(limit: maxSize) }
    return String(decoding: out, as: UTF8.self)
  }

  /// Go's `Regexp.Expand` for one match.
  private static func expand(_ template: String, _ output: AnyRegexOutput, into out: inout [UInt8]) {
    let bytes = Array(template.utf8)
    var index = 0
    while index < bytes.count {
      guard bytes[index] == UInt8(ascii: "$") else {
        out.append(bytes[index])
        index += 1
        continue
      }
      if index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "$") {
        out.append(UInt8(ascii: "$"))
        index += 2
        continue
      }
      guard let (name, end) = reference(bytes, at: index) else {
        out.append(UInt8(ascii: "$"))
        index += 1
        continue
      }
      index = end
      if name.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
        // Go reads at most 8 digits as a number; longer ones name nothing.
        guard name.count <= 8, let number = Int(String(decoding: name, as: UTF8.self)), number < output.count else { continue }
        if let captured = output[number].substring { out += captured.utf8 }
      } else if let captured = output[String(decoding: name, as: UTF8.self)]?.substring {
        out += captured.utf8
      }
    }
  }

  /// `$name` or `${name}` at `start`: the name's bytes and the index after it; nil when
  /// malformed (Go then copies the `$`).
  private static func reference(_ bytes: [UInt8], at start: Int) -> ([UInt8], Int)? {
    var index = start + 1
    let braced = index < bytes.count && bytes[index] == UInt8(ascii: "{")
    if braced { index += 1 }
    let nameStart = index
    while index < bytes.count, isNameByte(bytes[index]) { index += 1 }
    guard index > nameStart else { return nil }
    let name = Array(bytes[nameStart..<index])
    if braced {
      guard index < bytes.count, bytes[index] == UInt8(ascii: "}") else { return nil }
      index += 1
    }
    return (name, index)
  }

  /// Letters, digits and `_`; bytes of non-ASCII characters count as letters (Go's
  /// `unicode.IsLetter`, mostly).
  private static func isNameByte(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
      UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), 0x80...0xFF:
      true
    default: false
    }
  }
}
