import EtcSync
import Foundation
import Testing

@Suite("Loading files and checking what they name")
struct FileCheckTests {
  @Test("a configuration file loads, with paths relative to its directory")
  func loadFromPath() throws {
    try withConfigurationTemporaryDirectory { dir in
      try writeFixture("{{getv \"/a\"}}", to: "\(dir)/templates/a.tmpl")
      try writeFixture("secret\n", to: "\(dir)/password", permissions: 0o600)
      try writeFixture(
        """
        etcd: {auth: {user: app, passwordFile: password}}
        mappings:
          - {name: a, prefix: /a/, template: templates/a.tmpl, dest: \(dir)/out/a.conf, reload: [sh, -c, "true"]}
        """, to: "\(dir)/etcsync.yaml")
      let configuration = try AgentConfiguration.load(
        path: "\(dir)/etcsync.yaml", environment: ["PATH": "/usr/bin:/bin"], checkFiles: true)
      #expect(configuration.mappings[0].template == "\(dir)/templates/a.tmpl")
      #expect(try configuration.etcd.auth?.resolvePassword() == "secret")
    }
  }

  @Test("a missing configuration file is named with the reason")
  func missingFile() {
    #expect(throws: ConfigurationError(
      .fileAccess, file: "/nonexistent/etcsync.yaml",
      message: "cannot read the configuration file: No such file or directory")
    ) {
      try AgentConfiguration.load(path: "/nonexistent/etcsync.yaml", environment: [:])
    }
  }

  @Test("a file that is not UTF-8 is refused")
  func notUTF8() throws {
    try withConfigurationTemporaryDirectory { dir in
      let path = "\(dir)/etcsync.yaml"
      try Data([0x6C, 0x6F, 0x67, 0x3A, 0xFF, 0xFE]).write(to: URL(fileURLWithPath: path))
      #expect(throws: ConfigurationError(.syntax, file: path, message: "the configuration file is not UTF-8 text")) {
        try AgentConfiguration.load(path: path, environment: [:])
      }
    }
  }

  @Test(
    "the password file loses one trailing newline only",
    arguments: [("secret\n", "secret"), ("secret\r\n", "secret"), ("secret", "secret"), ("a b\n\n", "a b\n"), (" pw ", " pw ")])
  func passwordTrimming(content: String, password: String) throws {
    try withConfigurationTemporaryDirectory { dir in
      try writeFixture(content, to: "\(dir)/pw", permissions: 0o600)
      #expect(try AuthSettings(user: "u", passwordFile: "\(dir)/pw").resolvePassword() == password)
    }
  }

  @Test("password problems name the file and never its content")
  func passwordErrors() throws {
    try withConfigurationTemporaryDirectory { dir in
      try writeFixture("\n", to: "\(dir)/empty")
      let empty = #expect(throws: ConfigurationError.self) {
        try AuthSettings(user: "u", passwordFile: "\(dir)/empty").resolvePassword()
      }
      #expect(empty?.description == "\(dir)/empty: etcd.auth.passwordFile: cannot read the password file: the file is empty")
      let missing = #expect(throws: ConfigurationError.self) {
        try AuthSettings(user: "u", passwordFile: "\(dir)/missing").resolvePassword()
      }
      #expect(missing?.message == "cannot read the password file: No such file or directory")
      #expect(missing?.file == "\(dir)/missing")
      let directory = #expect(throws: ConfigurationError.self) {
        try AuthSettings(user: "u", passwordFile: dir).resolvePassword()
      }
      #expect(directory?.message == "cannot read the password file: not a regular file")
      let auth = AuthSettings(user: "u", passwordFile: "\(dir)/pw")
      try writeFixture("hunter2", to: "\(dir)/pw")
      #expect(!String(describing: auth).contains("hunter2"))
      #expect(!String(reflecting: try loadConfiguration("etcd: {auth: {user: u, passwordFile: \(dir)/pw}}")).contains("hunter2"))
    }
  }

  @Test("checkFiles finds a missing template, at its line")
  func missingTemplate() throws {
    let yaml = "mappings:\n  - name: a\n    prefix: /a/\n    template: /nonexistent/a.tmpl\n    dest: /tmp/a\n"
    _ = try loadConfiguration(yaml)
    let error = try #require(loadConfigurationError(yaml, checkFiles: true))
    #expect(
      error.description
        == #"etcsync.yaml:4:15: mappings[0].template: cannot read the template "/nonexistent/a.tmpl": No such file or directory"#)
    #expect(error.code == .fileAccess)
  }

  @Test("checkFiles finds unreadable TLS and password files, naming the variable that gave them")
  func tlsAndPasswordFiles() throws {
    let error = try #require(loadConfigurationError("etcd: {tls: {ca: /nonexistent/ca.pem}}", checkFiles: true))
    #expect(error.field == "etcd.tls.ca")
    #expect(error.message == #"cannot read the CA file "/nonexistent/ca.pem": No such file or directory"#)
    let fromEnvironment = try #require(
      loadConfigurationError("", environment: ["ETCSYNC_USER": "u", "ETCSYNC_PASSWORD_FILE": "/nonexistent/pw"], checkFiles: true))
    #expect(
      fromEnvironment.description
        == #"ETCSYNC_PASSWORD_FILE: cannot read the password file "/nonexistent/pw": No such file or directory"#)
  }

  @Test("checkFiles looks commands up in the given PATH")
  func commands() throws {
    try withConfigurationTemporaryDirectory { dir in
      try writeFixture("#!/bin/sh\n", to: "\(dir)/bin/reload-app", permissions: 0o755)
      try writeFixture("not executable", to: "\(dir)/bin/plain", permissions: 0o644)
      let base = "mappings:\n  - {name: a, key: /a, dest: /tmp/etcsync-a, "
      let environment = ["PATH": "/nonexistent:\(dir)/bin"]
      _ = try loadConfiguration(base + "reload: [reload-app]}", environment: environment, checkFiles: true)
      _ = try loadConfiguration(base + "check: [\(dir)/bin/reload-app, \"{{.src}}\"]}", checkFiles: true)
      let missing = try #require(loadConfigurationError(base + "reload: [no-such-tool]}", environment: environment, checkFiles: true))
      #expect(missing.field == "mappings[0].reload[0]")
      #expect(missing.message == "\"no-such-tool\" is not found in PATH (/nonexistent:\(dir)/bin)")
      let plain = try #require(loadConfigurationError(base + "check: [\(dir)/bin/plain]}", checkFiles: true))
      #expect(plain.message == "\"\(dir)/bin/plain\" is not an executable file")
    }
  }

  @Test("checkFiles looks exec.command[0] up in the given PATH, like check and reload programs")
  func execCommand() throws {
    try withConfigurationTemporaryDirectory { dir in
      try writeFixture("#!/bin/sh\n", to: "\(dir)/bin/app", permissions: 0o755)
      try writeFixture("not executable", to: "\(dir)/bin/plain", permissions: 0o644)
      let environment = ["PATH": "/nonexistent:\(dir)/bin"]
      _ = try loadConfiguration("exec: {command: [app, --flag]}\n", environment: environment, checkFiles: true)
      _ = try loadConfiguration("exec: {command: [\(dir)/bin/app]}\n", checkFiles: true)
      let missing = try #require(
        loadConfigurationError("mappings: []\nexec:\n  command: [no-such-app, -x]\n", environment: environment, checkFiles: true))
      #expect(missing.field == "exec.command[0]")
      #expect(missing.code == .fileAccess)
      #expect(missing.line == 3, "\(missing)")
      #expect(missing.message == "\"no-such-app\" is not found in PATH (/nonexistent:\(dir)/bin)")
      let plain = try #require(loadConfigurationError("exec: {command: [\(dir)/bin/plain]}\n", checkFiles: true))
      #expect(plain.description.hasPrefix("etcsync.yaml:1:"), "\(plain)")
      #expect(plain.message == "\"\(dir)/bin/plain\" is not an executable file")
      // Only `check` looks at the machine: loading alone accepts it.
      _ = try loadConfiguration("exec: {command: [no-such-app]}\n", environment: environment)
    }
  }

  @Test("checkFiles knows users and groups by name")
  func principals() throws {
    let base = "mappings:\n  - {name: a, key: /a, dest: /tmp/etcsync-a, "
    _ = try loadConfiguration(base + "owner: root, group: \"0\"}", checkFiles: true)
    _ = try loadConfiguration(base + "owner: \"12345\"}", checkFiles: true)
    let user = try #require(loadConfigurationError(base + "owner: no-such-user-etcsync}", checkFiles: true))
    #expect(user.message == "no user named \"no-such-user-etcsync\" on this machine")
    let group = try #require(loadConfigurationError(base + "group: no-such-group-etcsync}", checkFiles: true))
    #expect(group.field == "mappings[0].group")
  }

  @Test("checkFiles checks what is already at the destination")
  func destinations() throws {
    try withConfigurationTemporaryDirectory { dir in
      try writeFixture("x", to: "\(dir)/file")
      let tree = try #require(
        loadConfigurationError("mappings:\n  - {name: a, kind: tree, prefix: /a/, dest: \(dir)/file}", checkFiles: true))
      #expect(tree.message == "\"\(dir)/file\" is a file; a tree mapping writes a directory")
      let file = try #require(loadConfigurationError("mappings:\n  - {name: a, key: /a, dest: \(dir)}", checkFiles: true))
      #expect(file.message == "\"\(dir)\" is a directory; a file mapping writes a file")
      let noParent = try #require(
        loadConfigurationError("mappings:\n  - {name: a, key: /a, dest: \(dir)/missing/a, createDirs: false}", checkFiles: true))
      #expect(noParent.message == "the directory \"\(dir)/missing\" does not exist and createDirs is false")
      _ = try loadConfiguration("mappings:\n  - {name: a, key: /a, dest: \(dir)/missing/a}", checkFiles: true)
      let state = try #require(loadConfigurationError("state: {dir: \(dir)/file}", checkFiles: true))
      #expect(state.message == "\"\(dir)/file\" exists and is not a directory")
    }
  }
}
