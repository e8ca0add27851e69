import Foundation
import Templates
import Testing

/// TemplateLoader reads only files under its directory, real paths checked.
@Suite struct LoaderTests {
  /// A fresh directory tree: `<root>/templates` (the templates directory) and `<root>/outside`.
  final class Sandbox {
    let root: String
    var templates: String { root + "/templates" }
    var outside: String { root + "/outside" }

    init() throws {
      root = NSTemporaryDirectory() + "templates-test-" + UUID().uuidString
      try FileManager.default.createDirectory(atPath: root + "/templates/partials", withIntermediateDirectories: true)
      try FileManager.default.createDirectory(atPath: root + "/outside", withIntermediateDirectories: true)
      try write("outside/secret.tmpl", "SECRET {{getv \"/k\"}}")
    }

    func write(_ path: String, _ text: String) throws {
      try text.write(toFile: root + "/" + path, atomically: true, encoding: .utf8)
    }

    func symlink(_ path: String, to destination: String) throws {
      try FileManager.default.createSymbolicLink(atPath: root + "/" + path, withDestinationPath: destination)
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }
  }

  let data = DictionaryDataSource(strings: ["/k": "v"])

  @Test func loadsIncludesFromTheDirectory() throws {
    let box = try Sandbox()
    try box.write("templates/main.tmpl", "{{template \"partials/head.tmpl\" .}}|{{template \"footer\"}}")
    try box.write("templates/partials/head.tmpl", "head {{.}} {{template \"partials/deep.tmpl\"}}")
    try box.write("templates/partials/deep.tmpl", "deep {{getv \"/k\"}}{{define \"footer\"}}foot{{end}}")
    let template = try TemplateLoader(directory: box.templates).load("main.tmpl")
    #expect(try template.renderString(data: data, dot: "x") == "head x deep v|foot")
    #expect(template.definedTemplates == ["footer", "main.tmpl", "partials/deep.tmpl", "partials/head.tmpl"])
    #expect(template.unresolvedTemplates.isEmpty)
  }

  @Test func errorsInIncludesNameTheIncludedFile() throws {
    let box = try Sandbox()
    try box.write("templates/main.tmpl", "{{template \"part.tmpl\"}}")
    try box.write("templates/part.tmpl", "ok\n{{getv \"/missing\"}}")
    let template = try TemplateLoader(directory: box.templates).load("main.tmpl")
    #expect(throws: TemplateError.self) { try template.render(data: data) }
    do {
      _ = try template.render(data: data)
    } catch {
      #expect(error.location == SourceLocation(template: "part.tmpl", line: 2, column: 3))
    }
  }

  @Test(arguments: ["../outside/secret.tmpl", "partials/../../outside/secret.tmpl", "/etc/passwd"])
  func includeOutsideTheDirectoryIsRefused(name: String) throws {
    let box = try Sandbox()
    try box.write("templates/main.tmpl", "{{template \"\(name)\"}}")
    let loader = try TemplateLoader(directory: box.templates)
    #expect { try loader.load("main.tmpl") } throws: { ($0 as? TemplateError)?.code == .pathEscape }
    #expect { try loader.load(name) } throws: { ($0 as? TemplateError)?.code == .pathEscape }
  }

  @Test func symlinkLeadingOutIsRefused() throws {
    let box = try Sandbox()
    try box.symlink("templates/evil.tmpl", to: box.outside + "/secret.tmpl")
    try box.symlink("templates/evil-dir", to: box.outside)
    try box.write("templates/main.tmpl", "{{template \"evil.tmpl\"}}")
    try box.write("templates/main2.tmpl", "{{template \"evil-dir/secret.tmpl\"}}")
    let loader = try TemplateLoader(directory: box.templates)
    for name in ["main.tmpl", "main2.tmpl", "evil.tmpl", "evil-dir/secret.tmpl"] {
      #expect { try loader.load(name) } throws: { error in
        let error = error as? TemplateError
        return error?.code == .pathEscape && error?.message.contains("outside") == true
      }
    }
  }

  @Test func symlinkInsideTheDirectoryIsAllowed() throws {
    let box = try Sandbox()
    try box.write("templates/partials/real.tmpl", "real")
    try box.symlink("templates/alias.tmpl", to: box.templates + "/partials/real.tmpl")
    try box.write("templates/main.tmpl", "{{template \"alias.tmpl\"}}")
    let template = try TemplateLoader(directory: box.templates).load("main.tmpl")
    #expect(try template.renderString(data: data) == "real")
  }

  @Test func theDirectoryMayItselfBeASymlink() throws {
    let box = try Sandbox()
    try box.write("templates/main.tmpl", "ok")
    try box.symlink("link", to: box.templates)
    let loader = try TemplateLoader(directory: box.root + "/link")
    #expect(try loader.load("main.tmpl").renderString(data: data) == "ok")
  }

  @Test func missingFiles() throws {
    let box = try Sandbox()
    try box.write("templates/main.tmpl", "{{if .}}{{template \"absent.tmpl\"}}{{template \"partials\"}}{{end}}")
    let loader = try TemplateLoader(directory: box.templates)
    #expect { try loader.load("nope.tmpl") } throws: { ($0 as? TemplateError)?.code == .io }
    #expect { try loader.load("partials") } throws: { ($0 as? TemplateError)?.code == .io }
    let template = try loader.load("main.tmpl")
    // A directory is no template file: the name stays unresolved.
    #expect(template.unresolvedTemplates == ["absent.tmpl", "partials"])
    #expect { try template.render(data: data, dot: true) } throws: {
      ($0 as? TemplateError)?.message == "no such template \"absent.tmpl\""
    }
    #expect { try TemplateLoader(directory: box.root + "/none") } throws: { ($0 as? TemplateError)?.code == .io }
  }

  @Test func parseErrorsNameTheFile() throws {
    let box = try Sandbox()
    try box.write("templates/partials/bad.tmpl", "ok\n  {{ if }}")
    let loader = try TemplateLoader(directory: box.templates)
    #expect { try loader.load("partials/bad.tmpl") } throws: {
      ($0 as? TemplateError)?.description == "partials/bad.tmpl:2:9: missing value for if"
    }
  }
}
