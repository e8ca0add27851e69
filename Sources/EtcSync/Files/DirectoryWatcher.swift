import Synchronization

#if canImport(Glibc)
import Glibc

/// One thing that happened under a watched root.
struct DirectoryChange: Sendable, Hashable {
  /// What happened to ``path``.
  enum Kind: Sendable, Hashable {
    /// A file was closed after writing or renamed into place, or was found in a directory
    /// that was created or moved in. The same file may be reported more than once.
    case written
    /// A file or directory was deleted or moved away; a removed directory stands for
    /// everything that was below it, so callers treat the path as a prefix too.
    case removed
    /// Events were lost (kernel queue overflow, root deleted, moved or unmounted, a watch
    /// that could not be added): rescan everything.
    case overflow
  }

  var kind: Kind
  /// Path relative to the root, `/`-separated, no leading `./` (empty for `.overflow`).
  /// Names that are not valid UTF-8 are decoded with replacement characters.
  var path: String

  static func written(_ path: String) -> DirectoryChange { DirectoryChange(kind: .written, path: path) }
  static func removed(_ path: String) -> DirectoryChange { DirectoryChange(kind: .removed, path: path) }
  static let overflow = DirectoryChange(kind: .overflow, path: "")
}

/// Setting up a ``DirectoryWatcher`` failed; names the path and the errno text.
struct DirectoryWatcherError: Error, Sendable, CustomStringConvertible {
  var path: String
  var errno: Int32
  var operation: String
  /// The `maxWatches` that was reached (operation `"watch limit"`).
  var limit = 0

  var description: String {
    if operation == "watch limit" {
      return "cannot watch \(path): more than \(limit) directories, the watcher's limit of \(limit) inotify watches"
    }
    let names: [Int32: String] = [
      ENOENT: "ENOENT", EACCES: "EACCES", ENOTDIR: "ENOTDIR", ELOOP: "ELOOP", ENOMEM: "ENOMEM",
      EMFILE: "EMFILE", ENFILE: "ENFILE", ENOSPC: "ENOSPC", EINVAL: "EINVAL", EAGAIN: "EAGAIN",
    ]
    var text = "cannot watch \(path): \(operation) failed: \(String(cString: strerror(errno)))"
    text += " (\(names[errno] ?? "errno \(errno)"))"
    switch (errno, operation) {
    case (ENOSPC, "inotify_add_watch"): text += "; the inotify watch limit is reached, raise fs.inotify.max_user_watches"
    case (EMFILE, "inotify_init1"): text += "; too many inotify instances, raise fs.inotify.max_user_instances"
    default: break
    }
    return text
  }
}

/// Watches a directory (optionally its whole tree) with inotify and streams what changes.
///
/// A dedicated thread polls the inotify descriptor and yields everything parsed from one
/// `read` as one batch. Symlinks below the root are never followed (the root path itself may
/// go through symlinks, as for the rest of etcsync). Directories created or moved in are
/// watched and scanned, each regular file already inside is reported `.written`. Deleting,
/// moving or unmounting the root reports `.overflow`; the watcher then stays quiet until
/// ``stop()`` (it does not follow a re-created root: create a new watcher; ``rootLost`` says
/// so). A recursive watcher adds at most `maxWatches` inotify watches: directories beyond
/// that are not watched, reported once as `.overflow` with ``limitReached`` set.
final class DirectoryWatcher: Sendable {
  /// Batches of changes, in order. Finishes after ``stop()`` (or, which should not happen,
  /// if reading the inotify descriptor fails).
  let changes: AsyncStream<[DirectoryChange]>
  /// What the reader thread found about the watcher itself.
  private let flags: WatcherFlags
  /// Whether the root was deleted, moved or unmounted: the watcher reports nothing more.
  /// Set before the `.overflow` that reports it is yielded.
  var rootLost: Bool { flags.rootLost.load(ordering: .acquiring) }
  /// Whether a directory was left unwatched because `maxWatches` was reached. Set before the
  /// `.overflow` that reports it is yielded.
  var limitReached: Bool { flags.limitReached.load(ordering: .acquiring) }
  /// The reader thread and the descriptors; nil once stopped.
  private let running: Mutex<Running?>

  /// What ``stop()`` has to tear down.
  private struct Running: Sendable {
    var thread: pthread_t
    var inotifyFD: Int32
    /// A socket pair: `stop()` shuts down `wake[1]`, which makes `wake[0]` readable.
    var wake: [Int32]
  }

