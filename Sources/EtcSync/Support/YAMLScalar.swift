import Yams

/// How etcsync writes a string as a YAML scalar that reads back as the same string: the
/// style decision of the `yaml` format (``FormatRenderer``) and of `etcsync import confd`,
/// with Yams' emitter doing the quoting.
enum YAMLScalar {
  /// Plain where a YAML 1.1 reader takes the plain form for the same string, else
  /// double-quoted (literal for text with line breaks).
  ///
  /// The plain form is resolved the way a YAML 1.1 reader does (Yams' default resolver:
  /// bool, int, float, null, timestamp, the merge key `<<` and the value key `=`). The scalar
  /// must be built with the plain style for that: with the default style (`.any`), Yams'
  /// `null` and friends answer nil, so `null`, `2001-12-14` and `<<` were written bare and read
  /// back as null, a date and a merge. `y` and `n` are YAML 1.1 booleans (Go's yaml.v2 reads
  /// them so) that the resolver lacks.
  static func style(_ s: String) -> Yams.Node.Scalar.Style {
    if s.contains("\n") { return .literal }
    let resolved = Resolver.default.resolveTag(of: Yams.Node.scalar(.init(s, Tag(.implicit), .plain)))
    return resolved == .str && !["y", "Y", "n", "N"].contains(s)
      && !s.isEmpty && s.first.map { !"-?:,[]{}#&*!|>'\"%@`~ ".contains($0) } == true
      && !s.contains(": ") && !s.contains(" #") && s.last != " "
      ? .plain : .doubleQuoted
  }

  /// A string as a node in ``style(_:)``, on one line (double-quoted instead of literal).
  static func node(_ s: String, oneLine: Bool = false) -> Yams.Node {
    let style = Self.style(s)
    return .scalar(.init(s, Tag(.str), oneLine && style == .literal ? .doubleQuoted : style))
  }

  /// `node` as YAML text on one line, without the final line break: a scalar, or a flow
  /// list of scalars. Yams' emitter quotes what its context does not allow plain (a `,` in
  /// a flow list item). Nil for a string with a NUL byte, which the emitter cannot carry.
  static func inline(_ node: Yams.Node) -> String? {
    let strings = node.scalar.map { [$0.string] } ?? node.sequence?.compactMap(\.string) ?? []
    guard !strings.contains(where: { $0.utf8.contains(0) }) else { return nil }
    guard let text = try? Yams.serialize(node: node, width: -1, allowUnicode: true) else { return nil }
    return String(text.dropLast())
  }
}
