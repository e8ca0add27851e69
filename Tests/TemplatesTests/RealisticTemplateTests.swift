import Templates
import Testing

/// Templates written the way confd users write them, with the exact output confd would
/// produce. Each expected output was derived by hand from Go's text/template rules:
/// text is copied verbatim (newlines included) unless a `{{-`/`-}}` marker trims it,
/// declarations print nothing, ranges repeat their body text per element, and confd's
/// functions behave as in its memkv store (sorted keys, values sorted for getvs, ...).
@Suite struct RealisticTemplateTests {
  func lines(_ lines: String...) -> String { lines.joined(separator: "\n") }

  /// confd's documented nginx example, unchanged. confd's page shows the output without
  /// the blank lines that the `{{range}}`/`{{end}}` lines leave; Go (and so confd) keeps
  /// them: each iteration prints "\n    server X;\n", and "\n}" follows the range.
  @Test func nginxFromConfdDocs() throws {
    let values = [
      "/nginx/domain": "example.com", "/nginx/root": "/var/www/example_dotcom",
      "/nginx/worker_processes": "2", "/app/upstream/app1": "10.0.1.100:80",
      "/app/upstream/app2": "10.0.1.101:80",
    ]
    let template = lines(
      "worker_processes {{getv \"/nginx/worker_processes\"}};",
      "",
      "upstream app {",
      "{{range getvs \"/app/upstream/*\"}}",
      "    server {{.}};",
      "{{end}}",
      "}",
      "",
      "server {",
      "    listen 80;",
      "    server_name www.{{getv \"/nginx/domain\"}};",
      "    access_log /var/log/nginx/{{getv \"/nginx/domain\"}}.access.log;",
      "    error_log /var/log/nginx/{{getv \"/nginx/domain\"}}.log;",
      "",
      "    location / {",
      "        root              {{getv \"/nginx/root\"}};",
      "        index             index.html index.htm;",
      "        proxy_pass        http://app;",
      "        proxy_redirect    off;",
      "        proxy_set_header  Host             $host;",
      "    }",
      "}",
      "")
    let expected = lines(
      "worker_processes 2;",
      "",
      "upstream app {",
      "",
      "    server 10.0.1.100:80;",
      "",
      "    server 10.0.1.101:80;",
      "",
      "}",
      "",
      "server {",
      "    listen 80;",
      "    server_name www.example.com;",
      "    access_log /var/log/nginx/example.com.access.log;",
      "    error_log /var/log/nginx/example.com.log;",
      "",
      "    location / {",
      "        root              /var/www/example_dotcom;",
      "        index             index.html index.htm;",
      "        proxy_pass        http://app;",
      "        proxy_redirect    off;",
      "        proxy_set_header  Host             $host;",
      "    }",
      "}",
      "")
    #expect(try render(template, values) == expected)
  }

  /// confd's documented "complex example": lsdir, printf, gets and json per server.
  /// Per directory the body prints "\nupstream D {\n    " then, per server,
  /// "\n    server IP:80;\n    " (the two declarations print nothing), then "\n}\n\nserver {...}\n".
  @Test func nginxUpstreamsPerCustomer() throws {
    let values = [
      "/services/web/cust1/2": "{\"IP\": \"10.0.0.2\"}", "/services/web/cust2/2": "{\"IP\": \"10.0.0.4\"}",
      "/services/web/cust2/1": "{\"IP\": \"10.0.0.3\"}", "/services/web/cust1/1": "{\"IP\": \"10.0.0.1\"}",
    ]
    let template = lines(
      "{{range $dir := lsdir \"/services/web\"}}",
      "upstream {{base $dir}} {",
      "    {{$custdir := printf \"/services/web/%s/*\" $dir}}{{range gets $custdir}}",
      "    server {{$data := json .Value}}{{$data.IP}}:80;",
      "    {{end}}",
      "}",
      "",
      "server {",
      "    server_name {{base $dir}}.example.com;",
      "    location / {",
      "        proxy_pass {{base $dir}};",
      "    }",
      "}",
      "{{end}}")
    func block(_ name: String, _ first: String, _ second: String) -> String {
      lines(
        "", "upstream \(name) {", "    ", "    server \(first):80;", "    ", "    server \(second):80;", "    ",
        "}", "", "server {", "    server_name \(name).example.com;", "    location / {",
        "        proxy_pass \(name);", "    }", "}", "")
    }
    let expected = block("cust1", "10.0.0.1", "10.0.0.2") + block("cust2", "10.0.0.3", "10.0.0.4")
    #expect(try render(template, values) == expected)
  }

