import EtcSync
import Templates
import Testing

@Suite("Key to path rules")
struct KeyPathTests {
  static let prefix = Array("/app/conf/".utf8)

  static func key(_ text: String) -> [UInt8] { prefix + Array(text.utf8) }

  @Test(
    "clean keys map to relative paths",
    arguments: [
      ("db/url", "db/url"), ("a", "a"), ("x/y/z.conf", "x/y/z.conf"), (".hidden", ".hidden"),
      ("a/..b/c", "a/..b/c"), ("café/naïve", "café/naïve"), ("a b/c d", "a b/c d"),
    ])
  func cleanKeys(suffix: String, expected: String) throws {
    #expect(try relativePath(forKey: Self.key(suffix), prefix: Self.prefix) == expected)
  }

  static func raw(_ text: String) -> [UInt8] { Array(text.utf8) }

  static let hostileCases: [([UInt8], KeyPathError.Reason)] = [
    (raw("/app/conf/../x"), .dotSegment),
    (raw("/app/conf/a/../../x"), .dotSegment),
    (raw("/app/conf/./a"), .dotSegment),
    (raw("/app/conf/a/."), .dotSegment),
    (raw("/app/conf//abs"), .absolute),
    (raw("/app/conf/a//b"), .emptySegment),
    (raw("/app/conf/a/"), .emptySegment),
    (raw("/app/conf/"), .emptyPath),
    (raw("/app/confx/a"), .notUnderPrefix),
    (raw("/other/a"), .notUnderPrefix),
    (raw("/app/conf/a") + [0] + raw("b"), .containsNUL),
    (raw("/app/conf/bad") + [0xFF, 0xFE], .invalidUTF8),
    (raw("/app/conf/..data"), .reservedName),
    (raw("/app/conf/..1.abc/x"), .reservedName),
    (raw("/app/conf/d/.f.etcsync-tmp-0011"), .reservedName),
  ]

  @Test("hostile keys are rejected with the right reason", arguments: hostileCases)
  func hostileKeys(key: [UInt8], reason: KeyPathError.Reason) {
    #expect(throws: KeyPathError(reason, key: key)) {
      try relativePath(forKey: key, prefix: Self.prefix)
    }
  }

  @Test("a segment over 255 bytes is rejected, 255 is accepted")
  func segmentLength() throws {
    let long = String(repeating: "s", count: 300)
    #expect(throws: KeyPathError(.segmentTooLong(bytes: 300), key: Self.key("a/\(long)/b"))) {
      try relativePath(forKey: Self.key("a/\(long)/b"), prefix: Self.prefix)
    }
    let limit = String(repeating: "é", count: 127) + "x"  // 255 bytes
    #expect(try relativePath(forKey: Self.key(limit), prefix: Self.prefix) == limit)
  }

  @Test("a path over 4096 bytes is rejected")
  func pathLength() throws {
    let segment = String(repeating: "p", count: 200)
    let path = Array(repeating: segment, count: 21).joined(separator: "/")  // 4220 bytes
    #expect(throws: KeyPathError(.pathTooLong(bytes: path.utf8.count), key: Self.key(path))) {
      try relativePath(forKey: Self.key(path), prefix: Self.prefix)
    }
    let fits = Array(repeating: segment, count: 20).joined(separator: "/")  // 4019 bytes
    #expect(try relativePath(forKey: Self.key(fits), prefix: Self.prefix) == fits)
  }

  @Test("a prefix without a trailing slash is a directory")
  func prefixWithoutSlash() throws {
    let prefix = Array("/app/conf".utf8)
    #expect(try relativePath(forKey: Array("/app/conf/db/url".utf8), prefix: prefix) == "db/url")
    #expect(throws: KeyPathError(.notUnderPrefix, key: Array("/app/config2/x".utf8))) {
      try relativePath(forKey: Array("/app/config2/x".utf8), prefix: prefix)
    }
    #expect(throws: KeyPathError(.emptyPath, key: prefix)) {
      try relativePath(forKey: prefix, prefix: prefix)
    }
  }

  @Test("rejected keys are shown escaped, never raw")
  func escaping() {
    let key = Array("/app/conf/a".utf8) + [0, 0x0A, 0x1B, 0xFF] + Array("\"\\b".utf8)
    let error = KeyPathError(.containsNUL, key: key)
    #expect(error.escapedKey == #"/app/conf/a\x00\x0a\x1b\xff\"\\b"#)
    #expect(error.description.utf8.allSatisfy { (0x20...0x7E).contains($0) })
    #expect(error.description.contains("NUL"))
    #expect(KeyPathError(.invalidUTF8, key: key).description.contains("not valid UTF-8"))
  }

  @Test("a key that is both a file and a directory rejects both sides")
  func fileDirectoryConflicts() {
    #expect(detectFileDirectoryConflicts(["a", "a/b", "c", "d/e", "d/f"]) == ["a", "a/b"])
    #expect(detectFileDirectoryConflicts(["x", "x/y/z", "x/y/w"]) == ["x", "x/y/z", "x/y/w"])
    #expect(detectFileDirectoryConflicts(["p/q", "p/q/r", "p/s"]) == ["p/q", "p/q/r"])
    #expect(detectFileDirectoryConflicts(["ab", "a/b", "a.b", "a-b/c"]).isEmpty)
    #expect(detectFileDirectoryConflicts([]).isEmpty)
  }
}
