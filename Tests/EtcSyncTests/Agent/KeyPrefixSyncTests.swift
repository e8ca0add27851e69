import EtcSync
import EtcdClient
import EtcdTestSupport
import Foundation
import Testing

/// Issue 14 §3 against a real etcd: a confd template under a per-host `keyPrefix` from
/// `${HOSTNAME}`, `{{.dest}}`/`{{.name}}` in the commands, and the template options.
@Suite("Agent: keyPrefix, variables and template options")
struct KeyPrefixSyncTests {
  @Test("getv \"/db/url\" reads <keyPrefix>/db/url; the host's prefix comes from ${HOSTNAME}")
  func keyPrefixedTemplate() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    // With [[ ]] as delimiters, {{ }} is text (a Helm template rendered by etcsync).
    try Disk.write(h.dir("templates/helm.tmpl"), "image: {{ .Values.image }} url: [[ getv \"/db/url\" ]]\n")
    let yaml = """
      state: {dir: \(h.stateDirectory)}
      keyPrefix: /config/hosts/${HOSTNAME}
      mappings:
        - name: app
          template: templates/app.conf.tmpl
          dest: \(h.dir("out/app.conf"))
          missingKey: zero
          check: [sh, -c, 'test -s "$1" && echo "check $2 $3" >> "$4"', sh, "{{.src}}", "{{.name}}", "{{ .dest }}", "\(h.commandLog)"]
          reload: [sh, -c, 'echo "reload $1 $2" >> "$3"', sh, "{{.name}}", "{{.dest}}", "\(h.commandLog)"]
        - name: helm
          template: templates/helm.tmpl
          prefix: /db
          delimiters: ["[[", "]]"]
          dest: \(h.dir("out/helm.yaml"))
      """
    let configuration = try AgentConfiguration.load(
      yaml: yaml, baseDirectory: h.dir.path, environment: ["HOSTNAME": "web-7"])
    #expect(configuration.mappings[0].prefixes == ["/config/hosts/web-7"])
    #expect(configuration.mappings[1].prefixes == ["/config/hosts/web-7/db"])
    try await h.put("/config/hosts/web-7/db/url", "postgres://db-7/app")
    try await h.put("/config/hosts/web-7/servers/b", "10.0.0.2")
    try await h.put("/config/hosts/web-7/servers/a", "10.0.0.1")
    try await h.put("/config/hosts/web-7/extra", "{}")
    // Another host's keys and a key merely sharing the prefix's bytes stay invisible.
    try await h.put("/config/hosts/web-8/db/url", "postgres://db-8/app")
    try await h.put("/config/hosts/web-70/db/url", "postgres://db-70/app")
    try await h.put("/db/url", "unprefixed")

    // A confd template, unchanged: it names keys relative to the prefix.
    try Disk.write(h.dir("templates/app.conf.tmpl"), """
      url = {{ getv "/db/url" }}
      {{- range gets "/servers/*" }}
      server {{ base .Key }} {{ .Value }}
      {{- end }}
      mode = {{ $d := json (getv "/extra") }}{{ $d.missing }}

      """)
    let results = try await h.agent(configuration).sync()
    #expect(results.map(\.error) == [nil, nil])
    #expect(Disk.read(h.dir("out/app.conf")) == """
      url = postgres://db-7/app
      server a 10.0.0.1
      server b 10.0.0.2
      mode = <no value>

      """)
    #expect(Disk.read(h.dir("out/helm.yaml")) == "image: {{ .Values.image }} url: postgres://db-7/app\n")
    #expect(h.commandLines == ["check app \(h.dir("out/app.conf"))", "reload app \(h.dir("out/app.conf"))"])
  }

  @Test("without missingKey: zero the same template fails and writes nothing")
  func missingKeyDefaultsToError() async throws {
    let h = try await AgentHarness.start()
    defer { h.stop() }
    try Disk.write(h.dir("templates/t.tmpl"), "{{ $d := json (getv \"/extra\") }}{{ $d.missing }}\n")
    let yaml = """
      state: {dir: \(h.stateDirectory)}
      mappings:
        - name: t
          keyPrefix: app
          template: templates/t.tmpl
          dest: \(h.dir("out/t.conf"))
      """
    let configuration = try AgentConfiguration.load(yaml: yaml, baseDirectory: h.dir.path)
    try await h.put("/app/extra", "{}")
    let results = try await h.agent(configuration).sync()
    #expect(results[0].error?.contains("map has no entry for key \"missing\"") == true)
    #expect(!Disk.exists(h.dir("out/t.conf")))
  }
}
