import Foundation

/// Unified diffs for `etcsync diff`, made by Debian's `diff -u` (diffutils is Essential) on
/// private temporary copies, so the output is exactly what operators know.
public enum UnifiedDiff {
  /// One change as `etcsync diff` prints it, control characters in its path escaped: a
  /// git-style header when the mode or owner differs (`diff PATH`, then `old mode 100644` /
  /// `new mode 100640`, `old owner 0` / `new owner 1000`, `old group …` / `new group …`,
  /// numeric ids), or `diff PATH` and the note for a tree published again; then the unified
  /// diff of the bytes when they differ.
  public static func render(escaping change: FileChange) -> String {
    let path = escapeControlCharacters(change.path)
    var header = ""
    if let old = change.oldMetadata, let new = change.newMetadata {
      header = "diff \(path)\n"
      if old.mode != new.mode {
        header += "old mode \(String(0o100000 | UInt32(old.mode), radix: 8))\nnew mode \(String(0o100000 | UInt32(new.mode), radix: 8))\n"
      }
      if old.userID != new.userID { header += "old owner \(old.userID)\nnew owner \(new.userID)\n" }
      if old.groupID != new.groupID { header += "old group \(old.groupID)\nnew group \(new.groupID)\n" }
    }
    if let note = change.note { header = "diff \(path)\n\(escapeControlCharacters(note))\n" }
    guard change.contentChanged else { return header }
    return header + render(path: path, old: change.old, new: change.new)
  }

  /// The unified diff of `old` and `new` (nil: no file), both labelled `path`.
  public static func render(path: String, old: [UInt8]?, new: [UInt8]?) -> String {
    let directory = NSTemporaryDirectory() + "etcsync-diff-\(UUID().uuidString)"
    guard (try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false,
                                                    attributes: [.posixPermissions: 0o700])) != nil else {
      return "--- \(path)\n+++ \(path)\n(cannot create a temporary directory for the diff)\n"
    }
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let a = directory + "/a", b = directory + "/b"
    _ = FileManager.default.createFile(atPath: a, contents: Data(old ?? []))
    _ = FileManager.default.createFile(atPath: b, contents: Data(new ?? []))
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
