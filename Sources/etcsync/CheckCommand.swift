import ArgumentParser
import EtcSync
import Foundation

/// `etcsync check`: validate the configuration and compile every template; touch nothing
/// (but a probe file created and removed at once in each existing tree destination, to say
/// whether its file system folds case or normalizes names).
struct CheckCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "check",
    abstract: "Validate the configuration and compile every template, without changing any file.",
    discussion: "Exit 0 when valid, 2 with file:line:column and field otherwise. In each existing tree destination it creates and removes one probe file (its directory's mtime put back) to say whether the file system folds case or normalizes names. Example: etcsync check -c etcsync.yaml"
  )

  @OptionGroup var options: GlobalOptions

  func run() async throws {
    let (configuration, logger) = try self.options.load(checkFiles: true)
    for mapping in configuration.mappings {
      do {
        _ = try MappingRunner(mapping: mapping, commandTimeout: configuration.commandTimeout, logger: logger)
      } catch {
        FileHandle.standardError.write(Data("etcsync: \(error)\n".utf8))
        throw ExitCode(2)
      }
    }
    for warning in configuration.warnings + configuration.writeBackWarnings() {
      FileHandle.standardError.write(Data("etcsync: warning: \(warning)\n".utf8))
    }
    for (index, mapping) in configuration.mappings.enumerated() where mapping.kind == .tree {
      // A temporary file is created and removed at once in each existing tree destination.
      switch NameFolding.probe(root: mapping.dest) {
      case nil:
        print("mappings[\(index)].dest: \(escapeControlCharacters(mapping.dest)) does not exist yet; its names are probed at the first sync")
      case .success(let folding):
        let note = folding.folds ? " (two keys that fold to one name are refused)" : ""
        print("mappings[\(index)].dest: \(escapeControlCharacters(mapping.dest)) is \(folding)\(note)")
      case .failure(let error):
        print("mappings[\(index)].dest: \(escapeControlCharacters(mapping.dest)): cannot probe how names compare: \(error)")
      }
    }
    print("configuration OK: \(configuration.mappings.count) mapping(s)")
  }
}
