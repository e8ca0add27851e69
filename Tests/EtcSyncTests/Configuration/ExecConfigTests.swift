import EtcSync
import Foundation
import Glibc
import Testing

/// The `exec:` section (exec mode of `etcsync run`): its forms, and a file:line:column error
/// naming the field for each bad value.
@Suite("Configuration: exec")
struct ExecConfigTests {
  @Test("no exec section: exec mode is off")
  func absent() throws {
    #expect(try loadConfiguration("mappings: []\n").exec == nil)
  }

  @Test("only a command: the defaults (SIGHUP, signal on change, 10 s kill timeout, no splay, stop on exit)")
  func defaults() throws {
    let exec = try #require(try loadConfiguration("exec: {command: [nginx, -g, \"daemon off;\"]}\n").exec)
    #expect(exec == ExecSettings(command: ["nginx", "-g", "daemon off;"]))
    #expect(exec.signal == SIGHUP)
    #expect(exec.onChange == .signal)
    #expect(exec.killTimeout == .seconds(10))
    #expect(exec.splay == .zero)
    #expect(exec.onChildExit == .stop)
  }

  @Test("every setting, in block form")
  func everySetting() throws {
    let exec = try #require(
      try loadConfiguration(
        """
        exec:
          command: [/app/server, --config, /etc/app/app.json]
          signal: usr2
          onChange: restart
          killTimeout: 30s
          splay: 5s
          onChildExit: restart

        """
      ).exec)
    #expect(exec.command == ["/app/server", "--config", "/etc/app/app.json"])
    #expect(exec.signal == SIGUSR2)
    #expect(exec.onChange == .restart)
    #expect(exec.killTimeout == .seconds(30))
    #expect(exec.splay == .seconds(5))
    #expect(exec.onChildExit == .restart)
  }

  @Test("splay: 0s is allowed (signal at once)")
  func zeroSplay() throws {
    #expect(try loadConfiguration("exec: {command: [app], splay: 0s}\n").exec?.splay == .zero)
  }

  @Test(
    "bad exec values name the file, line and column, and the field",
    arguments: [
      ("killTimeout: 0s", "exec.killTimeout", 3),
      ("killTimeout: -1s", "exec.killTimeout", 3),
      ("splay: -1s", "exec.splay", 3),
      ("onChildExit: bogus", "exec.onChildExit", 3),
      ("onChange: reload", "exec.onChange", 3),
      ("signal: SIGBOGUS", "exec.signal", 3),
      ("sigal: SIGHUP", "exec.sigal", 3),
    ])
  func invalid(line: String, field: String, lineNumber: Int) throws {
    // The command on line 2, the bad setting on line 3.
    let error = try #require(loadConfigurationError("exec:\n  command: [app]\n  \(line)\n"))
    #expect(error.file == "etcsync.yaml")
    #expect(error.line == lineNumber, "\(error)")
    #expect(error.field == field, "\(error)")
    #expect("\(error)".hasPrefix("etcsync.yaml:\(lineNumber):"), "\(error)")
  }

  @Test("the messages say what is expected")
  func messages() throws {
    func message(_ setting: String) -> String {
      loadConfigurationError("exec:\n  command: [app]\n  \(setting)\n")?.description ?? ""
    }
    #expect(message("killTimeout: 0s") == #"etcsync.yaml:3:16: exec.killTimeout: expected a duration above 0s such as "5s", got "0s""#)
    #expect(message("killTimeout: -1s") == #"etcsync.yaml:3:16: exec.killTimeout: expected a duration such as "200ms" or "2s": "-1s" is negative; a duration must be 0 or more"#)
    #expect(message("splay: -1s") == #"etcsync.yaml:3:10: exec.splay: expected a duration such as "200ms" or "2s": "-1s" is negative; a duration must be 0 or more"#)
    #expect(message("onChildExit: bogus") == #"etcsync.yaml:3:16: exec.onChildExit: expected one of "stop", "restart", got "bogus""#)
    #expect(message("onChange: restrat") == #"etcsync.yaml:3:13: exec.onChange: expected one of "signal", "restart", got "restrat"; did you mean "restart"?"#)
    #expect(message("sigal: SIGHUP").hasPrefix("etcsync.yaml:3:3: exec.sigal: "))
  }

  @Test("exec without a command, or with an empty one, is refused at the exec section")
  func missingCommand() throws {
    let missing = try #require(loadConfigurationError("mappings: []\nexec:\n  signal: SIGHUP\n"))
    #expect(missing.field == "exec.command", "\(missing)")
    #expect(missing.line == 3, "\(missing)")
    #expect(missing.code == .missingKey, "\(missing)")
    let empty = try #require(loadConfigurationError("mappings: []\nexec: {command: []}\n"))
    #expect(empty.field == "exec.command", "\(empty)")
    #expect(empty.line == 2, "\(empty)")
  }

  @Test("exec: must be a mapping")
  func notAMapping() throws {
    let error = try #require(loadConfigurationError("exec: [app]\n"))
    #expect(error.field == "exec", "\(error)")
    #expect(error.line == 1, "\(error)")
  }
}
