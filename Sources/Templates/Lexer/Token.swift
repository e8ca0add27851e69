/// One lexical item of a template; its text is `source[start..<end]`.
struct Token: Equatable {
  enum Kind: Equatable {
    case text  // literal text between actions, already trimmed
    case leftDelim  // {{ or {{-
    case rightDelim  // }} or -}}
    case space
    case identifier  // function name
    case keyword(Keyword)
    case bool
    case field  // .Name
    case variable  // $ or $name
    case dot  // .
    case string  // "quoted"
    case rawString  // `raw`
    case char  // 'c'
    case number
    case pipe  // |
    case leftParen
    case rightParen
    case declare  // :=
    case assign  // =
    case comma
    case eof
  }

  var kind: Kind
  var start: Int
  var end: Int
}

/// The words that `{{` ... `}}` treats as keywords.
enum Keyword: String {
  case block, `break`, `continue`, define, `else`, end, `if`, `nil`, range, template, with
}
