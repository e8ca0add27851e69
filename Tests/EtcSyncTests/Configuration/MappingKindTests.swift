import EtcSync
import Testing

@Suite("Mapping kinds and their keys")
struct MappingKindTests {
  @Test(
    "the kind is inferred from template, key or format",
    arguments: [
      ("name: a\nprefix: /a/\ntemplate: /t.tmpl\ndest: /a", Mapping.Kind.template),
      ("name: a\nkey: /a\ndest: /a", .file),
      ("name: a\nprefix: /a/\nformat: json\ndest: /a.json", .format),
      ("name: a\nkind: tree\nprefix: /a/\ndest: /a", .tree),
      ("name: a\nkind: format\nprefix: /a/\nformat: toml\ndest: /a.toml", .format),
    ])
  func inference(body: String, kind: Mapping.Kind) throws {
    #expect(try loadConfiguration(yamlWithOneMapping(body)).mappings[0].kind == kind)
  }

  @Test(
    "a kind that cannot be inferred is asked for",
    arguments: [
      ("name: a\nprefix: /a/\ndest: /a", "mappings[0].kind", "missing; set kind: template, tree, file or format (a prefix alone could be a tree or a format mapping)"),
      ("name: a\ndest: /a", "mappings[0].kind", "missing; set kind: template, tree, file or format (no template:, key: or format: is given)"),
      ("name: a\ntemplate: /t\nkey: /k\ndest: /a", "mappings[0].key", "both template: (kind template) and key: (kind file) are given; keep the one for this mapping's kind, or set kind"),
    ])
  func uninferable(body: String, field: String, message: String) throws {
    let error = try #require(loadConfigurationError(yamlWithOneMapping(body)))
    #expect(error.field == field)
    #expect(error.message == message)
  }

  @Test(
    "keys that the kind does not use are refused",
    arguments: [
      ("kind: template\nprefix: /a/\ntemplate: /t\nswap: symlink", "swap", "not used by a template mapping; it applies to kind tree"),
      ("kind: template\nprefix: /a/\ntemplate: /t\nkey: /k", "key", "not used by a template mapping; it applies to kind file"),
      ("kind: template\nprefix: /a/\ntemplate: /t\nwriteBack: true", "writeBack", "write-back is not available for template mappings; use a tree, file or format mapping"),
      ("kind: template\nprefix: /a/\ntemplate: /t\nconflict: local-wins", "conflict", "not used by a template mapping; it applies to kinds tree, file and format"),
      ("kind: tree\nprefix: /a/\ntemplate: /t", "template", "not used by a tree mapping; it applies to kind template"),
      ("kind: tree\nprefix: /a/\nformat: json", "format", "not used by a tree mapping; it applies to kind format"),
      ("kind: file\nkey: /k\nprefix: /a/", "prefix", "not used by a file mapping; it applies to kinds template, tree and format"),
      ("kind: file\nkey: /k\nswap: in-place", "swap", "not used by a file mapping; it applies to kind tree"),
      ("kind: format\nformat: env\nprefix: /a/\nkey: /k", "key", "not used by a format mapping; it applies to kind file"),
      ("kind: tree\nprefix: /a/\nwriteBack: true\nswap: symlink", "swap", "a write-back tree is written in place; remove swap: symlink or set swap: in-place"),
      ("kind: format\nformat: env\nprefix: /a/\nwriteBack: true", "writeBack", "write-back of a format mapping needs format json or yaml; env does not read back to its keys"),
    ])
  func notApplicable(body: String, key: String, message: String) throws {
    let error = try #require(loadConfigurationError(yamlWithOneMapping("name: a\ndest: /a\n" + body)))
    #expect(error.field == "mappings[0].\(key)")
    #expect(error.message == message)
    #expect(error.code == .conflict)
  }

  @Test("writeBack: false is accepted on a template mapping")
  func writeBackFalseOnTemplate() throws {
    let body = "name: a\nprefix: /a/\ntemplate: /t\ndest: /a\nwriteBack: false"
    #expect(try !loadConfiguration(yamlWithOneMapping(body)).mappings[0].writeBack)
  }

