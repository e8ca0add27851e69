import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Testing

/// `{{.src}}` of a per-file tree holds bytes of an etcd key: inside a shell's `-c` script
/// the shell would interpret them. The value is refused there unless inert, `check` warns
/// about the form, and the positional form (`[sh, -c, 'cmd "$1"', sh, "{{.src}}"]`) works
/// with any key.
@Suite("Placeholders inside shell scripts")
struct ShellPlaceholderTests {
  @Test("which argument a shell runs as its script", arguments: [
    (["sh", "-c", "S", "sh", "{{.src}}"], [2]),
    (["/bin/bash", "-ec", "S"], [2]),
    (["bash", "-o", "pipefail", "-c", "S"], [4]),
    (["sh", "-e", "-c", "S"], [3]),
    (["sh", "--norc", "-c", "--", "S"], [4]),
    (["env", "-i", "A=1", "sh", "-c", "S"], [5]),
    (["busybox", "sh", "-c", "S"], [3]),
    // Wrappers the check knew nothing of used to hide the script.
    (["timeout", "5", "sh", "-c", "S"], [4]),
    (["sudo", "-u", "app", "/bin/sh", "-c", "S"], [5]),
    (["nice", "-n", "5", "bash", "--rcfile", "f", "-c", "S"], [7]),
    (["flock", "/run/l", "dash", "-c", "S"], [4]),
    (["sh", "script.sh", "{{.src}}"], []),
    (["nginx", "-t", "-c", "{{.src}}"], []),
    (["sh", "-c"], []),
  ])
  func scripts(argv: [String], expected: [Int]) {
    #expect(ArgumentSubstitution.shellScriptIndices(argv) == expected)
  }

