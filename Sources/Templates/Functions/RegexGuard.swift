/// What the regex functions refuse before a pattern reaches Swift's backtracking `Regex`, so
/// that a pattern or a value from etcd cannot hold a render (and a thread of the cooperative
/// pool) for exponential time.
///
/// - Syntax RE2 refuses: back references (`\1`…`\9`, `\k<…>`, `\g…`), look-around (`(?=`,
///   `(?!`, `(?<=`, `(?<!`), atomic groups (`(?>`), possessive quantifiers (`*+`, `++`, `?+`,
///   `}+`) and any other `(?…` group than `(?:`, `(?P<name>`, `(?<name>` and the flags
///   `i`, `m`, `s`, `U`.
/// - Nested repetition: a repeated group (`*`, `+`, or `{n,m}` with m > 1) that itself holds
///   an unbounded quantifier (`*`, `+`, `{n,}`), such as `(a+)+`, `(a*)*`, `(\w+\s?)*`.
/// - Ambiguous alternation under repetition: a repeated group whose branches can start with the
///   same character, or one of which can match nothing, such as `(a|a)*` or `(a|ab)+`
///   (`(foo|bar)*` is fine). Classes are read conservatively: a branch starting with `.`, a
///   negated class or a Unicode escape may start with anything.
/// - A repeated group holding optional or counted parts whose ways to split a text multiply
///   past 2^20: `(ab?)*`, `(a{1,30}){1,30}` (`(?:[0-9]{1,3}\.){3}` is fine: 3^3 ways).
/// - Size: patterns longer than ``maxPattern`` bytes and subjects longer than ``maxSubject``
///   bytes fail with ``TemplateError/Code/limitExceeded``.
///
/// This removes the exponential cases; it does not make matching linear. Several unbounded
/// quantifiers in a row over overlapping characters (`.*.*.*x`) still cost a power of the
/// subject's length, which ``maxSubject`` keeps finite.
enum RegexGuard {
  /// The longest pattern accepted, in bytes.
  static let maxPattern = 1024
  /// The longest text a pattern is matched against, in bytes.
  static let maxSubject = 64 * 1024
  /// log2 of the most ways a repeated group's optional and counted parts may split a text.
  static let maxVariability = 20

  /// Fails unless `pattern` is accepted (see ``RegexGuard``).
  static func check(pattern: String) throws(FunctionFailure) {
    guard pattern.utf8.count <= maxPattern else {
      throw .call(
        "error parsing regexp: the pattern is \(pattern.utf8.count) bytes, more than the limit of \(maxPattern)",
        code: .limitExceeded)
    }
    var parser = Scanner(Array(pattern.unicodeScalars))
    _ = try parser.alternation(depth: 0)
    if parser.index < parser.scalars.count {
      // An unmatched ")": let Swift's parser report it.
      return
    }
  }

  /// Fails if `text` is longer than ``maxSubject``.
  static func check(subject text: String) throws(FunctionFailure) {
    guard text.utf8.count <= maxSubject else {
      throw .call(
        "the text to match is \(text.utf8.count) bytes, more than the limit of \(maxSubject)", code: .limitExceeded)
    }
  }

  /// The characters a piece can start with: ASCII by code, `other` for anything else.
  struct FirstSet {
    var ascii: (UInt64, UInt64) = (0, 0)
    var other = false

    static let all = FirstSet(ascii: (~0, ~0), other: true)

    mutating func insert(_ scalar: Unicode.Scalar) {
      guard scalar.isASCII else { other = true; return }
      let v = Int(scalar.value)
      // Case-insensitive matching may be on: take both cases.
      for c in Set([v, Int(Character(scalar).lowercased().unicodeScalars.first!.value),
        Int(Character(scalar).uppercased().unicodeScalars.first!.value)]) where c < 128
      {
        if c < 64 { ascii.0 |= 1 << UInt64(c) } else { ascii.1 |= 1 << UInt64(c - 64) }
      }
    }

    mutating func insert(_ range: ClosedRange<UInt32>) {
      if range.upperBound >= 128 { other = true }
      guard range.lowerBound < 128 else { return }
      for v in range.lowerBound...min(range.upperBound, 127) { insert(Unicode.Scalar(v)!) }
    }

    mutating func formUnion(_ other: FirstSet) {
      ascii.0 |= other.ascii.0
      ascii.1 |= other.ascii.1
      self.other = self.other || other.other
    }

    func overlaps(_ other: FirstSet) -> Bool {
      ascii.0 & other.ascii.0 != 0 || ascii.1 & other.ascii.1 != 0 || (self.other && other.other)
    }
  }

