import Logging
import Templates

#if canImport(Glibc)
import Glibc
#endif

/// The text log format: swift-log's `StreamLogHandler` layout on standard error
/// (`<time> <level> <label>: <key>=<value> … [<source>] <message>`), with every field escaped.
///
/// Messages and metadata carry key names, paths and error texts that come from etcd or from
/// files a local user can create: a newline in one would forge a log line, an escape sequence
/// would drive the terminal of whoever reads the log, and a value holding ` mapping.name=x`
/// would read as a field of its own. So the message and every metadata key and value are
/// escaped with ``escapeControlCharacters(_:backslashes:)``, backslashes included (a key
/// holding the two characters `\n` prints as `\\n`, a newline as `\n`), and a metadata value
/// that is empty or holds a space, `=` or `"` is written in double quotes with `"` as `\"`:
/// `etcd.key="/app/a b"`. Simple values stay bare.
public struct TextLogHandler: LogHandler {
  /// A handler for `label` writing escaped lines to standard error.
  public static func standardError(label: String) -> TextLogHandler {
    TextLogHandler(label: label)
  }

  /// The label as each line writes it: escaped once, with its leading space (empty without one).
  private let label: String
  private let fd: Int32
  public var logLevel: Logger.Level = .info
  public var metadata: Logger.Metadata = [:]
  public var metadataProvider: Logger.MetadataProvider?

  /// A handler for `label` writing to `fd` (standard error by default).
  public init(label: String, fd: Int32 = STDERR_FILENO, metadataProvider: Logger.MetadataProvider? = LoggingSystem.metadataProvider) {
    self.label = label.isEmpty ? "" : " " + escapeControlCharacters(label, backslashes: true)
    self.fd = fd
    self.metadataProvider = metadataProvider
  }

  public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { self.metadata[key] }
    set { self.metadata[key] = newValue }
  }

  public func log(event: LogEvent) {
    var metadata = self.metadata
    if let provided = self.metadataProvider?.get() { metadata.merge(provided) { _, new in new } }
    if let explicit = event.metadata { metadata.merge(explicit) { _, new in new } }
    if let error = event.error {
      metadata["error.message"] = "\(error)"
      metadata["error.type"] = "\(String(reflecting: type(of: error)))"
    }
    var line = Self.timestamp() + " \(event.level)" + self.label + ":"
    for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
      line += " " + Self.field(key) + "=" + Self.field(value.description)
    }
    line += " [" + escapeControlCharacters(event.source, backslashes: true) + "] "
    line += escapeControlCharacters(event.message.description, backslashes: true)
    self.write(line)
  }

  /// Writes `line` and a newline with one `write(2)` (retried after `EINTR` and partial writes).
  private func write(_ line: String) {
    (Array(line.utf8) + [0x0A]).withUnsafeBytes { bytes in
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

  /// A metadata key or value as the line writes it: escaped, and quoted when it is empty or
  /// holds a space, `=` or `"` (a `"` inside becomes `\"`).
  static func field(_ text: String) -> String {
    let escaped = escapeControlCharacters(text, backslashes: true)
    guard escaped.isEmpty || escaped.utf8.contains(where: { $0 == 0x20 || $0 == 0x3D || $0 == 0x22 }) else { return escaped }
    var quoted = "\""
    for scalar in escaped.unicodeScalars {
      if scalar == "\"" { quoted += "\\\"" } else { quoted.unicodeScalars.append(scalar) }
    }
    return quoted + "\""
  }

  /// Local time as `StreamLogHandler` writes it: `2026-12-05T10:15:02+0000`.
  static func timestamp() -> String {
    var now = time(nil)
    var parts = tm()
    guard localtime_r(&now, &parts) != nil else { return "<unknown>" }
    var buffer = [CChar](repeating: 0, count: 64)
    let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &parts)
    return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }
}

/// `text` with every control character written as an escape, so that it prints as one line
/// and cannot drive a terminal: `\n`, `\r`, `\t`, and `\xNN` or `\u{NNNN}` for the other C0
/// and C1 controls, DEL, the line and paragraph separators and the bidirectional overrides
/// (which reorder what a reader sees).
///
/// With `backslashes` a backslash is written `\\`, so that every escape reads one way back: a
/// text holding the two characters `\n` prints `\\n`, a newline prints `\n`. Text logs and
/// `etcsync status` escape raw fields so. Without it (the default) backslashes are kept, for
/// text whose backslashes are escapes already (``escapeBytes(_:)``'s `\xNN`).
public func escapeControlCharacters(_ text: String, backslashes: Bool = false) -> String {
  let escaped = { (scalar: Unicode.Scalar) in needsEscape(scalar) || (backslashes && scalar == "\\") }
  guard text.unicodeScalars.contains(where: escaped) else { return text }
  var result = ""
  result.reserveCapacity(text.utf8.count + 16)
  for scalar in text.unicodeScalars {
    guard escaped(scalar) else {
      result.unicodeScalars.append(scalar)
      continue
    }
    switch scalar {
    case "\\": result += "\\\\"
    case "\n": result += "\\n"
    case "\r": result += "\\r"
    case "\t": result += "\\t"
    default:
      result += scalar.value <= 0xFF ? "\\x" + Escaping.hex(scalar.value, width: 2, uppercase: false)
        : "\\u{" + Escaping.hex(scalar.value, width: 0, uppercase: false) + "}"
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
      result += "\\u" + Escaping.hex(scalar.value, width: 4, uppercase: false)
    } else {
      result.unicodeScalars.append(scalar)
    }
  }
  return result
}
