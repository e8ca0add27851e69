import Foundation

/// Unified diffs for `etcsync diff`, made by Debian's `diff -u` (diffutils is Essential) on
/// private temporary copies, so the output is exactly what operators know.
public enum UnifiedDiff {
  public static func render(path: String, old: [UInt8]?, new: [UInt8]?) -> String {
    let directory = NSTemporaryDirectory() + "etcsync-diff-\(UUID().uuidString)"
    guard (try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false,
                                                    attributes: [.posixPermissions: 0o700])) != nil else {
      return "--- \(path)\n+++ \(path)\n(cannot create a temporary directory for the diff)\n"
    }
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let a = directory + "/a", b = directory + "/b"
    FileManager.default.createFile(atPath: a, contents: Data(old ?? []))
    FileManager.default.createFile(atPath: b, contents: Data(new ?? []))
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/diff")
    process.arguments = ["-u", "--label", old == nil ? "/dev/null" : path, "--label", new == nil ? "/dev/null" : path, a, b]
    let pipe = Pipe()
    process.standardOutput = pipe
    do { try process.run() } catch { return "--- \(path)\n+++ \(path)\n(diff could not run: \(error))\n" }
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: output, as: UTF8.self)
  }
}
