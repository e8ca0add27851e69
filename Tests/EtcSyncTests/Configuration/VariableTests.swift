@testable import EtcSync
import Testing

/// `${NAME}`, `${NAME:-default}` and `$$` in configuration values, and `keyPrefix`.
@Suite struct VariableTests {
  @Test func variablesExpandInValuesBeforeValidation() throws {
    let yaml = """
      mappings:
        - name: app-${ENV_NAME}
          template: /etc/etcsync/${ENV_NAME}.tmpl
          dest: ${DEST_DIR:-/etc/app}/app.conf
          prefix: /config/hosts/${HOSTNAME}/
          mode: "${MODE}"
          reload: [sh, -c, 'kill -HUP "$$(cat /run/app.pid)"', "$$HOME", "a$b", "${EMPTY:-fallback}"]
      """
    let configuration = try loadConfiguration(
      yaml, environment: ["ENV_NAME": "prod", "HOSTNAME": "web-1", "MODE": "0640", "EMPTY": ""])
    let mapping = try #require(configuration.mappings.first)
    #expect(mapping.name == "app-prod")
    #expect(mapping.template == "/etc/etcsync/prod.tmpl")
    #expect(mapping.dest == "/etc/app/app.conf")
    #expect(mapping.prefixes == ["/config/hosts/web-1/"])
    #expect(mapping.mode == 0o640)
    #expect(mapping.reload == ["sh", "-c", "kill -HUP \"$(cat /run/app.pid)\"", "$HOME", "a$b", "fallback"])
  }

  @Test func anExpandedValueIsValidatedLikeAWrittenOne() {
    // The mode comes from the environment and is still checked as a file mode.
    let error = loadConfigurationError(
      yamlWithOneMapping("name: a\ntemplate: /t\ndest: /d\nprefix: /p/\nmode: ${MODE}"),
      environment: ["MODE": "rw-r--r--"])
    #expect(error?.code == .invalidValue)
    #expect(error?.line == 6)
    #expect(error?.field == "mappings[0].mode")
    #expect(error?.description.contains("\"rw-r--r--\"") == true)
  }

  @Test func anUnsetVariableNamesTheFileAndLine() {
    let yaml = """
      mappings:
        - name: a
          template: /t
          dest: /etc/${MISSING}/a.conf
          prefix: /p/
      """
    let error = loadConfigurationError(yaml, environment: ["OTHER": "x"])
    #expect(error?.code == .invalidValue)
    #expect(error?.file == "etcsync.yaml")
    #expect(error?.line == 4)
    #expect(error?.field == "mappings[0].dest")
    #expect(error?.message.contains("MISSING is not set") == true)
    #expect(error?.description.hasPrefix("etcsync.yaml:4:") == true)
  }

  @Test(arguments: [
    ("${}", "expected a variable name"),
    ("${1X}", "expected a variable name"),
    ("${X-default}", "expected ${X} or ${X:-default}"),
    ("${X", "without a closing"),
    // A shell's own forms that etcsync now reads as its own: the error says how to keep them.
    ("${d#/proc/}", "write $${"),
    ("${1}", "write $${"),
    ("${X", "write $${"),
  ])
  func malformedReferencesAreErrors(value: String, message: String) {
    let error = loadConfigurationError(
      yamlWithOneMapping("name: a\ntemplate: /t\ndest: \"/d/\(value)\"\nprefix: /p/"), environment: ["X": "x"])
    #expect(error?.line == 4)
    #expect(error?.field == "mappings[0].dest")
    #expect(error?.message.contains(message) == true, "\(String(describing: error))")
  }

  @Test func expansionRules() throws {
    let environment = ["A": "1", "EMPTY": "", "DOLLAR": "$B"]
    let cases: [(String, String)] = [
      ("$$", "$"), ("$$$$", "$$"), ("$${A}", "${A}"), ("$$$${A}", "$${A}"), ("$${A}$$", "${A}$"),
      ("${A}", "1"), ("x${A}y${A}", "x1y1"), ("${A:-d}", "1"), ("${EMPTY:-d}", "d"), ("${UNSET:-d}", "d"),
      ("${UNSET:-}", ""), ("${UNSET:-a b:c}", "a b:c"), ("${UNSET:-$$}", "$$"),
      // A value is inserted as it is, never expanded again.
      ("${DOLLAR}", "$B"), ("$", "$"), ("a$", "a$"), ("$A", "$A"), ("é${A}é", "é1é"),
    ]
    for (text, expected) in cases {
      #expect(try ConfigVariables.expand(text, environment: environment) == expected, "\(text)")
    }
    #expect(throws: ConfigVariables.Failure.self) { try ConfigVariables.expand("${UNSET}", environment: environment) }
  }

