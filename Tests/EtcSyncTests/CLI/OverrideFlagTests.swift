import Foundation
import Testing

/// Flags and `ETCSYNC_*` variables through the binary: one reader for both, errors naming the
/// one that carried the value.
@Suite struct OverrideFlagTests {
  static func config(_ dir: TemporaryDirectory) throws -> String {
    let path = dir("etcsync.yaml")
    try Disk.write(path, "mappings: [{name: t, kind: tree, prefix: /t/, dest: \(dir("out"))}]\n")
    return path
  }

  @Test("a bad --log-level or --log-format says what ETCSYNC_LOG_LEVEL or ETCSYNC_LOG_FORMAT would, naming the flag")
  func logFlags() async throws {
    let dir = TemporaryDirectory("etcsync-override-flags")
    let config = try Self.config(dir)
    let levels = "expected one of trace, debug, info, notice, warning, error, critical, got \"loud\""
    let flag = try await EtcsyncProcess.run(["check", "-c", config, "--log-level", "loud"])
    #expect(flag.status == 2 && flag.error == "etcsync: --log-level: \(levels)\n", "\(flag)")
    let variable = try await EtcsyncProcess.runTool(["/usr/bin/env", "ETCSYNC_LOG_LEVEL=loud", EtcsyncProcess.binary, "check", "-c", config])
    #expect(variable.status == 2 && variable.error == "etcsync: ETCSYNC_LOG_LEVEL: \(levels)\n", "\(variable)")
    let format = try await EtcsyncProcess.run(["check", "-c", config, "--log-format", "xml"])
    #expect(format.status == 2 && format.error == "etcsync: --log-format: expected \"text\" or \"json\", got \"xml\"\n", "\(format)")
    // A bad variable is an error even where a flag would win over it: every ETCSYNC_*
    // variable that is set is read and checked (and WARN is warning for the flag).
    let both = try await EtcsyncProcess.runTool(
      ["/usr/bin/env", "ETCSYNC_LOG_LEVEL=loud", EtcsyncProcess.binary, "check", "-c", config, "--log-level", "WARN"])
    #expect(both.status == 2 && both.error == "etcsync: ETCSYNC_LOG_LEVEL: \(levels)\n", "\(both)")
    let flagOnly = try await EtcsyncProcess.run(["check", "-c", config, "--log-level", "WARN"])
    #expect(flagOnly.status == 0, "\(flagOnly)")
  }

  @Test("a value from the environment is named by its variable, not by the flag it could have been")
  func environmentNamed() async throws {
    let dir = TemporaryDirectory("etcsync-override-env")
    let config = try Self.config(dir)
    let result = try await EtcsyncProcess.runTool(
      ["/usr/bin/env", "ETCSYNC_PASSWORD_FILE=/run/secrets/etcd", EtcsyncProcess.binary, "check", "-c", config])
    #expect(result.status == 2, "\(result)")
    #expect(result.error.hasPrefix("etcsync: ETCSYNC_PASSWORD_FILE: a password file needs a user"), "\(result.error)")
  }
}
