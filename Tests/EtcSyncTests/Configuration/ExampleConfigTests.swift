import EtcSync
import Foundation
import Testing

@Suite("The shipped example and the documentation")
struct ExampleConfigTests {
  @Test("examples/config/etcsync.yaml loads")
  func exampleLoads() throws {
    let path = configurationTestsRepositoryRoot().appendingPathComponent("examples/config/etcsync.yaml").path
    let configuration = try AgentConfiguration.load(path: path, environment: [:])
    #expect(configuration.mappings.map(\.name) == ["nginx-upstreams", "billing-settings", "motd", "billing-env"])
    #expect(configuration.mappings.map(\.kind) == [.template, .tree, .file, .format])
    #expect(configuration.mappings[0].check == ["nginx", "-t", "-q", "-c", "{{.src}}"])
    #expect(configuration.mappings[0].reload == ["systemctl", "reload", "nginx"])
    #expect(configuration.mappings[1].writeBack)
    #expect(configuration.mappings[3].wait == WaitSettings(min: .milliseconds(500), max: .seconds(2)))
    #expect(configuration.etcd.endpoints.count == 3)
    #expect(configuration.etcd.auth?.user == "etcsync")
    #expect(configuration.presence?.prefix == "/etcsync/agents")
    #expect(configuration.presence?.takeOver == false)
    let exampleText = try String(contentsOfFile: path, encoding: .utf8)
    #expect(exampleText.contains("\n  takeOver: false"), "presence.takeOver is documented with its default")
    #expect(configuration.metrics?.port == 9464)
  }

  @Test("every YAML block in docs/configuration.md loads")
  func documentationBlocks() throws {
    let path = configurationTestsRepositoryRoot().appendingPathComponent("docs/configuration.md").path
    let text = try String(contentsOfFile: path, encoding: .utf8)
    var blocks: [(line: Int, yaml: String)] = []
    var current: (line: Int, lines: [String])?
    for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      if current == nil, line == "```yaml" {
        current = (number + 1, [])
      } else if let block = current, line == "```" {
        blocks.append((block.line, block.lines.joined(separator: "\n")))
        current = nil
      } else if current != nil {
        current?.lines.append(String(line))
      }
    }
    #expect(blocks.count >= 5)
    for block in blocks {
      do {
        _ = try AgentConfiguration.load(yaml: block.yaml, sourceName: "configuration.md block at line \(block.line)")
      } catch {
        Issue.record("docs/configuration.md, block at line \(block.line): \(error)")
      }
    }
  }
}
