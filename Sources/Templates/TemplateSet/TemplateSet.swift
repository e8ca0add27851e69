/// The named trees a template can reach: its file, its definitions, and included files.
struct TemplateSet: Sendable {
  private(set) var trees: [String: Tree] = [:]

  /// Adds the trees of one parsed file. A name defined twice is an error unless one of the
  /// two bodies is empty, in which case the non-empty one wins (Go's rule), or one is a
  /// `{{block}}` default, which the `{{define}}` replaces.
  mutating func add(_ file: ParsedFile) throws(TemplateError) {
    for tree in file.trees {
      if let existing = trees[tree.name] {
        if tree.isEmpty || (tree.isBlockDefault && !existing.isBlockDefault) { continue }
        if !existing.isEmpty && !(existing.isBlockDefault && !tree.isBlockDefault) {
          throw TemplateError(
            code: .syntax, message: "template: multiple definition of template \"\(tree.name)\"",
            location: tree.source.location(of: 0))
        }
      }
      trees[tree.name] = tree
    }
  }

  /// Names called with `{{template}}` that no tree defines.
  func unresolved(_ calls: Set<String>) -> Set<String> {
    calls.filter { trees[$0] == nil }
  }
}
