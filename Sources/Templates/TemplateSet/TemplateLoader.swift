#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Loads templates from one directory, and from nowhere else.
///
/// A template's `{{template "name"}}` that no `{{define}}` provides is looked up as the file
/// `name` relative to the directory, when the template is loaded (so renders never touch the
/// file system). Every file's real path (symlinks resolved) must lie inside the directory;
/// a name with `..`, an absolute name, or a symlink leading out is refused.
public struct TemplateLoader: Sendable {
  /// The templates directory, as a canonical real path.
  public let directory: String
  /// The largest template file accepted, in bytes.
  public var maxFileSize: Int = 16 << 20
  /// The action delimiters of every file loaded, the main one and its includes (Go's `Delims`).
  public var delimiters: TemplateDelimiters = .standard

  /// Opens a templates directory; fails if it does not exist or is not a directory.
  public init(directory: String) throws(TemplateError) {
    guard let real = Self.realPath(directory) else {
      throw TemplateError(code: .io, message: "templates directory \(directory): \(Self.errnoText())")
    }
    var info = stat()
    guard stat(real, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
      throw TemplateError(code: .io, message: "templates directory \(directory) is not a directory")
    }
    self.directory = real
  }

  /// Loads and parses `name` (a path relative to the directory) with every file it includes.
  public func load(_ name: String) throws(TemplateError) -> Template {
    guard let text = try read(name) else {
      throw TemplateError(code: .io, message: "template \(name): no such file in \(directory)")
    }
    var set = TemplateSet()
    let file = try Parser.parse(SourceText(name: name, bytes: text), delimiters: delimiters)
    try set.add(file)
    var called = file.calledTemplates
    var tried: Set<String> = []
    // Names no loaded file defines are tried as files, in sorted order so that loading is
    // deterministic; one that is no regular file stays unresolved (as in Go, an error
    // only if a render reaches it).
    while let include = ByteOrder.sorted(Array(set.unresolved(called).subtracting(tried))).first {
      tried.insert(include)
      guard let bytes = try read(include, isInclude: true) else { continue }
      let included = try Parser.parse(SourceText(name: include, bytes: bytes), delimiters: delimiters)
      try set.add(included)
      called.formUnion(included.calledTemplates)
    }
    return Template(name: name, set: set, calledTemplates: called)
  }

  /// The bytes of the file `name` inside the directory, or `nil` if there is no such file
  /// (for an include, also if it is not a regular file).
  private func read(_ name: String, isInclude: Bool = false) throws(TemplateError) -> [UInt8]? {
    try checkName(name)
    let path = directory == "/" ? "/" + name : directory + "/" + name
    guard let real = Self.realPath(path) else {
      if errno == ENOENT || errno == ENOTDIR { return nil }
      throw TemplateError(code: .io, message: "template \(name): \(Self.errnoText())")
    }
    try checkInside(real, name: name)
    let fd = open(real, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
    guard fd >= 0 else {
      throw TemplateError(code: .io, message: "template \(name): \(Self.errnoText())")
    }
    defer { close(fd) }
    // Check what was really opened, in case a path component changed after realpath.
    if let opened = Self.linkTarget("/proc/self/fd/\(fd)") { try checkInside(opened, name: name) }
    var info = stat()
    guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
      if isInclude { return nil }
      throw TemplateError(code: .io, message: "template \(name) is not a regular file")
    }
    guard Int(info.st_size) <= maxFileSize else {
      throw TemplateError(code: .io, message: "template \(name) is larger than \(maxFileSize) bytes")
    }
    return try readAll(fd, name: name)
  }

  private func readAll(_ fd: Int32, name: String) throws(TemplateError) -> [UInt8] {
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
      let count = chunk.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress, $0.count) }
      if count < 0 {
        if errno == EINTR { continue }
        throw TemplateError(code: .io, message: "template \(name): \(Self.errnoText())")
      }
      if count == 0 { return bytes }
      bytes.append(contentsOf: chunk[..<count])
      if bytes.count > maxFileSize {
        throw TemplateError(code: .io, message: "template \(name) is larger than \(maxFileSize) bytes")
      }
    }
  }

  private func checkName(_ name: String) throws(TemplateError) {
    let components = name.split(separator: "/", omittingEmptySubsequences: false)
    if name.isEmpty || name.hasPrefix("/") || name.utf8.contains(0) || components.contains("..") {
      throw TemplateError(
        code: .pathEscape,
        message: "template \"\(name)\" is refused: names must be relative paths inside \(directory)")
    }
  }

  private func checkInside(_ real: String, name: String) throws(TemplateError) {
    let root = directory == "/" ? "/" : directory + "/"
    guard ByteOrder.hasPrefix(real, root) else {
      throw TemplateError(
        code: .pathEscape,
        message: "template \"\(name)\" is refused: it resolves to \(real), outside \(directory)")
    }
  }

  static func realPath(_ path: String) -> String? {
    guard let resolved = realpath(path, nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
  }

  private static func linkTarget(_ path: String) -> String? {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let count = readlink(path, &buffer, buffer.count - 1)
    guard count > 0 else { return nil }
    return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }

  static func errnoText() -> String {
    String(cString: strerror(errno))
  }
}

/// `read(2)`, named apart from ``TemplateLoader``'s own `read`.
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
  read(fd, buffer, count)
}