  @Test(
    "each kind's required keys",
    arguments: [
      ("kind: template\nprefix: /a/", "mappings[0].template", "missing; the template file, such as template: /etc/etcsync/templates/app.conf.tmpl"),
      ("kind: template\ntemplate: /t", "mappings[0].prefix", "missing; a template mapping reads an etcd prefix, such as prefix: /apps/web/"),
      ("kind: tree", "mappings[0].prefix", "missing; a tree mapping reads an etcd prefix, such as prefix: /apps/web/"),
      ("kind: file", "mappings[0].key", "missing; the etcd key whose value is the file"),
      ("kind: format\nprefix: /a/", "mappings[0].format", "missing; one of json, yaml, toml, env, properties"),
    ])
  func required(body: String, field: String, message: String) throws {
    let error = try #require(loadConfigurationError(yamlWithOneMapping("name: a\ndest: /a\n" + body)))
    #expect(error.field == field)
    #expect(error.message == message)
    #expect(error.code == .missingKey)
  }

  @Test("a template reads one or more prefixes")
  func templatePrefixes() throws {
    let one = try loadConfiguration(yamlWithOneMapping("name: a\nprefix: /a/\ntemplate: /t\ndest: /a"))
    #expect(one.mappings[0].prefixes == ["/a/"])
    #expect(one.mappings[0].prefix == "/a/")
    let two = try loadConfiguration(yamlWithOneMapping("name: a\nprefixes: [/a/, /b/]\ntemplate: /t\ndest: /a"))
    #expect(two.mappings[0].prefixes == ["/a/", "/b/"])
    let listed = try loadConfiguration(yamlWithOneMapping("name: a\nkind: tree\nprefixes: [/a/]\ndest: /a"))
    #expect(listed.mappings[0].prefixes == ["/a/"])
  }

  @Test(
    "prefix mistakes",
    arguments: [
      ("kind: tree\nprefixes: [/a/, /b/]", "mappings[0].prefixes[1]", "a tree mapping reads exactly one prefix"),
      ("kind: format\nformat: json\nprefixes: [/a/, /b/]", "mappings[0].prefixes[1]", "a format mapping reads exactly one prefix"),
      ("template: /t\nprefix: /a/\nprefixes: [/b/]", "mappings[0].prefixes", "give either prefix or prefixes, not both"),
      ("template: /t\nprefixes: [/a/, /b/, /a/]", "mappings[0].prefixes[2]", "the prefix \"/a/\" is listed twice"),
      ("template: /t\nprefixes: []", "mappings[0].prefixes", "expected at least one prefix, got a list"),
      ("template: /t\nprefix: \"\"", "mappings[0].prefix", "expected an etcd key prefix such as \"/services/web/\", got \"\""),
      ("template: /t\nprefix: [/a/, /b/]", "mappings[0].prefix", "expected one prefix such as \"/services/web/\", got a list; write prefixes: for a list"),
    ])
  func prefixMistakes(body: String, field: String, message: String) throws {
    let error = try #require(loadConfigurationError(yamlWithOneMapping("name: a\ndest: /a\n" + body)))
    #expect(error.field == field)
    #expect(error.message == message)
  }

  @Test(
    "write-back options need writeBack: true",
    arguments: ["conflict: local-wins", "conflict: etcd-wins", "deletes: true"])
  func writeBackOptions(line: String) throws {
    let error = try #require(loadConfigurationError(yamlWithOneMapping("name: a\nkind: tree\nprefix: /a/\ndest: /a\n" + line)))
    #expect(error.message == "only used with writeBack: true")
    #expect(error.code == .conflict)
  }

  @Test("deletes: false needs no writeBack")
  func deletesFalse() throws {
    #expect(try !loadConfiguration(yamlWithOneMapping("name: a\nkey: /a\ndest: /a\ndeletes: false")).mappings[0].deletes)
  }

  @Test("every format is known", arguments: Mapping.Format.allCases)
  func formats(format: Mapping.Format) throws {
    let body = "name: a\nprefix: /a/\nformat: \(format.rawValue)\ndest: /a"
    #expect(try loadConfiguration(yamlWithOneMapping(body)).mappings[0].format == format)
  }

