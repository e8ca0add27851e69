import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Remembers which etcd processes this test support started, and for which test process, in
/// a small registry directory. A test process that crashes cannot stop its etcds; the next
/// start reaps every etcd whose owner is gone, and deletes its data directory.
enum OrphanReaper {
  static let directory = (FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory())
    + "/etcsync-test-etcd"

  /// Records a started etcd: one file per etcd, named by its pid, holding owner pid and dir.
  static func register(pid: Int32, dataDir: String) {
    try? FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
    let entry = "\(getpid())\n\(dataDir)\n"
    try? entry.write(toFile: "\(self.directory)/\(pid)", atomically: true, encoding: .utf8)
  }

  static func unregister(pid: Int32) {
    try? FileManager.default.removeItem(atPath: "\(self.directory)/\(pid)")
  }

  /// Kills etcds whose owning test process no longer exists.
  static func reap() {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: self.directory) else { return }
    for name in entries {
      guard let pid = Int32(name),
            let text = try? String(contentsOfFile: "\(self.directory)/\(name)", encoding: .utf8) else { continue }
      let lines = text.split(separator: "\n").map(String.init)
      guard lines.count == 2, let owner = Int32(lines[0]), !isAlive(owner) else { continue }
      if isEtcd(pid) {
        kill(pid, SIGCONT)
        kill(pid, SIGKILL)
      }
      let parent = (lines[1] as NSString).deletingLastPathComponent
      if parent.hasPrefix("/dev/shm/etcd") || parent.hasPrefix(NSTemporaryDirectory()) {
        try? FileManager.default.removeItem(atPath: parent)
      }
      self.unregister(pid: pid)
    }
  }

  private static func isAlive(_ pid: Int32) -> Bool {
    kill(pid, 0) == 0 || errno == EPERM
  }

  /// Whether `pid` is (still) an etcd process, so a recycled pid is never killed.
  private static func isEtcd(_ pid: Int32) -> Bool {
    guard let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8) else { return false }
    return comm.hasPrefix("etcd")
  }
}
