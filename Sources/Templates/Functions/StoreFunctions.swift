/// confd's store functions, reading the data source through the render's key prefix:
/// get, gets, getv, getvs, exists, ls, lsdir.
extension FunctionContext {
  func storeFunction(_ function: Builtin, _ a: [TemplateValue]) throws(FunctionFailure) -> TemplateValue {
    switch function {
    case .get:
      let key = try string(a[0])
      return .kvPair(KVPair(key: key, value: try value(key)))
    case .getv:
      let key = try string(a[0])
      if let bytes = data.value(forKey: fullKey(key)) { return .bytes(bytes) }
      if a.count > 1 { return .string(try string(a[1])) }
      return .bytes(try value(key))
    case .exists:
      return .bool(data.value(forKey: fullKey(try string(a[0]))) != nil)
    case .gets:
      return .list(try pairs(matching: try string(a[0])).map { .kvPair($0) })
    case .getvs:
      let values = try pairs(matching: try string(a[0])).map(\.value).sorted(by: ByteOrder.less)
      return .list(values.map { .bytes($0) })
    case .ls:
      return .list(children(of: try string(a[0]), directoriesOnly: false).map { .string($0) })
    case .lsdir:
      return .list(children(of: try string(a[0]), directoriesOnly: true).map { .string($0) })
    default:
      preconditionFailure("not a store function: \(function)")
    }
  }

  /// The data-source key for a key as the template names it. The leading `/` is tested as
  /// a byte: `String.hasPrefix` compares graphemes, and `/` with a combining mark is one.
  func fullKey(_ key: String) -> String {
    if keyPrefix.isEmpty { return key }
    return key.utf8.first == UInt8(ascii: "/") ? keyPrefix + key : keyPrefix + "/" + key
  }

  /// The key as templates see it: the data-source key without the prefix.
  private func relativeKey(_ key: String) -> String {
    if keyPrefix.isEmpty { return key }
    return String(decoding: key.utf8.dropFirst(keyPrefix.utf8.count), as: UTF8.self)
  }

  private func value(_ key: String) throws(FunctionFailure) -> [UInt8] {
    let full = fullKey(key)
    if let bytes = data.value(forKey: full) { return bytes }
    let shown = full.bytesEqual(key) ? key : "\(key) (read as \(full))"
    throw .call("key does not exist: \(shown)", code: .missingKey, key: full)
  }

  /// Every pair whose key matches a `path.Match` pattern, in key order (confd's `gets`).
  private func pairs(matching pattern: String) throws(FunctionFailure) -> [KVPair] {
    let glob: GlobPattern
    do throws(GlobPattern.BadPattern) {
      glob = try GlobPattern(pattern)
    } catch {
      throw .call("syntax error in pattern")
    }
    var result: [KVPair] = []
    let searchPrefix = keyPrefix.isEmpty ? glob.literalPrefix : fullKey(glob.literalPrefix)
    let prefixLength = keyPrefix.utf8.count
    data.forEachEntry(withPrefix: searchPrefix) { key, value in
      let relative = prefixLength == 0 ? key : relativeKey(key)
      if glob.matches(relative) { result.append(KVPair(key: relative, value: value)) }
      return true
    }
    return result
  }

  /// The names directly under `path` (confd's `ls`), or only those that have keys below
  /// them (`lsdir`), sorted and without duplicates.
  private func children(of path: String, directoriesOnly: Bool) -> [String] {
    let cleaned = GoPath.clean(path)
    let directory = cleaned == "/" ? "/" : cleaned == "." ? "" : cleaned + "/"
    let skip = keyPrefix.utf8.count + directory.utf8.count
    let searchPrefix = keyPrefix.isEmpty ? directory : fullKey(directory)
    // Keys arrive in byte order, so their first segments mostly do too: collect them
    // skipping repeats, and sort only if the order turns out to be broken.
    var names: [String] = []
    var ordered = true
    data.forEachEntry(withPrefix: searchPrefix) { key, _ in
      guard let name = Self.childName(key, skip: skip, directoriesOnly: directoriesOnly) else { return true }
      if let last = names.last {
        if ByteOrder.equal(last, name) { return true }
        if ordered, !ByteOrder.less(last, name) { ordered = false }
      }
      names.append(name)
      return true
    }
    if !directoriesOnly, data.value(forKey: fullKey(path)) != nil {
      names.append(GoPath.base(path))
      ordered = names.count == 1
    }
    if ordered { return names }
    var unique: [String] = []
    for name in ByteOrder.sorted(names) where unique.last.map({ !ByteOrder.equal($0, name) }) ?? true {
      unique.append(name)
    }
    return unique
  }

  /// The segment of `key` after its first `skip` bytes, up to the next `/`; nil when empty,
  /// or for a leaf when only directories are wanted.
  private static func childName(_ key: String, skip: Int, directoriesOnly: Bool) -> String? {
    func name(_ bytes: UnsafeBufferPointer<UInt8>) -> String? {
      guard skip < bytes.count else { return nil }
      let rest = UnsafeBufferPointer(rebasing: bytes[skip...])
      if let slash = rest.firstIndex(of: UInt8(ascii: "/")) {
        guard slash > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(rebasing: rest[..<slash]), as: UTF8.self)
      }
      return directoriesOnly ? nil : String(decoding: rest, as: UTF8.self)
    }
    if let result = key.utf8.withContiguousStorageIfAvailable(name) { return result }
    return Array(key.utf8).withUnsafeBufferPointer(name)
  }
}
