/// Splits template source into tokens, following Go's text/template lexer: `{{`/`}}`
/// delimiters, `{{- ` and ` -}}` trim markers, `{{/* comments */}}`, and the items inside
/// actions. Actions may span lines.
struct Lexer {
  private let source: SourceText
  private let bytes: [UInt8]
  private let left: [UInt8]
  private let right: [UInt8]
  private var position = 0
  private var tokens: [Token] = []

  init(source: SourceText, delimiters: TemplateDelimiters = .standard) {
    self.source = source
    self.bytes = source.bytes
    self.left = Array(delimiters.left.utf8)
    self.right = Array(delimiters.right.utf8)
  }

  /// Lexes the whole source, ending with an `.eof` token.
  static func tokenize(_ source: SourceText, delimiters: TemplateDelimiters = .standard) throws(TemplateError) -> [Token] {
    var lexer = Lexer(source: source, delimiters: delimiters)
    try lexer.run()
    return lexer.tokens
  }

  private mutating func run() throws(TemplateError) {
    var trimLeading = false
    while position <= bytes.count {
      let open = find(left, from: position) ?? bytes.count
      var textStart = position
      var textEnd = open
      if trimLeading {
        while textStart < textEnd, isSpace(bytes[textStart]) { textStart += 1 }
      }
      if open < bytes.count, hasLeftTrimMarker(open + left.count) {
        while textEnd > textStart, isSpace(bytes[textEnd - 1]) { textEnd -= 1 }
      }
      if textEnd > textStart { tokens.append(Token(kind: .text, start: textStart, end: textEnd)) }
      if open == bytes.count { break }
      trimLeading = try lexAction(at: open)
    }
    tokens.append(Token(kind: .eof, start: bytes.count, end: bytes.count))
  }

  /// Lexes one action or comment starting at `{{`; returns whether it ended with ` -}}`.
  private mutating func lexAction(at open: Int) throws(TemplateError) -> Bool {
    var p = open + left.count
    if hasLeftTrimMarker(p) { p += 2 }
    if startsWith(Array("/*".utf8), at: p) {
      return try lexComment(open: open, from: p)
    }
    tokens.append(Token(kind: .leftDelim, start: open, end: p))
    position = p
    var parenDepth = 0
    while true {
      if let (length, trims) = rightDelimiter(at: position) {
        if parenDepth > 0 { throw source.error(.syntax, "unclosed left paren", at: position) }
        tokens.append(Token(kind: .rightDelim, start: position, end: position + length))
        position += length
        return trims
      }
      guard position < bytes.count else {
        throw source.error(.syntax, "unclosed action", at: open)
      }
      try lexInsideAction(parenDepth: &parenDepth)
    }
  }

  private mutating func lexComment(open: Int, from p: Int) throws(TemplateError) -> Bool {
    guard let close = find(Array("*/".utf8), from: p + 2) else {
      throw source.error(.syntax, "unclosed comment", at: open)
    }
    let after = close + 2
    guard let (length, trims) = rightDelimiter(at: after) else {
      throw source.error(.syntax, "comment ends before closing delimiter", at: open)
    }
    position = after + length
    return trims
  }

  private mutating func lexInsideAction(parenDepth: inout Int) throws(TemplateError) {
    let start = position
    let c = bytes[position]
    func emit(_ kind: Token.Kind, _ length: Int) {
      tokens.append(Token(kind: kind, start: start, end: start + length))
      position = start + length
    }
    switch c {
    case _ where isSpace(c):
      var p = position
      while p < bytes.count, isSpace(bytes[p]), rightDelimiter(at: p) == nil { p += 1 }
      emit(.space, p - start)
    case UInt8(ascii: "="): emit(.assign, 1)
    case UInt8(ascii: ":"):
      guard startsWith(Array(":=".utf8), at: position) else {
        throw source.error(.syntax, "expected :=", at: start)
      }
      emit(.declare, 2)
    case UInt8(ascii: "|"): emit(.pipe, 1)
    case UInt8(ascii: ","): emit(.comma, 1)
    case UInt8(ascii: "("):
      parenDepth += 1
      emit(.leftParen, 1)
    case UInt8(ascii: ")"):
      parenDepth -= 1
      if parenDepth < 0 { throw source.error(.syntax, "unexpected right paren", at: start) }
      emit(.rightParen, 1)
    case UInt8(ascii: "\""): emit(.string, try quotedLength(quote: c, what: "quoted string"))
    case UInt8(ascii: "'"): emit(.char, try quotedLength(quote: c, what: "character constant"))
    case UInt8(ascii: "`"):
      guard let close = find([UInt8(ascii: "`")], from: position + 1) else {
        throw source.error(.syntax, "unterminated raw quoted string", at: start)
      }
      emit(.rawString, close + 1 - start)
    case UInt8(ascii: "$"):
      let length = 1 + alphanumericRun(from: position + 1)
      try checkTerminator(at: start + length)
      emit(.variable, length)
    case UInt8(ascii: "."):
      if position + 1 < bytes.count, isDigit(bytes[position + 1]) {
        emit(.number, try numberLength())
      } else {
        let run = alphanumericRun(from: position + 1)
        try checkTerminator(at: start + 1 + run)
        emit(run == 0 ? .dot : .field, 1 + run)
      }
    case UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
      emit(.number, try numberLength())
    case _ where isAlphanumeric(c):
      let length = alphanumericRun(from: position)
      try checkTerminator(at: start + length)
      let word = String(decoding: bytes[start..<(start + length)], as: UTF8.self)
      if word == "true" || word == "false" {
        emit(.bool, length)
      } else if let keyword = Keyword(rawValue: word) {
        emit(.keyword(keyword), length)
      } else {
        emit(.identifier, length)
      }
    default:
      let scalar = decodeScalar(at: position)
      throw source.error(
        .syntax, "unrecognized character in action: \(describe(scalar))", at: start)
    }
  }