  /// What the scanner learns about a piece of pattern.
  struct Shape {
    /// The piece can match the empty string.
    var nullable = true
    /// The piece holds a `*`, `+` or `{n,}`.
    var unbounded = false
    /// About log2 of how many ways its bounded variable quantifiers (`?`, `{1,3}`) can split a text.
    var variability = 0.0
    var first = FirstSet()
  }

  private struct Scanner {
    let scalars: [Unicode.Scalar]
    var index = 0

    init(_ scalars: [Unicode.Scalar]) { self.scalars = scalars }

    var peek: Unicode.Scalar? { index < scalars.count ? scalars[index] : nil }

    func refuse(_ what: String) -> FunctionFailure {
      .call("error parsing regexp: \(what) is not supported (RE2 syntax only)")
    }

    /// Branches separated by `|`, up to `)` or the end. Returns the shape and whether the
    /// branches are ambiguous (two can start alike, or one can be empty).
    mutating func alternation(depth: Int) throws(FunctionFailure) -> (Shape, ambiguous: Bool) {
      guard depth < 100 else { throw .call("error parsing regexp: nesting too deep", code: .limitExceeded) }
      var branches: [Shape] = [try sequence(depth: depth)]
      while peek == "|" {
        index += 1
        branches.append(try sequence(depth: depth))
      }
      var shape = Shape(nullable: false)
      var ambiguous = false
      for (i, branch) in branches.enumerated() {
        shape.nullable = shape.nullable || branch.nullable
        shape.unbounded = shape.unbounded || branch.unbounded
        shape.variability = max(shape.variability, branch.variability)
        if branches.count > 1 {
          if branch.nullable { ambiguous = true }
          for other in branches[..<i] where other.first.overlaps(branch.first) { ambiguous = true }
        }
        shape.first.formUnion(branch.first)
      }
      return (shape, ambiguous)
    }

    /// Items up to `|`, `)` or the end.
    mutating func sequence(depth: Int) throws(FunctionFailure) -> Shape {
      var shape = Shape()
      while let c = peek, c != "|", c != ")" {
        let item = try self.item(depth: depth)
        if shape.nullable { shape.first.formUnion(item.first) }
        shape.nullable = shape.nullable && item.nullable
        shape.unbounded = shape.unbounded || item.unbounded
        shape.variability += item.variability
      }
      return shape
    }

    /// One atom and its quantifier.
    mutating func item(depth: Int) throws(FunctionFailure) -> Shape {
      var atom = Shape(nullable: false)
      var ambiguous = false
      var isGroup = false
      let c = scalars[index]
      index += 1
      switch c {
      case "(":
        isGroup = true
        try groupPrefix()
        if peek == ")" && index > 0 && scalars[index - 1] != "(" {
          // A flag group such as (?i): zero width.
          index += 1
          return Shape()
        }
        (atom, ambiguous) = try alternation(depth: depth + 1)
        guard peek == ")" else { return atom }  // Unclosed: Swift reports it.
        index += 1
      case "[":
        atom.first = characterClass()
      case "\\":
        guard let e = peek else { return atom }
        index += 1
        switch e {
        case "1"..."9": throw refuse("a back reference \\\(e)")
        case "k", "g": throw refuse("a back reference \\\(e)")
        case "b", "B", "A", "z", "Z", "G": return Shape()
        case "Q":
          var literal = Shape()
          while index < scalars.count {
            if scalars[index] == "\\", index + 1 < scalars.count, scalars[index + 1] == "E" { index += 2; break }
            if literal.nullable { literal.first.insert(scalars[index]); literal.nullable = false }
            index += 1
          }
          atom = literal
        case "d": atom.first.insert(48...57)
        case "w": atom.first.insert(48...57); atom.first.insert(65...90); atom.first.insert(97...122); atom.first.insert(95...95)
        case "s": atom.first.insert(9...13); atom.first.insert(32...32)
        case "t", "n", "r", "f", "v", "a", "e":
          atom.first.insert(1...31)
        case "p", "P", "x", "D", "W", "S", "N", "X", "C", "R", "h", "H", "o", "u", "U", "c":
          atom.first = .all
        default: atom.first.insert(e)
        }
      case ".": atom.first = .all
      case "^", "$": return Shape()
      default: atom.first.insert(c)
      }
      guard let (minimum, maximum) = try quantifier() else {
        return atom
      }
      let unbounded = maximum == nil
      let repeats = maximum.map { $0 > 1 } ?? true
      if repeats && isGroup {
        if atom.unbounded {
          throw .call("error parsing regexp: a repeated group that itself holds an unbounded quantifier (such as (a+)+ or (a*)*) is refused: it can take exponential time on a backtracking engine")
        }
        if ambiguous {
          throw .call("error parsing regexp: a repeated group whose alternatives can start alike or be empty (such as (a|a)* or (a|ab)+) is refused: it can take exponential time on a backtracking engine")
        }
      }
      if repeats && isGroup && atom.variability > 0
        && (maximum.map { Double($0) * atom.variability > Double(maxVariability) } ?? true)
      {
        throw .call("error parsing regexp: a group repeated \(maximum.map { "up to \($0) times" } ?? "without bound") that holds optional or counted parts (such as (ab?)* or (a{1,30}){1,30}) is refused: it can take exponential time on a backtracking engine")
      }
      if repeats && atom.nullable && unbounded {
        throw .call("error parsing regexp: an unbounded quantifier over something that can match nothing (such as (a?)*) is refused: it can take exponential time on a backtracking engine")
      }
      atom.nullable = atom.nullable || minimum == 0
      atom.unbounded = atom.unbounded || unbounded
      if let maximum {
        atom.variability = atom.variability * Double(maximum) + Double(Int.bitWidth - max(maximum - minimum, 0).leadingZeroBitCount)
      }
      return atom
    }