  /// HAProxy backends with trim markers, a key prefix (confd's `prefix`), lsdir, exists,
  /// getv with a default and gets per backend. The `{{-` markers remove the newline before
  /// each inner action, so every server line follows its backend line directly; the outer
  /// `{{end}}` has no marker, so each backend block ends with "\n" and starts with "\n".
  @Test func haproxyBackends() throws {
    let values = [
      "/prod/haproxy/global/maxconn": "4096",
      "/prod/haproxy/backends/api/balance": "roundrobin",
      "/prod/haproxy/backends/api/servers/api-1": "10.1.0.11:8080",
      "/prod/haproxy/backends/api/servers/api-2": "10.1.0.12:8080",
      "/prod/haproxy/backends/web/maxconn": "500",
      "/prod/haproxy/backends/web/servers/web-1": "10.2.0.21:80",
      "/prod/other/ignored": "x",
    ]
    let template = lines(
      "global",
      "    maxconn {{getv \"/global/maxconn\"}}",
      "",
      "defaults",
      "    mode http",
      "{{range $backend := lsdir \"/backends\"}}",
      "backend {{$backend}}",
      "    balance {{getv (printf \"/backends/%s/balance\" $backend) \"leastconn\"}}",
      "{{- if exists (printf \"/backends/%s/maxconn\" $backend)}}",
      "    fullconn {{getv (printf \"/backends/%s/maxconn\" $backend)}}",
      "{{- end}}",
      "{{- range gets (printf \"/backends/%s/servers/*\" $backend)}}",
      "    server {{base .Key}} {{.Value}} check",
      "{{- end}}",
      "{{end}}",
      "")
    let expected = lines(
      "global",
      "    maxconn 4096",
      "",
      "defaults",
      "    mode http",
      "",
      "backend api",
      "    balance roundrobin",
      "    server api-1 10.1.0.11:8080 check",
      "    server api-2 10.1.0.12:8080 check",
      "",
      "backend web",
      "    balance leastconn",
      "    fullconn 500",
      "    server web-1 10.2.0.21:80 check",
      "",
      "")
    let options = RenderOptions(keyPrefix: "/prod/haproxy/")
    #expect(try render(template, values, options: options) == expected)
  }

  /// A Java .properties file: getv with defaults, ls with replace, getenv with a default.
  /// `{{range ... -}}` drops the newline after the range line; the body line keeps its own
  /// "\n"; `{{end -}}` drops the newline after it, so "env=" follows the last feature line.
  @Test func javaProperties() throws {
    let values = [
      "/apps/billing/config/db/url": "jdbc:postgresql://db:5432/billing",
      "/apps/billing/config/db/user": "billing",
      "/apps/billing/config/db/pool/max": "20",
      "/apps/billing/config/feature/new-invoice": "true",
      "/apps/billing/config/feature/dark-mode": "false",
    ]
    let template = lines(
      "# Generated by etcsync. Do not edit.",
      "db.url={{getv \"/db/url\"}}",
      "db.user={{getv \"/db/user\"}}",
      "db.password={{getv \"/db/password\" \"\"}}",
      "db.pool.max={{getv \"/db/pool/max\" \"10\"}}",
      "db.pool.min={{getv \"/db/pool/min\" \"2\"}}",
      "{{range ls \"/feature\" -}}",
      "feature.{{replace . \"-\" \".\" -1}}={{getv (printf \"/feature/%s\" .)}}",
      "{{end -}}",
      "env={{getenv \"APP_ENV\" \"production\"}}",
      "")
    let expected = lines(
      "# Generated by etcsync. Do not edit.",
      "db.url=jdbc:postgresql://db:5432/billing",
      "db.user=billing",
      "db.password=",
      "db.pool.max=20",
      "db.pool.min=2",
      "feature.dark.mode=false",
      "feature.new.invoice=true",
      "env=production",
      "")
    let options = RenderOptions(keyPrefix: "/apps/billing/config", environment: [:])
    #expect(try render(template, values, options: options) == expected)
  }

  /// confd's own template tests, re-expressed: a template starting with "\n" and a range
  /// whose body is "\nkey: K\nval: V\n" gives "\n" + body per pair + "\n".
  @Test func confdGetsAndLsdirSamples() throws {
    let values = ["/test/user": "mary", "/test/pass": "abc", "/nada/url": "url"]
    let gets = "\n{{range gets \"/test/*\"}}\nkey: {{.Key}}\nval: {{.Value}}\n{{end}}\n"
    #expect(try render(gets, values) == "\n\nkey: /test/pass\nval: abc\n\nkey: /test/user\nval: mary\n\n")
    let dirs = ["/test/data/abc": "123", "/test/data/def/ghi": "456", "/test/data/jkl/mno": "789"]
    let lsdir = "\n{{range lsdir \"/test/data\"}}\nvalue: {{.}}\n{{end}}\n"
    #expect(try render(lsdir, dirs) == "\n\nvalue: def\n\nvalue: jkl\n\n")
    let split = "\n{{$data := split (getv \"/test/data\") \":\"}}\nf: {{index $data 0}}\nbr: {{index $data 1}}\n"
    #expect(try render(split, ["/test/data": "foo:bar:baz"]) == "\n\nf: foo\nbr: bar\n")
  }

  /// A consul-template style JSON/YAML document from a JSON value.
  @Test func documentFromJSONValue() throws {
    let values = ["/cfg/app": "{\"name\":\"billing\",\"replicas\":3,\"ports\":[8080,8443],\"debug\":false}"]
    let template = lines(
      "{{- $app := json (getv \"/cfg/app\") -}}",
      "name: {{$app.name}}",
      "replicas: {{$app.replicas}}",
      "ports:",
      "{{- range $app.ports}}",
      "  - {{.}}",
      "{{- end}}",
      "json: {{toJSON $app}}",
      "")
    let expected = lines(
      "name: billing",
      "replicas: 3",
      "ports:",
      "  - 8080",
      "  - 8443",
      "json: {\"debug\":false,\"name\":\"billing\",\"ports\":[8080,8443],\"replicas\":3}",
      "")
    #expect(try render(template, values) == expected)
  }
}
