#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The few file-system questions the configuration layer asks, answered with POSIX calls so that
/// errors carry the system's reason ("No such file or directory", "Permission denied").
enum ConfigFiles {
  /// Why a file could not be used.
  struct Failure: Error {
    var reason: String
  }

  /// The whole content of a regular file, refusing files larger than `limit` bytes.
  static func readFile(_ path: String, limit: Int) throws(Failure) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw Failure(reason: self.lastError()) }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw Failure(reason: self.lastError()) }
    guard (info.st_mode & S_IFMT) == S_IFREG else { throw Failure(reason: "not a regular file") }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 16 * 1024)
    while true {
      let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if count < 0 {
        if errno == EINTR { continue }
        throw Failure(reason: self.lastError())
      }
      if count == 0 { break }
      bytes += buffer[..<count]
      if bytes.count > limit { throw Failure(reason: "larger than \(limit) bytes") }
    }
    return bytes
  }

  /// What kind of thing is at `path` (following symlinks), or the reason there is nothing.
  enum Kind { case file, directory, other }

  static func kind(_ path: String) -> Result<Kind, Failure> {
    var info = stat()
    guard stat(path, &info) == 0 else { return .failure(Failure(reason: self.lastError())) }
    switch info.st_mode & S_IFMT {
    case S_IFREG: return .success(.file)
    case S_IFDIR: return .success(.directory)
    default: return .success(.other)
    }
  }

  /// A readable regular file, or the reason it is not one.
  static func checkReadableFile(_ path: String) -> Failure? {
    switch self.kind(path) {
    case .failure(let failure): return failure
    case .success(.directory): return Failure(reason: "is a directory, not a file")
    case .success(.other): return Failure(reason: "is not a regular file")
    case .success(.file):
      return access(path, R_OK) == 0 ? nil : Failure(reason: self.lastError())
    }
  }

  /// Whether `path` is a regular file this process may execute.
  static func isExecutableFile(_ path: String) -> Bool {
    guard case .success(.file) = self.kind(path) else { return false }
    return access(path, X_OK) == 0
  }

  /// Whether a user of this name exists (`getpwnam`).
  static func userExists(_ name: String) -> Bool {
    getpwnam(name) != nil
  }

  /// Whether a group of this name exists (`getgrnam`).
  static func groupExists(_ name: String) -> Bool {
    getgrnam(name) != nil
  }

  /// This machine's host name (`gethostname`), or `localhost` when it has none.
  static func hostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    let name = String(decoding: bytes, as: UTF8.self)
    return name.isEmpty ? "localhost" : name
  }

  /// The current directory, for resolving relative paths.
  static func currentDirectory() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    guard getcwd(&buffer, buffer.count) != nil else { return "/" }
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
  }

  /// `path` made absolute against `base` when it is relative.
  static func resolve(_ path: String, against base: String?) -> String {
    guard let base, !path.hasPrefix("/") else { return path }
    return base.hasSuffix("/") ? base + path : base + "/" + path
  }

  /// The directory part of `path` (`.` when it has none).
  static func directory(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    let directory = String(path[..<slash])
    return directory.isEmpty ? "/" : directory
  }

  private static func lastError() -> String {
    String(cString: strerror(errno))
  }
}
