extension AgentConfiguration {
  /// Things that load but that the operator should change, one sentence each naming the
  /// field: `etcsync check` prints them, and the agent logs them at start. Today: a
  /// `{{.NAME}}` placeholder inside a shell's `-c` script, where the shell would interpret the
  /// value's characters (a per-file tree's `{{.src}}` holds bytes of an etcd key); the agent
  /// refuses such a value when it is not inert (see ``ArgumentSubstitution``). And a shell
  /// script written with `$$` or `${`, which etcsync now expands before the shell sees it
  /// (`echo $$` runs `echo $`): see ``writtenWithDollars``.
  public var warnings: [String] {
    var warnings: [String] = []
    for (index, mapping) in self.mappings.enumerated() {
      for (key, argv) in [("check", mapping.check), ("reload", mapping.reload)] {
        guard let argv else { continue }
        for script in ArgumentSubstitution.shellScriptIndices(argv) {
          let field = "mappings[\(index)].\(key)[\(script)]"
          if let original = self.writtenWithDollars[field] {
            warnings.append(
              "\(field): the shell script is written with $$ or ${, which etcsync expands in its configuration "
                + "($$ is one $, ${NAME} an environment variable), so the shell runs \(Self.quoted(argv[script])), not "
                + "\(Self.quoted(original)). For the shell's own $$ or ${...}, write $$$$ or $${...}")
          }
          let names = ArgumentSubstitution.placeholdersInShellScripts(argv).map { "{{.\($0)}}" }
          guard !names.isEmpty else { continue }
          let placeholder = names[0]
          warnings.append(
            "mappings[\(index)].\(key)[\(script)]: \(names.joined(separator: ", ")) inside a shell script; the shell "
              + "would interpret the value's characters, and the agent refuses a value holding any it would "
              + "(a space, $, a quote…). Pass it as a positional argument: "
              + "[sh, -c, 'cmd \"$1\"', sh, \"\(placeholder)\"]")
        }
      }
    }
    return warnings
  }

  private static func quoted(_ text: String) -> String {
    "'" + text + "'"
  }
}