  @Test("a hostile value is refused in a script, accepted as a positional argument; an inert one is substituted")
  func checked() throws {
    let hostile = ["src": "/d/.a$(reboot) b.etcsync-tmp-x"]
    let error = #expect(throws: CommandError.self) {
      try ArgumentSubstitution.checkedSubstitute(["sh", "-c", "lint {{.src}}"], with: hostile)
    }
    #expect(error?.code == .unsafeSubstitution)
    #expect(error?.description.contains("positional argument") == true)
    #expect(try ArgumentSubstitution.checkedSubstitute(["sh", "-c", "lint \"$1\"", "sh", "{{.src}}"], with: hostile)
      == ["sh", "-c", "lint \"$1\"", "sh", "/d/.a$(reboot) b.etcsync-tmp-x"])
    #expect(try ArgumentSubstitution.checkedSubstitute(["nginx", "-t", "-c", "{{.src}}"], with: hostile).last == hostile["src"])
    let inert = ["src": "/etc/app/.conf.etcsync-tmp-Ab3_x"]
    #expect(try ArgumentSubstitution.checkedSubstitute(["sh", "-c", "lint {{.src}}"], with: inert)
      == ["sh", "-c", "lint /etc/app/.conf.etcsync-tmp-Ab3_x"])
  }

  @Test("the configuration warns about a placeholder in a shell script, not about the positional form")
  func warnings() throws {
    let configuration = try AgentConfiguration.load(yaml: """
      mappings:
        - {name: bad, kind: tree, prefix: /a/, dest: /srv/a, swap: in-place, check: [sh, -c, "lint {{.src}}"]}
        - {name: good, kind: tree, prefix: /b/, dest: /srv/b, swap: in-place, check: [sh, -c, 'lint "$1"', sh, "{{.src}}"]}
      """)
    #expect(configuration.warnings.count == 1)
    #expect(configuration.warnings.first?.hasPrefix("mappings[0].check[2]: {{.src}} inside a shell script") == true, "\(configuration.warnings)")
  }

  @Test("the configuration warns about a shell script written with $$ or ${, which etcsync now expands")
  func dollarWarnings() throws {
    let configuration = try AgentConfiguration.load(
      yaml: """
        mappings:
          - {name: pid, template: /t, prefix: /a/, dest: /srv/a, reload: [sh, -c, 'echo $$ > /run/app.pid']}
          - {name: var, template: /t, prefix: /b/, dest: /srv/b, reload: [sh, -c, 'kill -HUP $(cat ${PIDFILE})']}
          - {name: plain, template: /t, prefix: /c/, dest: /srv/c, reload: [sh, -c, 'kill -HUP "$(cat /run/c.pid)"']}
          - {name: noshell, template: /t, prefix: /d/, dest: '/srv/${SUFFIX}', reload: [touch, '/run/$$']}
        """, environment: ["PIDFILE": "/run/b.pid", "SUFFIX": "d"])
    let warnings = configuration.warnings
    #expect(warnings.count == 2, "\(warnings)")
    #expect(warnings.first?.hasPrefix("mappings[0].reload[2]: the shell script is written with $$ or ${") == true)
    #expect(warnings.first?.contains("runs 'echo $ > /run/app.pid', not 'echo $$ > /run/app.pid'") == true)
    #expect(warnings.first?.contains("write $$$$ or $${...}") == true)
    #expect(warnings.last?.hasPrefix("mappings[1].reload[2]:") == true)
    #expect(warnings.last?.contains("runs 'kill -HUP $(cat /run/b.pid)'") == true)
    #expect(configuration.mappings[0].reload == ["sh", "-c", "echo $ > /run/app.pid"])
    // Written as the upgrade note says, the script keeps its meaning and is not warned about.
    let fixed = try AgentConfiguration.load(yaml: """
      mappings:
        - {name: pid, template: /t, prefix: /a/, dest: /srv/a, reload: [sh, -c, 'echo $$$$ > /run/app.pid']}
        - {name: proc, template: /t, prefix: /b/, dest: /srv/b, reload: [sh, -c, 'for d in /proc/[0-9]*; do echo $${d#/proc/}; done']}
      """)
    #expect(fixed.mappings[0].reload == ["sh", "-c", "echo $$ > /run/app.pid"])
    #expect(fixed.mappings[1].reload?.last == "for d in /proc/[0-9]*; do echo ${d#/proc/}; done")
    #expect(fixed.warnings.isEmpty, "\(fixed.warnings)")
  }

  @Test("a per-file tree check never runs a key's bytes as shell code")
  func noInjection() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    let log = h.dir("injected.log")
    let hostileKey = "/k/x;echo injected>>$L;#"
    try await h.put("/k/plain", "1")
    try await h.put(hostileKey, "2")
    // The unsafe form: the plain key is checked and written, the hostile one is refused.
    let unsafe = Mapping(
      name: "unsafe", kind: .tree, prefixes: ["/k/"], dest: h.dir("unsafe"),
      check: ["sh", "-c", "L='\(log)'; test -f {{.src}}"], swap: .inPlace)
    let first = try await h.agent(h.configuration([unsafe])).sync()
    #expect(first[0].error?.contains("refusing to put {{.src}}") == true, "\(first[0].error ?? "")")
    #expect(Disk.read(h.dir("unsafe/plain")) == "1")
    #expect(!Disk.exists(h.dir("unsafe/x;echo injected>>$L;#")))
    #expect(!Disk.exists(log))
    // The positional form takes every key.
    let safe = Mapping(
      name: "safe", kind: .tree, prefixes: ["/k/"], dest: h.dir("safe"),
      check: ["sh", "-c", "L='\(log)'; test -f \"$1\"", "sh", "{{.src}}"], swap: .inPlace)
    let second = try await h.agent(h.configuration([safe])).sync()
    #expect(second[0].error == nil, "\(second[0].error ?? "")")
    #expect(Disk.read(h.dir("safe/x;echo injected>>$L;#")) == "2")
    #expect(!Disk.exists(log))
  }
}