  /// Starts watching `root` (a directory). `recursive`: every subdirectory too, including
  /// ones created later, with at most `maxWatches` watches in all (a tree with more
  /// directories than that at the start throws, with operation `"watch limit"`). Changes
  /// made after `init` returns are reported.
  init(root: String, recursive: Bool, maxWatches: Int = .max) throws(DirectoryWatcherError) {
    let fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
    guard fd >= 0 else { throw DirectoryWatcherError(path: root, errno: Glibc.errno, operation: "inotify_init1") }
    var wake: [Int32] = [-1, -1]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &wake) == 0 else {
      let error = DirectoryWatcherError(path: root, errno: Glibc.errno, operation: "socketpair")
      close(fd)
      throw error
    }
    let (stream, continuation) = AsyncStream.makeStream(of: [DirectoryChange].self)
    let flags = WatcherFlags()
    let reader = Reader(root: root, recursive: recursive, fd: fd, wakeFD: wake[0], continuation: continuation,
                        maxWatches: max(1, maxWatches), flags: flags)
    var thread = pthread_t()
    var failure: DirectoryWatcherError?
    do {
      var ignored: [DirectoryChange] = []
      try reader.watchTree("", report: false, into: &ignored)
      let context = Unmanaged.passRetained(reader).toOpaque()
      let status = pthread_create(&thread, nil, { context in
        Unmanaged<Reader>.fromOpaque(context!).takeRetainedValue().run()
        return nil
      }, context)
      if status != 0 {
        Unmanaged<Reader>.fromOpaque(context).release()
        failure = DirectoryWatcherError(path: root, errno: status, operation: "pthread_create")
      }
    } catch {
      failure = error
    }
    if let failure {
      close(fd); close(wake[0]); close(wake[1])
      continuation.finish()
      throw failure
    }
    changes = stream
    self.flags = flags
    running = Mutex(Running(thread: thread, inotifyFD: fd, wake: wake))
  }

  deinit { stop() }

  /// Stops the reader thread and closes the descriptors; the stream has finished when this
  /// returns. Idempotent.
  func stop() {
    running.withLock { running in
      guard let current = running else { return }
      running = nil
      shutdown(current.wake[1], Int32(SHUT_WR))
      pthread_join(current.thread, nil)
      close(current.inotifyFD)
      close(current.wake[0])
      close(current.wake[1])
    }
  }
}

/// What the reader thread tells the watcher's owner about the watcher itself.
private final class WatcherFlags: Sendable {
  let rootLost = Atomic<Bool>(false)
  let limitReached = Atomic<Bool>(false)
}

/// The reader thread's state: the watch descriptors and their directories. Confined to
/// `init` and then to the reader thread.
private final class Reader {
  let root: String
  let recursive: Bool
  let fd: Int32
  let wakeFD: Int32
  let continuation: AsyncStream<[DirectoryChange]>.Continuation
  /// Watch descriptor → directory path relative to the root (`""` is the root).
  var directories: [Int32: String] = [:]
  var rootWatch: Int32 = -1
  /// The most watches this reader adds (see ``DirectoryWatcher/init(root:recursive:maxWatches:)``).
  let maxWatches: Int
  let flags: WatcherFlags

  init(root: String, recursive: Bool, fd: Int32, wakeFD: Int32,
       continuation: AsyncStream<[DirectoryChange]>.Continuation, maxWatches: Int, flags: WatcherFlags) {
    self.maxWatches = maxWatches
    self.flags = flags
    self.root = root
    self.recursive = recursive
    self.fd = fd
    self.wakeFD = wakeFD
    self.continuation = continuation
  }

