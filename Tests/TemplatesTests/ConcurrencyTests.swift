import Templates
import Testing

/// Templates are parsed once and rendered from many tasks at once.
@Suite struct ConcurrencyTests {
  @Test func concurrentRendersAgree() async throws {
    var values: [String: String] = [:]
    for i in 0..<200 { values["/hosts/h\(i)"] = "10.0.0.\(i % 250)" }
    let data = DictionaryDataSource(strings: values)
    let template = try Template(
      name: "t", text: "{{range gets \"/hosts/*\"}}{{.Key}} {{.Value}}\n{{end}}{{$x := 1}}{{$x}}")
    let expected = try template.render(data: data)
    let outputs = try await withThrowingTaskGroup(of: [UInt8].self) { group in
      for _ in 0..<16 {
        group.addTask { try template.render(data: data) }
      }
      var all: [[UInt8]] = []
      for try await output in group { all.append(output) }
      return all
    }
    #expect(outputs.count == 16)
    #expect(outputs.allSatisfy { $0 == expected })
  }
}