  @Test func hostNameFallsBackToTheMachine() throws {
    let expanded = try ConfigVariables.expand("${HOSTNAME}", environment: [:])
    #expect(expanded == ConfigFiles.hostName())
    #expect(try ConfigVariables.expand("${HOSTNAME}", environment: ["HOSTNAME": "h"]) == "h")
  }

  @Test func keysAreNotExpanded() {
    let error = loadConfigurationError("${A}: 1\nmappings: []\n", environment: ["A": "etcd"])
    #expect(error?.code == .unknownKey)
  }

  @Test func aDefaultThatEmptiesAValueLeavesItOut() throws {
    // `owner: ${OWNER:-}` with OWNER unset is as if owner were not given.
    let configuration = try loadConfiguration(
      yamlWithOneMapping("name: a\ntemplate: /t\ndest: /d\nprefix: /p/\nowner: ${OWNER:-}"))
    #expect(configuration.mappings.first?.owner == nil)
  }

  // MARK: keyPrefix

  @Test func keyPrefixJoinsPrefixesAndKeysAsConfdDoes() throws {
    let yaml = """
      keyPrefix: /config/hosts/${HOSTNAME}
      mappings:
        - name: t
          template: /t
          dest: /d/t
          prefixes: [/db/, app, /x//y/./z/]
        - name: all
          template: /t
          dest: /d/all
        - name: f
          key: /db/url
          dest: /d/f
        - name: own
          keyPrefix: other/
          kind: tree
          prefix: /
          dest: /d/tree
      """
    let configuration = try loadConfiguration(yaml, environment: ["HOSTNAME": "web-1"])
    let mappings = configuration.mappings
    #expect(mappings[0].keyPrefix == "/config/hosts/web-1")
    #expect(mappings[0].prefixes == ["/config/hosts/web-1/db", "/config/hosts/web-1/app", "/config/hosts/web-1/x/y/z"])
    #expect(mappings[1].prefixes == ["/config/hosts/web-1"])
    #expect(mappings[2].key == "/config/hosts/web-1/db/url")
    #expect(mappings[3].keyPrefix == "/other")
    #expect(mappings[3].prefixes == ["/other"])
  }

  @Test(arguments: [
    ("/app", "/db/url", "/app/db/url"), ("/app", "db/url", "/app/db/url"), ("/app/", "/db/", "/app/db"),
    ("/app", "/", "/app"), ("/app", "", "/app"), ("/app", "../x", "/x"), ("/", "a", "/a"),
    ("/a", "b//c/./d", "/a/b/c/d"), ("/a", "/../../..", "/"),
  ])
  func keyJoinIsPathJoin(prefix: String, key: String, expected: String) {
    #expect(KeyJoin.join(prefix, key) == expected)
  }

  @Test func keyJoinCutsAtSlashBytesOnly() {
    // "/\u{301}" is one Character in Swift: the byte-wise join still sees the `/`.
    let joined = KeyJoin.join("/app", "/\u{301}x//y")
    #expect(Array(joined.utf8) == Array("/app/\u{301}x/y".utf8))
    #expect(KeyJoin.root("app") == "/app")
    #expect(KeyJoin.root("/") == "/")
  }

  @Test func keyPrefixMakesDuplicatePrefixesVisible() {
    let error = loadConfigurationError(
      yamlWithOneMapping("name: a\ntemplate: /t\ndest: /d\nkeyPrefix: /app\nprefixes: [/db, db/]"))
    #expect(error?.code == .conflict)
    #expect(error?.message.contains("listed twice") == true)
  }

  @Test func missingKeyAndDelimitersBelongToTemplates() throws {
    let configuration = try loadConfiguration(
      yamlWithOneMapping("name: a\ntemplate: /t\ndest: /d\nprefix: /p/\nmissingKey: zero\ndelimiters: [\"[[\", \"]]\"]"))
    #expect(configuration.mappings[0].missingKey == .zero)
    #expect(configuration.mappings[0].delimiters == Mapping.Delimiters(left: "[[", right: "]]"))
    let tree = loadConfigurationError(yamlWithOneMapping("name: a\nkind: tree\ndest: /d\nprefix: /p/\nmissingKey: zero"))
    #expect(tree?.code == .conflict)
    let bad = loadConfigurationError(yamlWithOneMapping("name: a\ntemplate: /t\ndest: /d\nprefix: /p/\ndelimiters: [\"[[\"]"))
    #expect(bad?.field == "mappings[0].delimiters")
    let typo = loadConfigurationError(yamlWithOneMapping("name: a\ntemplate: /t\ndest: /d\nprefix: /p/\nmissingKey: zeros"))
    #expect(typo?.message.contains("did you mean \"zero\"?") == true)
  }
}