  /// Polls until woken by `stop()` (or the descriptor fails), then finishes the stream.
  func run() {
    defer { continuation.finish() }
    let size = 64 * 1024
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: MemoryLayout<inotify_event>.alignment)
    defer { buffer.deallocate() }
    var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
    while true {
      if poll(&fds, 2, -1) < 0 {
        if errno == EINTR { continue }
        return
      }
      if fds[1].revents != 0 { return }
      guard fds[0].revents & Int16(POLLIN) != 0 else {
        if fds[0].revents != 0 { return }
        continue
      }
      let count = read(fd, buffer, size)
      if count < 0 && (errno == EINTR || errno == EAGAIN) { continue }
      guard count > 0 else { return }
      var batch: [DirectoryChange] = []
      var offset = 0
      let header = MemoryLayout<inotify_event>.size
      while offset + header <= count {
        let wd = buffer.loadUnaligned(fromByteOffset: offset, as: Int32.self)
        let mask = buffer.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
        let length = Int(buffer.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
        guard offset + header + length <= count else { break }
        // The name is NUL-padded to `length` bytes; an empty one means the watched directory itself.
        var name = ""
        if length > 0 {
          let bytes = UnsafeRawBufferPointer(start: buffer + offset + header, count: length)
          name = String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
        handle(wd: wd, mask: mask, name: name, into: &batch)
        offset += header + length
      }
      if !batch.isEmpty { continuation.yield(batch) }
    }
  }

  /// Turns one inotify event into changes (and keeps the watches up to date).
  func handle(wd: Int32, mask: UInt32, name: String, into batch: inout [DirectoryChange]) {
    func has(_ flag: Int32) -> Bool { mask & UInt32(flag) != 0 }
    if has(IN_Q_OVERFLOW) {
      batch.append(.overflow)
      // Directories created while events were lost have no watch yet.
      if recursive { watchAtRuntime("", report: false, into: &batch) }
      return
    }
    if has(IN_IGNORED) { directories[wd] = nil; return }
    guard let directory = directories[wd] else { return }  // a watch already dropped
    if has(IN_UNMOUNT) || (wd == rootWatch && (has(IN_DELETE_SELF) || has(IN_MOVE_SELF))) {
      if wd == rootWatch {
        drop { _ in true }
        flags.rootLost.store(true, ordering: .releasing)
      }
      batch.append(.overflow)
      return
    }
    guard !name.isEmpty else { return }  // IN_DELETE_SELF/IN_MOVE_SELF of a subdirectory: its parent reports it
    let path = directory.isEmpty ? name : "\(directory)/\(name)"
    if has(IN_ISDIR) {
      guard recursive else { return }
      if has(IN_CREATE) || has(IN_MOVED_TO) {
        watchAtRuntime(path, report: true, into: &batch)
      } else if has(IN_DELETE) || has(IN_MOVED_FROM) {
        // As bytes: the twin `e\u{301}` of a removed `\u{E9}` keeps its watch.
        let removed = Array(path.utf8)
        drop { $0.utf8.elementsEqual(removed) || $0.utf8.starts(with: removed + [UInt8(ascii: "/")]) }
        batch.append(.removed(path))
      }
    } else if has(IN_CLOSE_WRITE) || has(IN_MOVED_TO) {
      batch.append(.written(path))
    } else if has(IN_DELETE) || has(IN_MOVED_FROM) {
      batch.append(.removed(path))
    }
  }

  /// The ``DirectoryWatcherError/operation`` of a directory left unwatched at `maxWatches`.
  static let limitOperation = "watch limit"

  /// Removes the watches of the directories matching `predicate`.
  func drop(where predicate: (String) -> Bool) {
    for (wd, path) in directories where predicate(path) {
      inotify_rm_watch(fd, wd)
      directories[wd] = nil
    }
  }

  /// ``watchTree(_:report:into:)`` on the reader thread: a directory that vanished (or was
  /// replaced by a symlink) meanwhile is skipped; any other failure reports `.overflow`.
  func watchAtRuntime(_ path: String, report: Bool, into batch: inout [DirectoryChange]) {
    do {
      try watchTree(path, report: report, into: &batch)
    } catch {
      if error.operation == Self.limitOperation {
        // Reported once: the owner falls back to rescanning; later directories beyond the
        // limit stay unwatched silently.
        if !flags.limitReached.exchange(true, ordering: .acquiringAndReleasing) { batch.append(.overflow) }
      } else if ![ENOENT, ENOTDIR, ELOOP].contains(error.errno) {
        batch.append(.overflow)
      }
    }
  }

  /// Whether `/proc/self/fd` is there to watch a directory through its descriptor (no
  /// `/proc` in some minimal containers: directories are then watched by path).
  static let procDescriptors = access("/proc/self/fd", F_OK) == 0

  /// Opens the directory `path` (relative, `/`-separated) below `root`: the root as given (an
  /// operator's symlink there is followed), then each component with `O_NOFOLLOW`. A
  /// descriptor, or -1 with `errno` set.
  static func openDirectory(below root: String, _ path: String) -> Int32 {
    var current = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard current >= 0 else { return -1 }
    // Split at `/` bytes, not `Character`s: `/` followed by a combining mark is one
    // `Character`, and would hide a component from `O_NOFOLLOW`.
    for component in path.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
      let name = String(decoding: component, as: UTF8.self)
      let next = openat(current, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
      let saved = errno
      close(current)
      guard next >= 0 else {
        errno = saved
        return -1
      }
      current = next
    }
    return current
  }

  /// Watches the directory `path` (relative to the root) and, when recursive, every directory
  /// below it; with `report`, appends `.written` for each regular file found. Symlinks are
  /// never followed (`O_NOFOLLOW` at every component below the root, the watch added through
  /// the opened descriptor, `d_type`/`fstatat(AT_SYMLINK_NOFOLLOW)`). A directory of
  /// ``maximumPathDepth`` segments or more is not watched: no key's file can be below it, and
  /// a local user's endless `mkdir d; cd d` chain (or a bind mount looping back to an
  /// ancestor, which returns the same watch at every level) must not walk on forever.
  func watchTree(_ path: String, report: Bool, into batch: inout [DirectoryChange]) throws(DirectoryWatcherError) {
    if !path.isEmpty, path.utf8.count(where: { $0 == UInt8(ascii: "/") }) + 1 >= maximumPathDepth { return }
    let absolute = path.isEmpty ? root : "\(root)/\(path)"
    var mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF)
    mask |= UInt32(IN_ONLYDIR | IN_EXCL_UNLINK)
    if recursive { mask |= UInt32(IN_CREATE) }
    if !path.isEmpty { mask |= UInt32(IN_DONT_FOLLOW) }
    // At the limit, a directory already watched (a rescan after an overflow) is watched again
    // in place; any other is not.
    guard directories.count < maxWatches || directories.values.contains(where: { $0.utf8.elementsEqual(path.utf8) }) else {
      throw DirectoryWatcherError(path: absolute, errno: 0, operation: Self.limitOperation, limit: maxWatches)
    }
    // The directory is opened first, one component at a time from the root without following a
    // symlink, and watched through its descriptor (`/proc/self/fd/N`): a path longer than
    // PATH_MAX (a local user's deep tree, or a long etcd key below a long destination) is
    // watched like any other, and a symlink swapped in after the open is never watched.
    let dirFD = Self.openDirectory(below: root, path)
    guard dirFD >= 0 else { throw DirectoryWatcherError(path: absolute, errno: errno, operation: "open") }
    let wd: Int32
    if Self.procDescriptors {
      // Not IN_DONT_FOLLOW: the magic link must be followed to the directory it stands for.
      wd = inotify_add_watch(fd, "/proc/self/fd/\(dirFD)", mask & ~UInt32(IN_DONT_FOLLOW))
    } else {
      wd = inotify_add_watch(fd, absolute, mask)
    }
    guard wd >= 0 else {
      let error = DirectoryWatcherError(path: absolute, errno: errno, operation: "inotify_add_watch")
      close(dirFD)
      throw error
    }
    directories[wd] = path
    if path.isEmpty { rootWatch = wd }
    guard recursive else {
      close(dirFD)
      return
    }
    // Scan after the watch exists, so nothing written in between is missed (at worst twice).
    guard let stream = fdopendir(dirFD) else {
      let error = DirectoryWatcherError(path: absolute, errno: errno, operation: "fdopendir")
      close(dirFD)
      throw error
    }
    var subdirectories: [String] = []
    while let entry = readdir(stream) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
      }
      if name == "." || name == ".." { continue }
      var type = Int(entry.pointee.d_type)
      if type == DT_UNKNOWN {
        var info = stat()
        guard fstatat(dirFD, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
        type = switch info.st_mode & S_IFMT { case S_IFDIR: DT_DIR; case S_IFREG: DT_REG; default: DT_UNKNOWN }
      }
      let child = path.isEmpty ? name : "\(path)/\(name)"
      if type == DT_DIR { subdirectories.append(child) }
      if type == DT_REG && report { batch.append(.written(child)) }
    }
    closedir(stream)
    for child in subdirectories {
      do {
        try watchTree(child, report: report, into: &batch)
      } catch let error where error.operation != Self.limitOperation && [ENOENT, ENOTDIR, ELOOP].contains(error.errno) {
        continue  // removed, or replaced by a symlink, since the scan
      }
    }
  }
}
#endif
