/// Replaces `{{.NAME}}` placeholders in a command's arguments, confd's syntax for
/// `check: [nginx, -t, -c, "{{.src}}"]`.
///
/// This is substitution only: nothing is evaluated, values are inserted byte for byte and
/// never scanned again, and no shell sees them. Spaces inside the braces are allowed
/// (`{{ .src }}`). A placeholder whose name has no value is left as written, so arguments
/// that carry another tool's own `{{…}}` syntax pass through.
///
/// A shell's script (the operand after `-c` of `sh`, `bash`, … ) is different: a shell does
/// interpret it, and `{{.src}}` holds bytes of an etcd key in a per-file tree. The safe form
/// passes the value as a positional argument, `[sh, -c, 'lint "$1"', sh, "{{.src}}"]`.
/// ``checkedSubstitute(_:with:)`` refuses a value that the shell would interpret inside a
/// script, and ``placeholdersInShellScripts(_:)`` lets `etcsync check` warn about the form.
public enum ArgumentSubstitution {
  /// Programs whose `-c` operand is a shell script.
  static let shells: Set<String> = ["sh", "bash", "dash", "ash", "ksh", "mksh", "zsh", "yash", "posh"]

  /// The indices of `argv`'s arguments that a shell runs as a script: `sh -c SCRIPT`, behind
  /// any wrapper (`env -i sh -ec SCRIPT`, `timeout 5 sh -c`, `nice`, `sudo`, `flock F sh -c`,
  /// `busybox sh -c`): every word that names a shell is taken for one, so a wrapper this list
  /// does not know cannot hide a script. A word `sh` that is not a program (`grep sh -c f`)
  /// only makes the check stricter.
  public static func shellScriptIndices(_ argv: [String]) -> [Int] {
    var indices: [Int] = []
    for start in argv.indices where shells.contains(baseName(argv[start])) {
      if let index = scriptIndex(argv, shellAt: start), !indices.contains(index) { indices.append(index) }
    }
    return indices.sorted()
  }

  /// The index of the script of the shell at `start` (after its options, one of which holds
  /// `c`), or nil when it runs none.
  private static func scriptIndex(_ argv: [String], shellAt start: Int) -> Int? {
    var index = start + 1
    var command = false
    while index < argv.count {
      let argument = Array(argv[index].utf8)
      if argument == Array("--".utf8) { index += 1; break }
      guard argument.count > 1, argument[0] == UInt8(ascii: "-") || argument[0] == UInt8(ascii: "+") else { break }
      index += 1
      if argument[1] == argument[0] {
        // --long options; bash's that take a value.
        if ["--rcfile", "--init-file"].contains(argv[index - 1]) { index += 1 }
        continue
      }
      if argument.contains(UInt8(ascii: "c")) { command = true }
      if argument.contains(UInt8(ascii: "o")) || argument.contains(UInt8(ascii: "O")) { index += 1 }  // -o NAME
    }
    return command && index < argv.count ? index : nil
  }

  /// The placeholder names (`src`) written inside a shell script of `argv` (see
  /// ``shellScriptIndices(_:)``), in order of appearance.
  public static func placeholdersInShellScripts(_ argv: [String]) -> [String] {
    shellScriptIndices(argv).flatMap { placeholderNames(in: argv[$0]) }
  }

  /// The names of the placeholders in `argument`, in order.
  private static func placeholderNames(in argument: String) -> [String] {
    let bytes = Array(argument.utf8)
    var names: [String] = []
    var position = 0
    while position < bytes.count {
      if let (name, end) = placeholder(in: bytes, at: position) {
        names.append(name)
        position = end
      } else {
        position += 1
      }
    }
    return names
  }

  /// Whether the shell gives no byte of `value` a meaning of its own: letters, digits,
  /// `/ . _ - + , : @ % =` and non-ASCII bytes.
  public static func isShellInert(_ value: String) -> Bool {
    value.utf8.allSatisfy { byte in
      switch byte {
      case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
        UInt8(ascii: "0")...UInt8(ascii: "9"), 0x80...0xFF:
        true
      default: "/._-+,:@%=".utf8.contains(byte)
      }
    }
  }

  /// ``substitute(_:with:)-([String],_)``, refusing to put a value the shell would interpret
  /// (a space, `$`, a quote, `;`, a backtick…) into a shell script: such a value must reach
  /// the shell as a positional argument instead.
  public static func checkedSubstitute(_ argv: [String], with values: [String: String]) throws(CommandError) -> [String] {
    guard !values.isEmpty else { return argv }
    let scripts = Set(shellScriptIndices(argv))
    var result: [String] = []
    result.reserveCapacity(argv.count)
    for (index, argument) in argv.enumerated() {
      if scripts.contains(index) {
        for name in placeholderNames(in: argument) {
          guard let value = values[name], !isShellInert(value) else { continue }
          throw CommandError(
            .unsafeSubstitution, argv: argv,
            detail: "refusing to put {{.\(name)}} (\"\(escapeBytes(value.utf8))\") into a shell script: the shell "
              + "would interpret its characters; pass it as a positional argument instead: "
              + "[sh, -c, 'cmd \"$1\"', sh, \"{{.\(name)}}\"]")
        }
      }
      result.append(substitute(argument, with: values))
    }
    return result
  }

  private static func baseName(_ path: String) -> String {
    splitLastSlash(path)?.name ?? path
  }

  /// `argv` with every known `{{.NAME}}` replaced by `values[NAME]`.
  public static func substitute(_ argv: [String], with values: [String: String]) -> [String] {
    guard !values.isEmpty else { return argv }
    return argv.map { substitute($0, with: values) }
  }

  /// `argument` with every known `{{.NAME}}` replaced by `values[NAME]`.
  public static func substitute(_ argument: String, with values: [String: String]) -> String {
    let bytes = Array(argument.utf8)
    var result: [UInt8] = []
    result.reserveCapacity(bytes.count)
    var index = 0
    while index < bytes.count {
      if let (name, end) = placeholder(in: bytes, at: index), let value = values[name] {
        result.append(contentsOf: value.utf8)
        index = end
      } else {
        result.append(bytes[index])
        index += 1
      }
    }
    return String(decoding: result, as: UTF8.self)
  }

  /// Parses `{{ .NAME }}` starting at `start`: the name and the index after `}}`.
  private static func placeholder(in bytes: [UInt8], at start: Int) -> (String, Int)? {
    let open = UInt8(ascii: "{"), close = UInt8(ascii: "}"), space = UInt8(ascii: " ")
    guard start + 1 < bytes.count, bytes[start] == open, bytes[start + 1] == open else {
      return nil
    }
    var index = start + 2
    while index < bytes.count, bytes[index] == space { index += 1 }
    guard index < bytes.count, bytes[index] == UInt8(ascii: ".") else { return nil }
    index += 1
    let nameStart = index
    while index < bytes.count, isNameByte(bytes[index]) { index += 1 }
    guard index > nameStart else { return nil }
    let name = String(decoding: bytes[nameStart..<index], as: UTF8.self)
    while index < bytes.count, bytes[index] == space { index += 1 }
    guard index + 1 < bytes.count, bytes[index] == close, bytes[index + 1] == close else {
      return nil
    }
    return (name, index + 2)
  }

  private static func isNameByte(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
      UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"):
      true
    default: false
    }
  }
}
