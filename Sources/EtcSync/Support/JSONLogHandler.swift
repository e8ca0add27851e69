import Foundation
import Logging

/// A swift-log handler that writes one JSON object per line to standard error: `time`,
/// `level`, `label`, `message`, and the metadata as string fields. No control character is
/// written raw (see ``escapeJSONControlCharacters(_:)``).
public struct JSONLogHandler: LogHandler {
  public var metadata: Logger.Metadata = [:]
  public var logLevel: Logger.Level = .info
  let label: String

  public init(label: String) {
    self.label = label
  }

  public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { self.metadata[key] }
    set { self.metadata[key] = newValue }
  }

  public func log(event: LogEvent) {
    var fields: [String: String] = [:]
    for (key, value) in self.metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) { fields[key] = "\(value)" }
    if let error = event.error { fields["error"] = "\(error)" }
    fields["time"] = ISO8601DateFormatter().string(from: Date())
    fields["level"] = event.level.rawValue
    fields["label"] = self.label
    fields["message"] = event.message.description
    guard let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]) else { return }
    // Keys and paths from etcd can hold any control character: JSON escapes C0, and the rest
    // (DEL, C1, bidirectional marks) is escaped here, so a line is safe on a terminal too.
    var line = Data(escapeJSONControlCharacters(String(decoding: data, as: UTF8.self)).utf8)
    line.append(0x0A)
    FileHandle.standardError.write(line)
  }
}