  // MARK: - Scanning helpers

  private func rightDelimiter(at p: Int) -> (length: Int, trims: Bool)? {
    if p + 2 + right.count <= bytes.count, isSpace(bytes[p]), bytes[p + 1] == UInt8(ascii: "-"),
      startsWith(right, at: p + 2)
    {
      return (2 + right.count, true)
    }
    if startsWith(right, at: p) { return (right.count, false) }
    return nil
  }

  private func hasLeftTrimMarker(_ p: Int) -> Bool {
    p + 1 < bytes.count && bytes[p] == UInt8(ascii: "-") && isSpace(bytes[p + 1])
  }

  private func checkTerminator(at p: Int) throws(TemplateError) {
    guard p < bytes.count else { return }
    let c = bytes[p]
    if isSpace(c) || rightDelimiter(at: p) != nil { return }
    switch c {
    case UInt8(ascii: "."), UInt8(ascii: ","), UInt8(ascii: "|"), UInt8(ascii: ":"),
      UInt8(ascii: ")"), UInt8(ascii: "("):
      return
    default:
      throw source.error(.syntax, "bad character \(describe(decodeScalar(at: p)))", at: p)
    }
  }

  private func quotedLength(quote: UInt8, what: String) throws(TemplateError) -> Int {
    var p = position + 1
    while p < bytes.count {
      let c = bytes[p]
      if c == UInt8(ascii: "\\") {
        p += 1
        if p >= bytes.count || bytes[p] == UInt8(ascii: "\n") { break }
      } else if c == UInt8(ascii: "\n") {
        break
      } else if c == quote {
        return p + 1 - position
      }
      p += 1
    }
    throw source.error(.syntax, "unterminated \(what)", at: position)
  }

  /// Go's number scanner: sign, base prefix, digits with `_`, fraction, exponent, `i`.
  private func numberLength() throws(TemplateError) -> Int {
    var p = position
    func accept(_ set: String) -> Bool {
      if p < bytes.count, set.utf8.contains(bytes[p]) {
        p += 1
        return true
      }
      return false
    }
    func acceptRun(_ set: String) { while accept(set) {} }
    _ = accept("+-")
    var digits = "0123456789_"
    var exponent = "eE"
    if accept("0") {
      if accept("xX") {
        digits = "0123456789abcdefABCDEF_"
        exponent = "pP"
      } else if accept("oO") {
        digits = "01234567_"
      } else if accept("bB") {
        digits = "01_"
      }
    }
    acceptRun(digits)
    if accept(".") { acceptRun(digits) }
    if accept(exponent) {
      _ = accept("+-")
      acceptRun("0123456789_")
    }
    _ = accept("i")
    if p < bytes.count, isAlphanumeric(bytes[p]) {
      let text = String(decoding: bytes[position...p], as: UTF8.self)
      throw source.error(.syntax, "bad number syntax: \"\(text)\"", at: position)
    }
    return p - position
  }

  private func alphanumericRun(from p: Int) -> Int {
    var q = p
    while q < bytes.count, isAlphanumeric(bytes[q]) { q += 1 }
    return q - p
  }

  private func find(_ needle: [UInt8], from start: Int) -> Int? {
    let n = needle.count
    let first = needle[0]
    var p = start
    while p + n <= bytes.count {
      if bytes[p] == first, startsWith(needle, at: p) { return p }
      p += 1
    }
    return nil
  }

  private func startsWith(_ needle: [UInt8], at p: Int) -> Bool {
    let n = needle.count
    guard p >= 0, p + n <= bytes.count else { return false }
    for i in 0..<n where bytes[p + i] != needle[i] { return false }
    return true
  }

  private func decodeScalar(at p: Int) -> Unicode.Scalar? {
    var iterator = bytes[p...].makeIterator()
    var decoder = UTF8()
    if case .scalarValue(let scalar) = decoder.decode(&iterator) { return scalar }
    return nil
  }

  private func describe(_ scalar: Unicode.Scalar?) -> String {
    guard let scalar else { return "U+FFFD" }
    let hex = String(scalar.value, radix: 16, uppercase: true)
    let code = "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    return scalar.properties.isWhitespace || scalar.value < 0x20 ? code : "\(code) '\(scalar)'"
  }
}

@inline(__always) func isSpace(_ c: UInt8) -> Bool {
  c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") || c == UInt8(ascii: "\r")
    || c == UInt8(ascii: "\n")
}

@inline(__always) func isDigit(_ c: UInt8) -> Bool {
  c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")
}

/// Letters, digits and `_`; bytes of non-ASCII characters count as letters, as Go's
/// `unicode.IsLetter` mostly would.
@inline(__always) func isAlphanumeric(_ c: UInt8) -> Bool {
  (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
    || isDigit(c) || c == UInt8(ascii: "_") || c >= 0x80
}
