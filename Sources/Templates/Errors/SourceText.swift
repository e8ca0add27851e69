/// The bytes of one template file, kept so that errors can name a line and column.
///
/// Nodes only store byte offsets; line and column are worked out when an error is made.
final class SourceText: Sendable {
  let name: String
  let bytes: [UInt8]

  init(name: String, bytes: [UInt8]) {
    self.name = name
    self.bytes = bytes
  }

  /// The location of the byte at `offset` (clamped to the end of the text).
  func location(of offset: Int) -> SourceLocation {
    let end = min(max(offset, 0), bytes.count)
    var line = 1
    var column = 1
    var index = 0
    while index < end {
      let byte = bytes[index]
      if byte == UInt8(ascii: "\n") {
        line += 1
        column = 1
      } else if byte & 0xC0 != 0x80 {
        column += 1
      }
      index += 1
    }
    return SourceLocation(template: name, line: line, column: column)
  }

  func error(_ code: TemplateError.Code, _ message: String, at offset: Int, key: String? = nil)
    -> TemplateError
  {
    TemplateError(code: code, message: message, location: location(of: offset), key: key)
  }
}
