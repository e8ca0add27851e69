import ArgumentParser
import EtcSync
import Foundation

/// `etcsync import`: converts another tool's configuration into an etcsync configuration.
struct ImportCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "import",
    abstract: "Convert another tool's configuration into an etcsync configuration.",
    subcommands: [ImportConfdCommand.self]
  )
}

/// `etcsync import confd DIR`: prints the etcsync configuration equivalent to a confd
/// configuration directory, and warnings on standard error.
struct ImportConfdCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "confd",
    abstract: "Print the etcsync configuration equivalent to a confd directory (confd.toml, conf.d/, templates/).",
    discussion: """
      The YAML goes to standard output, a warning for each setting that has no equivalent to
      standard error. Exit 0 when converted (warnings or not), 2 when a file cannot be read or
      is not a valid confd configuration (the message names file:line).
      Example: etcsync import confd /etc/confd > etcsync.yaml && etcsync check -c etcsync.yaml
      """
  )

  @Argument(help: "The confd configuration directory, such as /etc/confd.")
  var directory: String

  func run() throws {
    let conversion: ConfdImport.Conversion
    do {
      conversion = try ConfdImport.convert(directory: self.directory)
    } catch {
      FileHandle.standardError.write(Data("etcsync: \(error)\n".utf8))
      throw ExitCode(2)
    }
    for warning in conversion.warnings {
      FileHandle.standardError.write(Data("etcsync: warning: \(warning)\n".utf8))
    }
    FileHandle.standardOutput.write(Data(conversion.yaml.utf8))
  }
}
