import EtcSync
import Foundation
import Testing

@Suite("What a reload changes")
struct MappingChangesTests {
  static let before = """
    wait: {min: 1s}
    mappings:
      - {name: same, key: /same, dest: /srv/same}
      - {name: edited, key: /edited, dest: /srv/edited}
      - {name: gone, key: /gone, dest: /srv/gone}
      - {name: own-wait, key: /own, dest: /srv/own, wait: {min: 5s}}
    """

  @Test("mappings are matched by name and compared")
  func changes() throws {
    let old = try loadConfiguration(Self.before)
    let new = try loadConfiguration(
      """
      wait: {min: 1s}
      mappings:
        - {name: same, key: /same, dest: /srv/same}
        - {name: edited, key: /edited, dest: /srv/edited, mode: "0600"}
        - {name: own-wait, key: /own, dest: /srv/own, wait: {min: 5s}}
        - {name: new, key: /new, dest: /srv/new}
      """)
    let changes = new.mappingChanges(from: old)
    #expect(changes.added.map(\.name) == ["new"])
    #expect(changes.removed.map(\.name) == ["gone"])
    #expect(changes.changed.map(\.name) == ["edited"])
    #expect(changes.unchanged.map(\.name) == ["same", "own-wait"])
  }

  @Test("a global setting change reaches the mappings that inherit it")
  func inherited() throws {
    let old = try loadConfiguration(Self.before)
    let new = try loadConfiguration(Self.before.replacingOccurrences(of: "wait: {min: 1s}", with: "wait: {min: 2s}"))
    let changes = new.mappingChanges(from: old)
    #expect(changes.changed.map(\.name) == ["same", "edited", "gone"])
    #expect(changes.unchanged.map(\.name) == ["own-wait"])
    #expect(new.wait(for: new.mappings[0]) == WaitSettings(min: .seconds(2)))
    #expect(new.commandTimeout(for: new.mappings[0]) == .seconds(30))
  }

  @Test("an identical configuration changes nothing")
  func identical() throws {
    let configuration = try loadConfiguration(Self.before)
    let changes = configuration.mappingChanges(from: configuration)
    #expect(changes.added.isEmpty && changes.removed.isEmpty && changes.changed.isEmpty)
    #expect(changes.unchanged.count == 4)
    #expect(configuration.mapping(named: "edited")?.key == "/edited")
  }
}