  @Test(
    "invalid values of mapping keys",
    arguments: [
      ("mode: rw-r--r--", "mode", "expected an octal file mode such as \"0644\", got \"rw-r--r--\""),
      ("mode: \"0999\"", "mode", "expected an octal file mode such as \"0644\", got \"0999\""),
      ("mode: \"10000\"", "mode", "expected an octal file mode such as \"0644\", got \"10000\""),
      ("mode: \"\"", "mode", "expected an octal file mode such as \"0644\", got \"\""),
      ("dirMode: \"0x1ed\"", "dirMode", "expected an octal file mode such as \"0644\", got \"0x1ed\""),
      ("owner: \"bad user\"", "owner", "expected a user name or numeric id, got \"bad user\""),
      ("owner: \"4294967295\"", "owner", "expected a user name or numeric id, got \"4294967295\""),
      ("group: \"-wheel\"", "group", "expected a group name or numeric id, got \"-wheel\""),
      ("check: []", "check", "expected at least the program to run, such as [nginx, -t, -c, \"{{.src}}\"], got a list"),
      ("check: [nginx, \"\"]", "check[1]", "expected a non-empty string, got \"\""),
      ("reload: [[a]]", "reload[0]", "expected a non-empty string, got a list"),
      ("commandTimeout: 0s", "commandTimeout", "expected a duration above 0s such as \"5s\", got \"0s\""),
      ("swap: atomic", "swap", "expected one of \"symlink\", \"in-place\", got \"atomic\""),
      ("conflict: etcd", "conflict", "expected one of \"etcd-wins\", \"local-wins\", got \"etcd\""),
      ("writeBack: yes", "writeBack", "expected true or false, got \"yes\""),
      ("wait: {max: 2s}", "wait.min", "missing; the quiet time, such as min: 200ms"),
      ("wait: \"1s:2s:3s\"", "wait", "expected {min: 200ms, max: 2s} or \"200ms:2s\", got \"1s:2s:3s\""),
      ("wait: \"2s:1s\"", "wait", "max (1s) must not be less than min (2s)"),
    ])
  func invalidValues(line: String, field: String, message: String) throws {
    let error = try #require(loadConfigurationError(yamlWithOneMapping("name: a\nkind: tree\nprefix: /a/\ndest: /srv/a\n" + line)))
    #expect(error.field == "mappings[0].\(field)")
    #expect(error.message == message)
  }

  @Test(
    "names and destinations",
    arguments: [
      ("name: \"my app\"\nkey: /k\ndest: /a", "name", "expected a name of letters, digits, '-', '_' and '.' (at most 128), got \"my app\""),
      ("name: a/b\nkey: /k\ndest: /a", "name", "expected a name of letters, digits, '-', '_' and '.' (at most 128), got \"a/b\""),
      ("name: a\nkey: /k\ndest: etc/a", "dest", "expected an absolute path such as \"/etc/app/app.conf\", got \"etc/a\""),
      ("name: a\nkind: tree\nprefix: /p/\ndest: srv/a", "dest", "expected an absolute path such as \"/srv/app/config\", got \"srv/a\""),
      ("name: a\nkey: /k\ndest: /etc/../a", "dest", "expected an absolute path without \".\" or \"..\" segments, got \"/etc/../a\""),
      ("name: a\nkey: /k\ndest: /", "dest", "the root directory cannot be a destination"),
      ("name: a\nkey: /k", "dest", "missing; where the file goes, such as dest: /etc/app/app.conf"),
    ])
  func namesAndDestinations(body: String, field: String, message: String) throws {
    let error = try #require(loadConfigurationError(yamlWithOneMapping(body)))
    #expect(error.field == "mappings[0].\(field)")
    #expect(error.message == message)
  }

  @Test("owners and groups may be names or numeric ids", arguments: ["root", "www-data", "0", "1000", "svc.app"])
  func principals(name: String) throws {
    let body = "name: a\nkey: /k\ndest: /a\nowner: \"\(name)\"\ngroup: \"\(name)\""
    let mapping = try loadConfiguration(yamlWithOneMapping(body)).mappings[0]
    #expect(mapping.owner == name && mapping.group == name)
  }
}
