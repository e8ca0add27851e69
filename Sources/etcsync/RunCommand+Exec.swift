import ArgumentParser
import EtcSync
import Foundation
import Logging
import Metrics

// `etcsync run`'s exec mode (`--exec -- CMD ARGS…` or `exec:` in the file) and PID 1's reaper.
extension RunCommand {
  /// Exec mode's settings: the configuration's `exec:` with the flags over it; nil without
  /// exec mode. A flag that makes no sense alone is refused (exit 2).
  func execSettings(_ configuration: AgentConfiguration) throws -> ExecSettings? {
    var settings = configuration.exec
    if self.exec {
      if !self.command.isEmpty {
        if settings == nil { settings = ExecSettings(command: self.command) }
        settings?.command = self.command
      } else if settings == nil {
        throw Self.usage("--exec needs a command after --, such as: etcsync run -c FILE --exec -- nginx -g 'daemon off;' (or exec.command in the configuration)")
      }
    } else if !self.command.isEmpty {
      throw Self.usage("a command after -- runs only with --exec: etcsync run -c FILE --exec -- \(self.command[0]) …")
    }
    if let name = self.execSignal {
      guard settings != nil else { throw Self.usage("--exec-signal needs --exec (or exec: in the configuration)") }
      guard let number = ExecSettings.signal(named: name) else {
        let names = ExecSettings.signalNames.map { "SIG\($0.name)" }.joined(separator: ", ")
        throw Self.usage("--exec-signal \(escapeControlCharacters(name)): not a signal etcsync sends; one of \(names)")
      }
      settings?.signal = number
    }
    if self.execRestart {
      guard settings != nil else { throw Self.usage("--exec-restart needs --exec (or exec: in the configuration)") }
      settings?.onChange = .restart
    }
    return settings
  }

  private static func usage(_ message: String) -> ExitCode {
    FileHandle.standardError.write(Data("etcsync: \(message)\n".utf8))
    return ExitCode(2)
  }

  /// As PID 1 (a container's entrypoint), reaps every orphan the kernel re-parents to
  /// etcsync, counted in `etcsync_orphans_reaped_total`; the status of etcsync's own children
  /// stays theirs to collect (see ``ChildProcesses``).
  static func reapOrphansIfInit(logger: Logger) {
    guard getpid() == 1 else { return }
    let reaped = Counter(label: "etcsync_orphans_reaped_total")
    ChildProcesses.shared.startReapingOrphans { pid, _ in
      reaped.increment()
      logger.debug("reaped an orphaned process", metadata: ["process.pid": "\(pid)"])
    }
    logger.info("running as PID 1: orphaned processes are reaped")
  }

  /// Watches SIGTERM, SIGINT (and in exec mode SIGQUIT): each calls `stop`, and in exec mode
  /// is first forwarded to the child.
  static func stopSignals(exec: ExecSupervisor?, stop: @escaping @Sendable () -> Void) -> [SignalWatcher] {
    guard let exec else { return [SignalWatcher(signals: [SIGTERM, SIGINT], handler: stop)] }
    return [SIGTERM, SIGINT, SIGQUIT].map { number in
      SignalWatcher(signals: [number]) {
        exec.forward(number)
        stop()
      }
    }
  }
}
