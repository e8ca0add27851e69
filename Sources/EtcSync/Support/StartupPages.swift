#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization

/// Gives back the pages of the executable that only start-up needed. The binary is static and
/// large (34 MB of code); what `etcsync run` executes while it watches is about 1.3 MB of
/// functions, linked first and side by side by the release build (`scripts/release-build`'s order
/// file lists the functions that run while changes are applied before those only start-up runs),
/// but start-up (arguments, configuration, TLS, the first snapshot) touches much more, and those
/// pages would stay resident for the life of the daemon. `MADV_PAGEOUT` (Linux 5.4+) on the
/// executable's private mappings drops them: code and read-only data, and the pages of its
/// writable data that were read but never written (still the file's pages; about 3 MB of
/// `.data` and the like). A page no other process maps leaves the page cache too, so the code
/// that runs next is read from the disk again. Written pages (relocated data, `.data` the
/// program changed) are anonymous memory: where there is swap the kernel swaps them out, and
/// they come back on their next use; where there is none they stay. The kernel pages out the
/// file's own pages only for a process that owns the binary (or has `CAP_FOWNER`): root with
/// the packaged binary. For the container image's user or `User=etcsync`, only the written
/// pages go, and only where there is swap.
///
/// Done twice per process by the `etcsync` executable's daemon (``AgentSupervisor``'s
/// `releaseMemory`): once its first agent is built, before the first snapshot is read (the
/// pages of arguments, configuration and template compiling go before a large first sync fills
/// the heap: the process's peak is then lower), and five seconds after the first apply.
/// Measured in docs/benchmarks.md ("The process at rest").
public enum StartupPages {
  private static let scheduled = Mutex(false)
  private static let releasedBeforeSync = Mutex(false)

  /// Pages the executable out now, before the first snapshot is read; once per process.
  public static func releaseBeforeFirstSync(logger: Logger) {
    let first = self.releasedBeforeSync.withLock { done in
      defer { done = true }
      return !done
    }
    guard first, let bytes = self.pageOutExecutable() else { return }
    logger.debug("pages of the executable's start advised out before the first sync (MADV_PAGEOUT)", metadata: ["bytes": "\(bytes)"])
  }

  /// Pages the executable out after `delay`, in a task of its own; once per process, whatever
  /// calls it.
  public static func releaseSoon(after delay: Duration, logger: Logger) {
    let first = self.scheduled.withLock { done in
      defer { done = true }
      return !done
    }
    guard first else { return }
    Task.detached {
      try? await Task.sleep(for: delay)
      if let bytes = self.pageOutExecutable() {
        logger.debug("start-up pages of the executable advised out (MADV_PAGEOUT)", metadata: ["bytes": "\(bytes)"])
      }
    }
  }

  /// `MADV_PAGEOUT` from linux/mman.h (the C library headers here predate it).
  static let pageOut: Int32 = 21

  /// Advises the kernel to page out the executable's private mappings. Returns how many bytes
  /// were advised; nil when `/proc` cannot tell which mappings are the executable's. A kernel
  /// without `MADV_PAGEOUT` refuses it (EINVAL): 0 bytes, nothing else happens.
  private static func pageOutExecutable() -> Int? {
    guard let executable = self.executablePath(), let maps = self.readMaps() else { return nil }
    var advised = 0
    for line in maps.split(separator: UInt8(ascii: "\n")) {
      // start-end perms offset dev inode path: the path (which may hold spaces) after five fields.
      let fields = line.split(separator: UInt8(ascii: " "), maxSplits: 5, omittingEmptySubsequences: true)
      // Private ("p") and readable: a shared writable mapping's pages would be written back.
      guard fields.count == 6, fields[1].first == UInt8(ascii: "r"), fields[1].last == UInt8(ascii: "p"),
        Array(fields[5].drop { $0 == UInt8(ascii: " ") }) == executable
      else { continue }
      let range = fields[0].split(separator: UInt8(ascii: "-"))
      guard range.count == 2, let start = UInt(String(decoding: range[0], as: UTF8.self), radix: 16),
        let end = UInt(String(decoding: range[1], as: UTF8.self), radix: 16), end > start,
        let address = UnsafeMutableRawPointer(bitPattern: start)
      else { continue }
      if madvise(address, Int(end - start), self.pageOut) == 0 { advised += Int(end - start) }
    }
    return advised
  }

  /// The executable's path as `/proc/self/maps` prints it (its bytes).
  private static func executablePath() -> [UInt8]? {
    var buffer = [UInt8](repeating: 0, count: 4097)
    let count = buffer.withUnsafeMutableBufferPointer { readlink("/proc/self/exe", $0.baseAddress!, $0.count - 1) }
    guard count > 0, count < buffer.count - 1 else { return nil }
    return Array(buffer[..<count])
  }

  /// `/proc/self/maps`, read whole (a few KB).
  private static func readMaps() -> [UInt8]? {
    let fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    return try? readAll(FileDescriptor(fd)).get()
  }
}
