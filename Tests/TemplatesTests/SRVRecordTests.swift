import Templates
import Testing

/// The SRV answer reader behind lookupSRV, on hand-built DNS responses.
@Suite struct SRVRecordTests {
  @Test func readsSRVAnswersWithCompressedNames() {
    var m: [UInt8] = [0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0]
    // Question: _x._tcp.example.com SRV IN
    let questionName = 12
    for label in ["_x", "_tcp", "example", "com"] {
      m.append(UInt8(label.utf8.count))
      m.append(contentsOf: label.utf8)
    }
    m.append(contentsOf: [0, 0, 33, 0, 1])
    func answer(priority: UInt16, weight: UInt16, port: UInt16, target: [UInt8]) {
      m.append(contentsOf: [0xC0, UInt8(questionName), 0, 33, 0, 1, 0, 0, 0, 60])
      let data = [UInt8(priority >> 8), UInt8(priority & 0xFF), UInt8(weight >> 8), UInt8(weight & 0xFF),
        UInt8(port >> 8), UInt8(port & 0xFF)] + target
      m.append(contentsOf: [UInt8(data.count >> 8), UInt8(data.count & 0xFF)])
      m.append(contentsOf: data)
    }
    // "a" + pointer to "example.com" inside the question (offset of "example" label).
    let exampleOffset = 12 + 3 + 5
    answer(priority: 10, weight: 5, port: 5269, target: [1, UInt8(ascii: "a"), 0xC0, UInt8(exampleOffset)])
    answer(priority: 20, weight: 0, port: 80, target: [1, UInt8(ascii: "b"), 0])
    let records = SRVRecord.records(inDNSResponse: m)
    #expect(records == [
      SRVRecord(target: "a.example.com.", port: 5269, priority: 10, weight: 5),
      SRVRecord(target: "b.", port: 80, priority: 20, weight: 0),
    ])
  }

  @Test func malformedResponsesDoNotCrash() {
    #expect(SRVRecord.records(inDNSResponse: []).isEmpty)
    #expect(SRVRecord.records(inDNSResponse: [0, 0, 0, 0, 0, 1, 0, 5, 0, 0, 0, 0, 3, 0x61]).isEmpty)
    // A compression pointer that points at itself.
    let loop: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xC0, 12, 0, 33, 0, 1, 0, 0, 0, 1, 0, 8,
      0, 1, 0, 1, 0, 80, 0xC0, 30]
    #expect(SRVRecord.records(inDNSResponse: loop).isEmpty)
  }
}
