import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The text log format: swift-log's `StreamLogHandler` lines on standard error, with every
/// control character escaped.
///
/// Messages and metadata carry key names, paths and error texts that come from etcd or from
/// files a local user can create: a newline in one would forge a log line, an escape sequence
/// would drive the terminal of whoever reads the log. Each line is escaped as a whole before
/// it is written (see ``escapeControlCharacters(_:)``), so no field can be forgotten.
public enum TextLogHandler {
  /// A handler for `label` writing escaped lines to standard error.
  public static func standardError(label: String) -> StreamLogHandler {
    StreamLogHandler(label: label, stream: EscapingStandardError())
  }
}

/// Standard error (or `fd`), taking whole log lines: everything but the line's final newline
/// is escaped, and the line is written with one `write(2)`.
struct EscapingStandardError: TextOutputStream, Sendable {
  var fd: Int32 = STDERR_FILENO

  mutating func write(_ string: String) {
    var text = string
    let newline = text.hasSuffix("\n")
    if newline { text.removeLast() }
    var line = Array(escapeControlCharacters(text).utf8)
    if newline { line.append(0x0A) }
    line.withUnsafeBytes { bytes in
      var offset = 0
      while offset < bytes.count {
        let written = Glibc.write(self.fd, bytes.baseAddress! + offset, bytes.count - offset)
        if written < 0 {
          if errno == EINTR { continue }
          return
        }
        offset += written
      }
    }
  }
}

/// `text` with every control character written as an escape, so that it prints as one line
/// and cannot drive a terminal: `\n`, `\r`, `\t`, and `\xNN` or `\u{NNNN}` for the other C0
/// and C1 controls, DEL, the line and paragraph separators and the bidirectional overrides
/// (which reorder what a reader sees). Everything else, backslashes included, is kept.
public func escapeControlCharacters(_ text: String) -> String {
  guard text.unicodeScalars.contains(where: needsEscape) else { return text }
  var result = ""
  result.reserveCapacity(text.utf8.count + 16)
  for scalar in text.unicodeScalars {
    guard needsEscape(scalar) else {
      result.unicodeScalars.append(scalar)
      continue
    }
    switch scalar {
    case "\n": result += "\\n"
    case "\r": result += "\\r"
    case "\t": result += "\\t"
    default:
      let hex = String(scalar.value, radix: 16)
      result += scalar.value <= 0xFF ? "\\x" + (hex.count == 1 ? "0" + hex : hex) : "\\u{" + hex + "}"
    }
  }
  return result
}

/// Whether `scalar` is escaped by ``escapeControlCharacters(_:)``.
func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
  switch scalar.value {
  case 0x00...0x1F, 0x7F...0x9F: true
  case 0x2028, 0x2029: true  // line and paragraph separators
  case 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: true  // bidirectional marks
  default: false
  }
}

/// JSON text with the controls that JSON leaves raw (DEL, C1, the separators and the
/// bidirectional marks of ``escapeControlCharacters(_:)``) written as `\uNNNN` escapes: the same
/// document for a parser, and safe on a terminal. C0 controls inside strings are already
/// escaped by every JSON encoder; a raw newline is the layout of pretty-printed output and is
/// kept.
public func escapeJSONControlCharacters(_ json: String) -> String {
  guard json.unicodeScalars.contains(where: { $0 != "\n" && needsEscape($0) }) else { return json }
  var result = ""
  result.reserveCapacity(json.utf8.count + 16)
  for scalar in json.unicodeScalars {
    if scalar != "\n" && needsEscape(scalar) {
      let hex = String(scalar.value, radix: 16)
      result += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    } else {
      result.unicodeScalars.append(scalar)
    }
  }
  return result
}
