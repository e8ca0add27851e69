import EtcdTestSupport
import Foundation
import Glibc
import Testing

@testable import EtcSync

/// `etcsync import confd`: confd directories in the shape of confd's examples and integration
/// tests (Fixtures/confd), converted to the exact YAML expected, loaded back with etcsync's
/// own configuration loader.
@Suite("Import from confd")
struct ConfdImportTests {
  static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/confd").path

  static func fixture(_ name: String) -> String { "\(Self.fixtures)/\(name)" }

  @Test("integration: etcdv3 without TLS, resource prefixes, commands with and without shell syntax")
  func integration() throws {
    let dir = Self.fixture("integration")
    let conversion = try ConfdImport.convert(directory: dir)
    #expect(conversion.yaml == """
      # Converted by `etcsync import confd \(dir)`. Check it with `etcsync check -c FILE`.
      log:
        level: debug
      etcd:
        endpoints: ["http://127.0.0.1:2379", "http://127.0.0.1:22379"]
      mappings:
        - name: basic
          template: \(dir)/templates/basic.conf.tmpl
          prefixes: [/key, /database/host, /database/password, /database/port, /database/username]
          dest: /tmp/confd-basic-test.conf
          mode: "0644"
          check: [test, "-s", "{{.src}}"]
          reload: [/usr/bin/systemctl, reload, app.service]
        - name: iteration
          template: \(dir)/templates/iteration.conf.tmpl
          prefixes: [/upstream]
          dest: /tmp/confd-iteration-test.conf
          keyPrefix: /app
          mode: "0640"
          owner: "0"
          group: "33"
          check: [sh, "-c", grep -q 'server ' "$1" && cp "$1" /var/backups/upstream.conf, sh, "{{.src}}"]
          reload: [sh, "-c", "kill -HUP $(cat $${PIDFILE:-/run/nginx.pid})"]
        - name: nested
          template: \(dir)/templates/nested/nested.conf.tmpl
          prefixes: [/nested/]
          dest: /tmp/confd-nested-test.conf
          check: [sh, "-c", /usr/sbin/nginx -t -c "$1", sh, "{{.src}}"]

      """)
    #expect(conversion.warnings.map(\.description) == [
      "\(dir)/confd.toml:8: interval has no equivalent: etcsync does not poll, `etcsync run` watches etcd and renders on every change (use wait: {min, max} to coalesce changes)",
      "\(dir)/confd.toml:9: watch needs no setting: `etcsync run` always watches",
      "\(dir)/confd.toml:10: keep-stage-file has no equivalent: etcsync removes a staged file that it does not rename into place",
      "\(dir)/conf.d/iteration.toml:12: check_cmd needs a shell; written as [sh, -c, …] with {{.src}} passed as $1",
      "\(dir)/conf.d/iteration.toml:13: reload_cmd needs a shell; written as [sh, -c, …]",
      "\(dir)/conf.d/nested.toml:5: check_cmd needs a shell; written as [sh, -c, …] with {{.src}} passed as $1",
    ])
    let configuration = try AgentConfiguration.load(yaml: conversion.yaml, sourceName: "imported.yaml")
    #expect(configuration.mappings.map(\.name) == ["basic", "iteration", "nested"])
    #expect(configuration.etcd.endpoints == ["http://127.0.0.1:2379", "http://127.0.0.1:22379"])
    let iteration = configuration.mappings[1]
    #expect(iteration.keyPrefix == "/app")
    #expect(iteration.reload == ["sh", "-c", "kill -HUP $(cat ${PIDFILE:-/run/nginx.pid})"])
    #expect(iteration.check == ["sh", "-c", "grep -q 'server ' \"$1\" && cp \"$1\" /var/backups/upstream.conf", "sh", "{{.src}}"])
    // No placeholder inside a shell script: `etcsync check` has nothing to warn about.
    for mapping in configuration.mappings {
      #expect(ArgumentSubstitution.placeholdersInShellScripts(mapping.check ?? []).isEmpty)
      #expect(ArgumentSubstitution.placeholdersInShellScripts(mapping.reload ?? []).isEmpty)
    }
    #expect(configuration.warnings.allSatisfy { !"\($0)".contains("placeholder") })
  }

  @Test("secure: a global prefix, TLS, user and password, settings with no equivalent")
  func secure() throws {
    let dir = Self.fixture("secure")
    let conversion = try ConfdImport.convert(directory: dir)
    #expect(conversion.yaml == """
      # Converted by `etcsync import confd \(dir)`. Check it with `etcsync check -c FILE`.
      keyPrefix: /production
      etcd:
        endpoints: ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
        auth:
          user: confd
          passwordFile: /etc/etcsync/etcd-password
        tls:
          ca: /etc/confd/ssl/ca.pem
          cert: /etc/confd/ssl/client.pem
          key: /etc/confd/ssl/client-key.pem
      mappings:
        - name: myapp-nginx
          template: \(dir)/templates/nginx.tmpl
          prefixes: [/subdomain, /upstream]
          dest: /etc/nginx/sites-enabled/myapp.conf
          mode: "01204"
          check: [/usr/sbin/nginx, "-t", "-c", "{{.src}}"]
          reload: [/usr/sbin/service, nginx, reload]

      """)
    #expect(!conversion.yaml.contains("s3cret"))
    #expect(conversion.warnings.map(\.description) == [
      "\(dir)/confd.toml:7: client_insecure has no equivalent: etcsync always verifies the members' certificates (set etcd.tls.ca to their CA, or etcd.tls.serverName)",
      "\(dir)/confd.toml:9: password is not copied: etcsync reads the password from a file only; write it to /etc/etcsync/etcd-password (mode 0600) or point ETCSYNC_PASSWORD_FILE or --password-file at the file that holds it",
      "\(dir)/confd.toml:11: srv_domain has no equivalent: list the members in etcd.endpoints",
      "\(dir)/confd.toml:12: noop has no setting: use `etcsync diff` or `etcsync sync --dry-run`",
      "\(dir)/confd.toml:14: secret_keyring has no equivalent: cget, cgets, cgetv and cgetvs are not implemented",
      "\(dir)/conf.d/myapp-nginx.toml:5: owner is not a confd template resource key; left out",
      "\(dir)/conf.d/myapp-nginx.toml:2: prefix \"/myapp\" is replaced by confd.toml's prefix \"/production\" (confd uses the global one when it is set); the mapping uses \"/production\"",
      "\(dir)/conf.d/myapp-nginx.toml:6: mode \"644\" is read by confd as a decimal number (Go's base prefix rules), which is 01204; written as \"01204\", check that this is what you meant (\"0644\" is octal)",
    ])
    let configuration = try AgentConfiguration.load(yaml: conversion.yaml, sourceName: "imported.yaml")
    #expect(configuration.mappings.map(\.keyPrefix) == ["/production"])
    #expect(configuration.etcd.auth == AuthSettings(user: "confd", passwordFile: "/etc/etcsync/etcd-password"))
    #expect(configuration.etcd.tls == TLSSettings(ca: "/etc/confd/ssl/ca.pem", cert: "/etc/confd/ssl/client.pem", key: "/etc/confd/ssl/client-key.pem"))
  }

  @Test("a TOML syntax error names the file and line; a missing directory is named")
  func unreadable() throws {
    let broken = Self.fixture("broken")
    #expect(throws: ConfdImport.Failure(
      file: "\(broken)/conf.d/bad.toml", line: 4, message: "invalid TOML: expected ',' or ']' in an array, found '\"'")) {
      try ConfdImport.convert(directory: broken)
    }
    let missing = Self.fixture("absent")
    #expect(throws: ConfdImport.Failure(
      file: missing, line: nil, message: "cannot read the confd directory: No such file or directory")) {
      try ConfdImport.convert(directory: missing)
    }
  }

  @Test("without confd.toml: a warning, no etcd section; a resource without src or of the wrong type fails")
  func noGlobalFileAndBadResources() throws {
    let dir = TemporaryDirectory("confd-import")
    try Disk.write(dir("conf.d/app.toml"), """
      [template]
      src = "app.tmpl"
      dest = "/etc/app.conf"
      keys = ["/app/"]
      reload_cmd = "true"
      """)
    let conversion = try ConfdImport.convert(directory: dir.path)
    #expect(!conversion.yaml.contains("etcd:"))
    #expect(conversion.warnings.map(\.description) == [
      "\(dir.path)/confd.toml: not found: confd took its settings from flags; etcd.endpoints is left at etcsync's default (http://127.0.0.1:2379), see docs/coming-from-confd.md for the flags",
      "\(dir.path)/conf.d/app.toml:2: the template \(dir.path)/templates/app.tmpl does not exist or cannot be read",
    ])
    _ = try AgentConfiguration.load(yaml: conversion.yaml)

    try Disk.write(dir("conf.d/app.toml"), "[template]\ndest = \"/etc/app.conf\"\nsrc = \"\"\n")
    #expect(throws: ConfdImport.Failure(
      file: dir("conf.d/app.toml"), line: 3,
      message: "src is missing or empty (confd refuses the resource: empty src template)")) {
      try ConfdImport.convert(directory: dir.path)
    }
    try Disk.write(dir("conf.d/app.toml"), "[template]\nsrc = \"a\"\ndest = \"/etc/app.conf\"\n\nuid = \"root\"\n")
    #expect(throws: ConfdImport.Failure(file: dir("conf.d/app.toml"), line: 5, message: "uid: expected an integer")) {
      try ConfdImport.convert(directory: dir.path)
    }
  }

  @Test("sync-only drops the commands; other backends warn; field names ignore case; names stay unique; $ is kept")
  func edges() throws {
    let dir = TemporaryDirectory("confd-import-edges")
    try Disk.write(dir("confd.toml"), "backend = \"redis\"\nnodes = [\"10.0.0.9:6379\"]\nsync-only = true\ntable = \"t\"\n")
    try Disk.write(dir("templates/a.tmpl"), "{{getv \"/a\"}}\n")
    try Disk.write(dir("conf.d/a.toml"), """
      [Template]
      Src = "a.tmpl"
      DEST = "/srv/${NOT_A_VARIABLE}/a"
      Keys = ["/a"]
      check_cmd = "test -s {{.src}}"
      """)
    try Disk.write(dir("conf.d/a/b.toml"), "[template]\nsrc = \"a.tmpl\"\ndest = \"/srv/b\"\nkeys = [\"/b\"]\n")
    try Disk.write(dir("conf.d/a-b.toml"), "[template]\nsrc = \"a.tmpl\"\ndest = \"/srv/c\"\n")
    let conversion = try ConfdImport.convert(directory: dir.path)
    #expect(conversion.yaml == """
      # Converted by `etcsync import confd \(dir.path)`. Check it with `etcsync check -c FILE`.
      etcd:
        endpoints: ["http://10.0.0.9:6379"]
      mappings:
        - name: a-b
          template: \(dir.path)/templates/a.tmpl
          prefixes: [/]
          dest: /srv/c
        - name: a
          template: \(dir.path)/templates/a.tmpl
          prefixes: [/a]
          dest: /srv/$${NOT_A_VARIABLE}/a
        - name: a-b-2
          template: \(dir.path)/templates/a.tmpl
          prefixes: [/b]
          dest: /srv/b

      """)
    #expect(conversion.warnings.map(\.description) == [
      "\(dir.path)/confd.toml:1: backend \"redis\" has no equivalent: etcsync reads etcd v3 only; the endpoints below are confd's nodes for redis",
      "\(dir.path)/confd.toml:3: sync-only has no equivalent: check and reload commands are left out of every mapping, as confd skipped them",
      "\(dir.path)/confd.toml:4: table is a setting of another confd backend; it has no equivalent",
      "\(dir.path)/conf.d/a-b.toml:1: no keys: confd reads nothing for this resource; the mapping reads the whole keyspace (/)",
    ])
    let configuration = try AgentConfiguration.load(yaml: conversion.yaml)
    #expect(configuration.mappings.map(\.dest) == ["/srv/c", "/srv/${NOT_A_VARIABLE}/a", "/srv/b"])
    #expect(configuration.mappings.allSatisfy { $0.check == nil })
  }

  @Test("values a YAML reader would take for something else, or that need quotes in a list, load back as written")
  func quoting() throws {
    let dir = TemporaryDirectory("confd-import-quoting")
    try Disk.write(dir("templates/a.tmpl"), "x\n")
    let check = "echo yes null -1 0644 a,b a:b 'c: d' 'x #y' '[z]' '{w}' e\u{301}"
    let dest = "/srv/a: b #c/y"
    try Disk.write(dir("conf.d/a.toml"), """
      [template]
      src = "a.tmpl"
      dest = "\(dest)"
      keys = ["/k,1", "/k:2", "/-3", "/null"]
      check_cmd = "\(check)"
      """)
    let conversion = try ConfdImport.convert(directory: dir.path)
    let mapping = try #require(try AgentConfiguration.load(yaml: conversion.yaml).mappings.first, "\(conversion.yaml)")
    #expect(mapping.dest == dest, "\(conversion.yaml)")
    #expect(mapping.prefixes == ["/k,1", "/k:2", "/-3", "/null"], "\(conversion.yaml)")
    #expect(mapping.check == ConfdCommandLine.convert(check, placeholders: true).argv, "\(conversion.yaml)")
    // A NUL cannot be written: refused, naming what holds it.
    try Disk.write(dir("conf.d/a.toml"), "[template]\nsrc = \"a.tmpl\"\ndest = \"/srv/a\\u0000b\"\nkeys = [\"/k\"]\n")
    #expect(throws: ConfdImport.Failure(file: dir.path, line: nil, message: "dest: a value holds a NUL byte, which the configuration cannot carry")) {
      try ConfdImport.convert(directory: dir.path)
    }
  }

  @Test("a $ or { joined to a combining mark is escaped as the configuration's expander reads it (bytes, not characters)")
  func dollarsBeforeCombiningMarks() throws {
    // `$` + U+0301 is one Character but still the byte `$` to the expander; so is `{` + U+0301.
    #expect(YAMLText.escapeDollars("$$\u{301}") == "$$$\u{301}")
    #expect(YAMLText.escapeDollars("${\u{301}A}") == "$${\u{301}A}")
    #expect(YAMLText.escapeDollars("$\u{301}{x}") == "$\u{301}{x}")
    let dir = TemporaryDirectory("confd-import-combining")
    try Disk.write(dir("templates/a.tmpl"), "x\n")
    let dest = "/srv/$$\u{301}/${\u{301}A}/$\u{301}$/a"
    let check = "test -s /srv/${\u{301}HOME}/$$\u{301}"
    try Disk.write(dir("conf.d/a.toml"), """
      [template]
      src = "a.tmpl"
      dest = "\(dest)"
      keys = ["/k"]
      check_cmd = "\(check)"
      """)
    let conversion = try ConfdImport.convert(directory: dir.path)
    // Loaded back (variables expanded), every value reads as confd's did.
    let mapping = try #require(try AgentConfiguration.load(yaml: conversion.yaml).mappings.first, "\(conversion.yaml)")
    #expect(Array(mapping.dest.utf8) == Array(dest.utf8), "\(conversion.yaml)")
    #expect(mapping.check?.map { Array($0.utf8) } == ConfdCommandLine.convert(check, placeholders: true).argv.map { Array($0.utf8) }, "\(conversion.yaml)")
  }

  @Test("command strings: split into words, or sh -c with {{.src}} as $1 whatever the quoting",
        arguments: [
          ("/usr/sbin/nginx -t -c {{.src}}", true, ["/usr/sbin/nginx", "-t", "-c", "{{.src}}"]),
          ("  service  nginx\treload ", false, ["service", "nginx", "reload"]),
          ("promtool check config --file={{ .src }}", true, ["promtool", "check", "config", "--file={{.src}}"]),
          ("A=1 run {{.src}}", true, ["sh", "-c", "A=1 run \"$1\"", "sh", "{{.src}}"]),
          ("cat {{.src}} | grep -q x", true, ["sh", "-c", "cat \"$1\" | grep -q x", "sh", "{{.src}}"]),
          ("echo '{{.src}}' \"{{.src}}\"", true, ["sh", "-c", "echo ''\"$1\"'' \"$1\"", "sh", "{{.src}}"]),
          ("cp {{.src}} /x; reload", false, ["sh", "-c", "cp {{.src}} /x; reload"]),
          ("systemctl reload app || true", false, ["sh", "-c", "systemctl reload app || true"]),
        ] as [(String, Bool, [String])])
  func commands(command: String, placeholders: Bool, argv: [String]) {
    #expect(ConfdCommandLine.convert(command, placeholders: placeholders).argv == argv)
  }

  @Test("the TOML subset: strings, escapes, multi-line strings, numbers, arrays, tables, errors")
  func toml() throws {
    let table = try ConfdTOML.parse("""
      # comment
      a = "x\\ty\\u00e9" # trailing
      b = 'C:\\path'
      c = \"\"\"
      one
      two\\
          three\"\"\"
      d = '''
      raw \\n'''
      e = [ 1, 0x10, 0o17, -2, 1_000, ]
      f = true
      "quoted key" = 1.5
      [t.u]
      g = { h = "i" }
      """)
    #expect(table["a"] == .string("x\tyé"))
    #expect(table["b"] == .string("C:\\path"))
    #expect(table["c"] == .string("one\ntwothree"))
    #expect(table["d"] == .string("raw \\n"))
    #expect(table["e"] == .array([.integer(1), .integer(16), .integer(15), .integer(-2), .integer(1000)]))
    #expect(table["f"] == .bool(true))
    #expect(table["quoted key"] == .float("1.5"))
    #expect(table.lines["e"] == 10)
    guard case .table(let t)? = table["t"], case .table(let u)? = t["u"], case .table(let g)? = u["g"] else {
      Issue.record("no table t.u.g")
      return
    }
    #expect(g["h"] == .string("i"))
    #expect(throws: ConfdTOML.SyntaxError(line: 2, message: "a is defined twice")) { try ConfdTOML.parse("a = 1\na = 2\n") }
    #expect(throws: ConfdTOML.SyntaxError(line: 1, message: "unterminated string")) { try ConfdTOML.parse("a = \"x\n") }
    #expect(throws: ConfdTOML.SyntaxError(line: 1, message: "arrays of tables ([[…]]) are not supported")) {
      try ConfdTOML.parse("[[x]]\n")
    }
  }

  @Test("the CLI prints the YAML on stdout, warnings on stderr, and exits 2 naming file:line")
  func cli() async throws {
    let ok = try await EtcsyncProcess.run(["import", "confd", Self.fixture("integration")])
    #expect(ok.status == 0)
    #expect(ok.output == (try ConfdImport.convert(directory: Self.fixture("integration"))).yaml)
    #expect(ok.error.contains("etcsync: warning: \(Self.fixture("integration"))/confd.toml:9: watch needs no setting"))
    let bad = try await EtcsyncProcess.run(["import", "confd", Self.fixture("broken")])
    #expect(bad.status == 2)
    #expect(bad.output.isEmpty)
    #expect(bad.error.contains("\(Self.fixture("broken"))/conf.d/bad.toml:4: invalid TOML"))
    // The printed file passes `etcsync check` (templates compile, commands are found).
    let dir = TemporaryDirectory("confd-import-cli")
    try Disk.write(dir("etcsync.yaml"), ok.output)
    let check = try await EtcsyncProcess.run(["check", "-c", dir("etcsync.yaml")])
    #expect(check.status == 0, "\(check.error)")
  }

  @Test("end to end: converted confd resources render against a real etcd what confd would write")
  func endToEnd() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let confd = h.dir("confd")
    for template in ["basic.conf.tmpl", "iteration.conf.tmpl"] {
      try Disk.write("\(confd)/templates/\(template)", Disk.read(Self.fixture("integration/templates/\(template)")) ?? "")
    }
    try Disk.write("\(confd)/confd.toml", "backend = \"etcdv3\"\nnodes = [\"\(h.server.endpoint)\"]\nwatch = true\n")
    try Disk.write("\(confd)/conf.d/basic.toml", """
      [template]
      src = "basic.conf.tmpl"
      dest = "\(h.dir("out/basic.conf"))"
      keys = ["/key", "/database"]
      check_cmd = "test -s {{.src}}"
      """)
    try Disk.write("\(confd)/conf.d/upstream.toml", """
      [template]
      prefix = "app"
      src = "iteration.conf.tmpl"
      dest = "\(h.dir("out/upstream.conf"))"
      mode = "0640"
      keys = ["/upstream"]
      check_cmd = "grep -q 'server 10.0.0.1:80;' {{.src}}"
      reload_cmd = "echo reloaded >> '\(h.commandLog)'"
      """)
    for (key, value) in [
      ("/key", "foobar"), ("/database/host", "127.0.0.1"), ("/database/password", "p@sSw0rd"),
      ("/database/port", "3306"), ("/database/username", "confd"),
      ("/app/upstream/app2", "10.0.0.2:80"), ("/app/upstream/app1", "10.0.0.1:80"),
      ("/app/other", "not read"), ("/apple/upstream/x", "outside the prefix"),
    ] {
      try await h.put(key, value)
    }
    let conversion = try ConfdImport.convert(directory: confd)
    let loaded = try AgentConfiguration.load(yaml: conversion.yaml, sourceName: "imported.yaml")
    #expect(loaded.etcd.endpoints == [h.server.endpoint])
    let results = try await h.agent(h.configuration(loaded.mappings)).sync()
    #expect(results.map { $0.error == nil } == [true, true], "\(results.map { String(describing: $0.error) })")
    // What confd 0.16 writes for these keys, computed by hand from the templates.
    #expect(Disk.read(h.dir("out/basic.conf")) == """
      key: foobar
      [database]
      host=127.0.0.1
      password=p@sSw0rd
      port=3306
      username=confd

      """)
    #expect(Disk.read(h.dir("out/upstream.conf")) == """
      upstream app {
          server 10.0.0.1:80;
          server 10.0.0.2:80;
      }
      # app1
      # app2

      """)
    var info = stat()
    #expect(stat(h.dir("out/upstream.conf"), &info) == 0)
    #expect(info.st_mode & 0o7777 == 0o640)
    #expect(h.commandLines == ["reloaded"])
  }
}
