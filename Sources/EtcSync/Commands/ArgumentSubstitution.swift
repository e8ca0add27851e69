/// Replaces `{{.NAME}}` placeholders in a command's arguments, confd's syntax for
/// `check: [nginx, -t, -c, "{{.src}}"]`.
///
/// This is substitution only: nothing is evaluated, values are inserted byte for byte and
/// never scanned again, and no shell sees them. Spaces inside the braces are allowed
/// (`{{ .src }}`). A placeholder whose name has no value is left as written, so arguments
/// that carry another tool's own `{{…}}` syntax pass through.
public enum ArgumentSubstitution {
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
