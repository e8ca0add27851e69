import EtcSync
import Foundation
import Testing

/// Loads YAML under the name `etcsync.yaml`, the way the tests' expected messages spell it.
func loadConfiguration(
  _ yaml: String,
  environment: [String: String] = [:],
  overrides: ConfigurationOverrides = ConfigurationOverrides(),
  baseDirectory: String? = nil,
  checkFiles: Bool = false
) throws(ConfigurationError) -> AgentConfiguration {
  try AgentConfiguration.load(
    yaml: yaml, sourceName: "etcsync.yaml", baseDirectory: baseDirectory, environment: environment,
    overrides: overrides, checkFiles: checkFiles)
}

/// The error loading `yaml` gives, or nil (and a recorded issue) when it loads.
func loadConfigurationError(
  _ yaml: String,
  environment: [String: String] = [:],
  overrides: ConfigurationOverrides = ConfigurationOverrides(),
  baseDirectory: String? = nil,
  checkFiles: Bool = false,
  sourceLocation: SourceLocation = #_sourceLocation
) -> ConfigurationError? {
  do {
    _ = try loadConfiguration(
      yaml, environment: environment, overrides: overrides, baseDirectory: baseDirectory,
      checkFiles: checkFiles)
    Issue.record("expected the configuration to be refused", sourceLocation: sourceLocation)
    return nil
  } catch {
    return error
  }
}

/// A YAML document with one mapping whose body is `lines` (indented for you).
func yamlWithOneMapping(_ lines: String) -> String {
  let body = lines.split(separator: "\n", omittingEmptySubsequences: false)
    .enumerated()
    .map { index, line in (index == 0 ? "  - " : "    ") + line }
    .joined(separator: "\n")
  return "mappings:\n" + body + "\n"
}

/// A fresh temporary directory, removed when `body` returns.
func withConfigurationTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
  let path = FileManager.default.temporaryDirectory
    .appendingPathComponent("etcsync-config-\(UUID().uuidString)").path
  try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(atPath: path) }
  return try body(path)
}

/// Writes `text` to `path`, creating parent directories.
func writeFixture(_ text: String, to path: String, permissions: Int = 0o644) throws {
  let directory = (path as NSString).deletingLastPathComponent
  try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
  try text.write(toFile: path, atomically: false, encoding: .utf8)
  try FileManager.default.setAttributes([.posixPermissions: permissions], ofItemAtPath: path)
}

/// The repository root (through the symlinks of a scratch package, if any).
func configurationTestsRepositoryRoot() -> URL {
  URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
    .deletingLastPathComponent()  // Configuration
    .deletingLastPathComponent()  // EtcSyncTests
    .deletingLastPathComponent()  // Tests
    .deletingLastPathComponent()
}
