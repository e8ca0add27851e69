/// Turns a confd `check_cmd` or `reload_cmd`, a string confd runs with `/bin/sh -c`, into an
/// etcsync argv.
///
/// A string without shell syntax (no quotes, `$`, redirections, pipes, globs, `;`, `&`, no
/// `NAME=value` before the program, …) is split at blanks. Any other string runs through `sh -c` as in confd, and each `{{.src}}` in it
/// becomes the positional parameter `$1` with `{{.src}}` passed after the script, so the
/// staged file's path never becomes shell text.
enum ConfdCommandLine {
  /// The argv, and whether a shell was needed.
  struct Converted: Equatable {
    var argv: [String]
    var usesShell: Bool
  }

  /// The argv for `command`; `placeholders` is true for `check_cmd`, which confd renders as a
  /// template with `.src`, and false for `reload_cmd`, which confd runs as written.
  static func convert(_ command: String, placeholders: Bool) -> Converted {
    let pieces = placeholders ? self.cut(command) : [.text(command)]
    let text = pieces.map { piece -> String in
      if case .text(let text) = piece { return text }
      return ""
    }.joined()
    if !text.unicodeScalars.contains(where: { self.shellSyntax.contains($0) }) {
      if let words = self.words(pieces) { return Converted(argv: words, usesShell: false) }
    }
    var script = ""
    var quote: Character? = nil
    var usesSource = false
    for piece in pieces {
      switch piece {
      case .text(let text):
        var escaped = false
        for character in text {
          script.append(character)
          if escaped { escaped = false; continue }
          switch (quote, character) {
          case (nil, "\\"), ("\"", "\\"): escaped = true
          case (nil, "'"), (nil, "\""): quote = character
          case ("'", "'"), ("\"", "\""): quote = nil
          default: break
          }
        }
      case .source:
        usesSource = true
        switch quote {
        case "'": script += "'\"$1\"'"
        case "\"": script += "$1"
        default: script += "\"$1\""
        }
      }
    }
    let argv = usesSource ? ["sh", "-c", script, "sh", "{{.src}}"] : ["sh", "-c", script]
    return Converted(argv: argv, usesShell: true)
  }

  /// Characters with a meaning to `sh` outside quotes (blanks separate words and are not here).
  private static let shellSyntax = Set("|&;<>()$`\\\"'*?[]#~{}\n\r".unicodeScalars)

  private enum Piece: Equatable {
    case text(String)
    case source
  }

  /// `command` cut at each `{{.src}}` (spaces inside the braces allowed).
  private static func cut(_ command: String) -> [Piece] {
    var pieces: [Piece] = []
    var rest = Substring(command)
    while let open = rest.firstRange(of: "{{") {
      guard let close = rest[open.upperBound...].firstRange(of: "}}") else { break }
      let inside = rest[open.upperBound..<close.lowerBound].trimmingBlanks()
      if inside == ".src" {
        pieces.append(.text(String(rest[..<open.lowerBound])))
        pieces.append(.source)
      } else {
        pieces.append(.text(String(rest[..<close.upperBound])))
      }
      rest = rest[close.upperBound...]
    }
    pieces.append(.text(String(rest)))
    return pieces.filter { $0 != .text("") }
  }

  /// The blank-separated words, a placeholder joined to the text around it (`-c{{.src}}`).
  private static func words(_ pieces: [Piece]) -> [String]? {
    var words: [String] = []
    var word: String? = nil
    for piece in pieces {
      switch piece {
      case .source:
        word = (word ?? "") + "{{.src}}"
      case .text(let text):
        for character in text {
          if character == " " || character == "\t" {
            if let done = word { words.append(done) }
            word = nil
          } else {
            word = (word ?? "") + String(character)
          }
        }
      }
    }
    if let done = word { words.append(done) }
    // `NAME=value program` sets a variable for the program: only a shell does that.
    if words.isEmpty || words[0].contains("=") { return nil }
    return words
  }
}

extension Substring {
  fileprivate func trimmingBlanks() -> Substring {
    var text = self
    while text.first == " " || text.first == "\t" { text = text.dropFirst() }
    while text.last == " " || text.last == "\t" { text = text.dropLast() }
    return text
  }
}
