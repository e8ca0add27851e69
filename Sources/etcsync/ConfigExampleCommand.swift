import ArgumentParser

/// `etcsync config-example`: prints a commented starting configuration.
struct ConfigExampleCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "config-example",
    abstract: "Print a commented starting configuration (every mapping kind and option).",
    discussion: """
      The same text as examples/config/etcsync.yaml. Example: write it, edit it, validate it:
        etcsync config-example > /etc/etcsync/etcsync.yaml
        etcsync check -c /etc/etcsync/etcsync.yaml
      """
  )

  func run() {
    print(configExample, terminator: configExample.hasSuffix("\n") ? "" : "\n")
  }
}
