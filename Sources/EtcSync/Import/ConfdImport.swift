import Foundation

/// `etcsync import confd DIR`: reads a confd configuration directory (`confd.toml`,
/// `conf.d/*.toml`, `templates/`) and writes the equivalent etcsync configuration as YAML,
/// with a warning for every setting that has no counterpart or changes meaning.
///
/// The work is split by what it reads: ``ConfdConverter`` walks the directory (here),
/// `confd.toml` (ConfdImport+Global.swift), the `conf.d` resources (ConfdImport+Resource.swift);
/// ConfdTOML.swift reads confd's TOML, ConfdCommandLine.swift its commands, and
/// ConfdYAML.swift writes the result.
public enum ConfdImport {
  /// A remark about a confd file, naming the file and line it is about: a warning when the
  /// conversion goes on, the error when it cannot.
  public struct Note: Error, Equatable, Sendable, CustomStringConvertible {
    /// The confd file, as found under the directory given.
    public var file: String
    /// The 1-based line, when the note is about one setting.
    public var line: Int?
    /// What happened and what to do.
    public var message: String

    public init(file: String, line: Int?, message: String) {
      self.file = file
      self.line = line
      self.message = message
    }

    public var description: String {
      if let line { return "\(self.file):\(line): \(self.message)" }
      return "\(self.file): \(self.message)"
    }
  }

  /// Something that did not convert exactly; the conversion goes on.
  public typealias Warning = Note
  /// A confd file that cannot be read or is not a valid confd configuration.
  public typealias Failure = Note

  /// The converted configuration and its warnings.
  public struct Conversion: Sendable {
    /// The etcsync configuration (YAML).
    public var yaml: String
    /// Everything that did not convert exactly, in the order of the files read.
    public var warnings: [Warning]
  }

  /// Converts the confd directory `directory`.
  ///
  /// Template paths in the result are absolute (`DIR/templates/SRC`, as confd resolves `src`),
  /// so the printed configuration works wherever it is saved.
  /// - Throws: ``Failure`` for a file that cannot be read or parsed, or a resource confd itself
  ///   would refuse (no `src`, no `dest`, a value of the wrong type).
  public static func convert(directory: String) throws(Failure) -> Conversion {
    var converter = ConfdConverter(directory: ConfigFiles.resolve(directory, against: ConfigFiles.currentDirectory()))
    return try converter.run()
  }
}

/// One conversion: the directory, the warnings so far and the YAML being written.
struct ConfdConverter {
  typealias Table = ConfdTOML.Table
  typealias Value = ConfdTOML.Value

  let directory: String
  var warnings: [ConfdImport.Warning] = []
  var out: YAMLText

  init(directory: String) {
    var trimmed = directory
    while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
    self.directory = trimmed
    self.out = YAMLText(source: trimmed)
  }

  func path(_ name: String) -> String { self.directory == "/" ? "/" + name : self.directory + "/" + name }

  mutating func warn(_ file: String, _ line: Int?, _ message: String) {
    self.warnings.append(ConfdImport.Warning(file: file, line: line, message: message))
  }

  func read(_ file: String) throws(ConfdImport.Failure) -> Table {
    let bytes: [UInt8]
    do {
      bytes = try ConfigFiles.readFile(file, limit: 4 * 1024 * 1024)
    } catch {
      throw ConfdImport.Failure(file: file, line: nil, message: "cannot read: \(error.reason)")
    }
    guard let text = String(validating: bytes, as: UTF8.self) else {
      throw ConfdImport.Failure(file: file, line: nil, message: "not UTF-8 text")
    }
    do {
      return try ConfdTOML.parse(text)
    } catch {
      throw ConfdImport.Failure(file: file, line: error.line, message: "invalid TOML: \(error.message)")
    }
  }

  mutating func run() throws(ConfdImport.Failure) -> ConfdImport.Conversion {
    guard case .success(.directory) = ConfigFiles.kind(self.directory) else {
      let reason: String
      switch ConfigFiles.kind(self.directory) {
      case .failure(let failure): reason = failure.reason
      default: reason = "not a directory"
      }
      throw ConfdImport.Failure(file: self.directory, line: nil, message: "cannot read the confd directory: \(reason)")
    }
    let global = try self.globalSettings()
    let resources = try self.resourceFiles()
    guard !resources.isEmpty else {
      throw ConfdImport.Failure(
        file: self.path("conf.d"), line: nil, message: "no template resources (*.toml) found")
    }
    var mappings: [[(String, YAMLText.Node)]] = []
    var names: [String: Int] = [:]
    for resource in resources {
      guard var mapping = try self.mapping(resource, global: global) else { continue }
      var name = Self.name(of: resource.relative)
      if let count = names[name] {
        names[name] = count + 1
        name += "-\(count + 1)"
      } else {
        names[name] = 1
      }
      mapping.insert(("name", .scalar(name)), at: 0)
      mappings.append(mapping)
    }
    self.out.line("# Converted by `etcsync import confd \(self.directory)`. Check it with `etcsync check -c FILE`.")
    for (key, node) in global.top { try self.out.entry(key, node, indent: 0) }
    self.out.line("mappings:")
    for mapping in mappings { try self.out.item(mapping, indent: 2) }
    return ConfdImport.Conversion(yaml: self.out.text, warnings: self.warnings)
  }
}
