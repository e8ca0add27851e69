@testable import EtcSync
import Glibc
import Templates
import Testing

/// The one failure type of a mapping: its code, what it names and whether it is retried
/// follow from the error it was made of.
@Suite struct MappingErrorTests {
  @Test("a rejected check and a failed write keep their code and name the file; both are retried")
  func writing() {
    let check = MappingError(writing: FileError(.checkFailed, path: "/srv/app.conf", message: "check rejected the staged file"))
    #expect(check.code == .checkFailed)
    #expect(check.subject == .file("/srv/app.conf"))
    #expect(check.message == "check rejected the staged file: /srv/app.conf")
    #expect(check.retryable)
    let full = MappingError(writing: FileError(.write, path: "/srv/a", errno: ENOSPC, message: "cannot write"))
    #expect(full.code == .writeFailed && full.subject == .file("/srv/a") && full.retryable)
    // A failure already typed (one file of a tree) passes through as it is.
    let tree = MappingError(.writeFailed, "1 file(s) not written, first b: x", subject: .file("b"))
    #expect(MappingError(writing: tree) == tree)
  }

  @Test("a planning error keeps its code and the key it names, and is not retried")
  func planning() {
    let missing = MappingError(planning: PlanError(.missingKey, "key \"/app/x\" does not exist", key: "/app/x"))
    #expect(missing.code == .missingKey && missing.subject == .key("/app/x") && !missing.retryable)
    let render = MappingError(planning: PlanError(.render, "template: no such key"))
    #expect(render.code == .renderFailed && render.subject == nil && render.code.quotesValues)
    #expect(MappingError(planning: PlanError(.badKey, "b", key: "k")).code == .invalidData)
  }

  @Test("only failures that may pass by themselves are retried", arguments: MappingFailure.allCases)
  func retryable(code: MappingFailure) {
    let expected: Set<MappingFailure> = [.writeFailed, .checkFailed, .destinationReplaced, .massDeletion]
    #expect(code.retryable == expected.contains(code))
    var result = MappingResult(mapping: "m", revision: 1)
    #expect(!result.failed && !result.retryable && result.failureCode == nil && result.error == nil)
    result.failure = MappingError(code, "text")
    #expect(result.failed && result.retryable == expected.contains(code) && result.failureCode == code && result.error == "text")
  }

  @Test("two failures whose texts differ only in Unicode normalization are two failures")
  func byteExact() {
    let precomposed = MappingError(.writeFailed, "cannot write: /srv/caf\u{E9}")
    let decomposed = MappingError(.writeFailed, "cannot write: /srv/cafe\u{301}")
    #expect(precomposed != decomposed)
    #expect(Set([precomposed, decomposed]).count == 2)
  }
}
