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

/// `etcsync diff`: what `sync` would change, as a unified diff; writes nothing.
struct DiffCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "diff",
    abstract: "Print what `sync` would change, as a unified diff, without writing.",
    discussion: """
      Exit codes, as diff(1) and `git diff --exit-code` have them: 0 the files are current (no
      output), 1 there are differences (printed), 2 trouble: a configuration error, a template
      that fails to render, etcd refusing a read; 3 etcd unreachable within --timeout.
      --timeout takes a duration as the configuration writes them (10s, 1m30s, 500ms); a bare
      number is refused.
      Example: etcsync diff -c etcsync.yaml || echo "the files are not current"
      """
  )

  @OptionGroup var options: GlobalOptions
  @Option(help: "How long to wait for etcd before giving up (exit 3): \(DurationFlag.helpForm).", transform: DurationFlag.parse)
  var timeout = DurationFlag(seconds: 10)

  func run() async throws {
    let (configuration, logger) = try self.options.load()
    let changes: [(path: String, old: [UInt8]?, new: [UInt8]?)]
    do {
      changes = try await withAgentClient(configuration, logger: logger, timeout: self.timeout.duration) { client in
        let agent: Agent
        do {
          agent = try Agent(configuration: configuration, client: client, logger: logger)
        } catch let error as AgentError where error.code == .configuration {
          throw configurationExit(error)
        }
        return try await agent.diff()
      }
    } catch let exit as ExitCode {
      throw exit
    } catch {
      // Exit 1 means "there are differences": any trouble is 2, as for diff(1).
      FileHandle.standardError.write(Data("etcsync: \(escapeControlCharacters("\(error)"))\n".utf8))
      throw ExitCode(2)
    }
    for change in changes {
      // The path comes from etcd's keys: no control character reaches the terminal.
      print(UnifiedDiff.render(path: escapeControlCharacters(change.path), old: change.old, new: change.new), terminator: "")
    }
    if !changes.isEmpty { throw ExitCode(1) }
  }
}