    /// After `(`: checks and skips `?:`, `?P<name>`, `?<name>` and flags; refuses the rest.
    mutating func groupPrefix() throws(FunctionFailure) {
      guard peek == "?" else { return }
      index += 1
      guard let c = peek else { return }
      switch c {
      case ":": index += 1
      case "=", "!": throw refuse("look-ahead (?\(c)")
      case ">": throw refuse("an atomic group (?>")
      case "P", "<":
        if c == "P" { index += 1 }
        guard peek == "<" else { throw refuse("the group (?\(c)") }
        index += 1
        if peek == "=" || peek == "!" { throw refuse("look-behind (?<\(peek!)") }
        while let n = peek, n != ">" { index += 1 }
        index += 1
      default:
        while let f = peek, "imsU-".unicodeScalars.contains(f) { index += 1 }
        switch peek {
        case ":": index += 1
        case ")": break
        default: throw refuse("the group (?\(String(String.UnicodeScalarView(scalars[(index - 1)..<min(index + 1, scalars.count)]))))")
        }
      }
    }

    /// A bracketed class after `[`, up to its `]`.
    mutating func characterClass() -> FirstSet {
      var set = FirstSet()
      if peek == "^" { index += 1; set = .all }
      var first = true
      var previous: Unicode.Scalar?
      while let c = peek, c != "]" || first {
        first = false
        index += 1
        if c == "[", peek == ":" {  // [:alpha:]: anything ASCII, conservatively.
          while let n = peek, n != "]" { index += 1 }
          index += 1
          set.insert(0...127)
          previous = nil
          continue
        }
        if c == "\\", let e = peek {
          index += 1
          switch e {
          case "d": set.insert(48...57)
          case "w", "s", "D", "W", "S", "p", "P", "x": set = .all
          default: set.insert(e)
          }
          previous = nil
          continue
        }
        if c == "-", let low = previous, let high = peek, high != "]" {
          index += 1
          if low.value <= high.value { set.insert(low.value...high.value) }
          previous = nil
          continue
        }
        set.insert(c)
        previous = c
      }
      if peek == "]" { index += 1 }
      return set
    }

    /// A quantifier at the index, if any: its minimum and maximum (nil when unbounded).
    mutating func quantifier() throws(FunctionFailure) -> (Int, Int?)? {
      guard let c = peek else { return nil }
      var result: (Int, Int?)
      switch c {
      case "*": result = (0, nil); index += 1
      case "+": result = (1, nil); index += 1
      case "?": result = (0, 1); index += 1
      case "{":
        var end = index + 1
        var numbers: [String] = [""]
        while end < scalars.count, scalars[end] != "}" {
          let s = scalars[end]
          if s == "," && numbers.count == 1 { numbers.append("") } else if ("0"..."9").contains(s) {
            numbers[numbers.count - 1].unicodeScalars.append(s)
          } else { return nil }
          end += 1
        }
        guard end < scalars.count, let low = Int(numbers[0]) else { return nil }
        if numbers.count == 1 {
          result = (low, low)
        } else if numbers[1].isEmpty {
          result = (low, nil)
        } else {
          guard let high = Int(numbers[1]) else { return nil }
          result = (low, high)
        }
        index = end + 1
      default: return nil
      }
      if peek == "+" { throw refuse("a possessive quantifier \(c == "{" ? "}" : String(c))+") }
      if peek == "?" { index += 1 }
      return result
    }
  }
}
