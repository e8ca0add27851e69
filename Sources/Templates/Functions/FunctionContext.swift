/// What functions can reach during one render: the data source, the key prefix, the
/// environment, the clock and the resolver. Calls dispatch on ``Builtin`` with a switch.
struct FunctionContext {
  let data: any TemplateDataSource
  /// The key prefix without a trailing `/` (empty for none).
  let keyPrefix: String
  let environment: [String: String]?
  let clock: @Sendable () -> TemplateTime
  let resolver: DNSResolver
  /// ``RenderOptions/maxOutputSize``: the longest string a function may build.
  let maxValueSize: Int

  init(data: any TemplateDataSource, options: RenderOptions) {
    self.data = data
    // Trailing `/` bytes go (String's `hasSuffix` would compare graphemes, and `/` followed
    // by a combining mark is one).
    var prefix = Array(options.keyPrefix.utf8)
    while prefix.last == UInt8(ascii: "/") { prefix.removeLast() }
    self.keyPrefix = String(decoding: prefix, as: UTF8.self)
    self.maxValueSize = max(0, options.maxOutputSize)
    self.environment = options.environment
    self.clock = options.clock
    self.resolver = options.resolver
  }

  func call(_ function: Builtin, _ a: [TemplateValue]) throws(FunctionFailure) -> TemplateValue {
    switch function {
    case .and, .or: return a.last ?? .null  // evaluated lazily by the renderer
    case .not: return .bool(!a[0].isTrue)
    case .len: return try GoBuiltins.length(a[0])
    case .index: return try GoBuiltins.index(a[0], Array(a.dropFirst()))
    case .slice: return try GoBuiltins.slice(a[0], Array(a.dropFirst()))
    case .print: return .bytes(try bounded(GoFormat.sprintBytes(a, limit: maxValueSize)))
    case .println: return .bytes(try bounded(GoFormat.sprintlnBytes(a, limit: maxValueSize)))
    case .printf:
      return .bytes(try bounded(GoFormat.sprintfBytes(try string(a[0]), Array(a.dropFirst()), limit: maxValueSize)))
    case .html: return .string(GoBuiltins.html(try boundedText(a)))
    case .js: return .string(GoBuiltins.js(try boundedText(a)))
    case .urlquery: return .string(GoBuiltins.urlQuery(try boundedText(a)))
    case .eq: return .bool(try Comparison.equal(a[0], Array(a.dropFirst())))
    case .ne: return .bool(!(try Comparison.equal(a[0], [a[1]])))
    case .lt: return .bool(try Comparison.less(a[0], a[1]))
    case .le: return .bool(try Comparison.lessOrEqual(a[0], a[1]))
    case .gt: return .bool(!(try Comparison.lessOrEqual(a[0], a[1])))
    case .ge: return .bool(!(try Comparison.less(a[0], a[1])))
    case .get, .gets, .getv, .getvs, .exists, .ls, .lsdir:
      return try storeFunction(function, a)
    case .base, .dir, .split, .join, .toUpper, .toLower, .contains, .replace, .trimSuffix,
      .trimSpace, .indent, .default:
      return try StringFunctions.call(function, a, maxSize: maxValueSize)
    case .json, .jsonArray, .base64Encode, .base64Decode, .toJSON, .toYAML:
      return try EncodingFunctions.call(function, a)
    case .atoi, .parseBool, .add, .sub, .mul, .div, .mod, .seq, .reverse, .sortByLength,
      .sortKVByLength, .map:
      return try CollectionFunctions.call(function, a)
    case .getenv, .datetime, .lookupIP, .lookupIPV4, .lookupIPV6, .lookupSRV, .hostname, .fileExists:
      return try systemFunction(function, a)
    case .regexMatch, .regexReplaceAll, .regexFind:
      return try RegexFunctions.call(function, a, maxSize: maxValueSize)
    case .sha256sum, .sha1sum, .md5sum, .urlParse, .b64enc, .b64dec:
      return try DigestFunctions.call(function, a)
    case .dict, .list, .append, .hasKey, .keys, .values, .uniq, .sortAlpha, .ternary, .coalesce, .empty,
      .required, .toInt, .toString, .max, .min:
      return try SprigFunctions.call(function, a)
    case .trim, .trimPrefix, .hasPrefix, .hasSuffix, .title, .quote, .squote, .nindent:
      return try SprigFunctions.callString(function, a, maxSize: maxValueSize)
    }
  }

  /// The operands as `fmt.Sprint` prints them, at most ``maxValueSize`` bytes.
  private func boundedText(_ a: [TemplateValue]) throws(FunctionFailure) -> String {
    String(decoding: try bounded(GoFormat.sprintBytes(a, limit: maxValueSize)), as: UTF8.self)
  }

  /// Fails when a built string is longer than ``maxValueSize``.
  func bounded(_ bytes: [UInt8]) throws(FunctionFailure) -> [UInt8] {
    guard bytes.count <= maxValueSize else { throw .tooLarge(limit: maxValueSize) }
    return bytes
  }
}

extension FunctionFailure {
  /// A result that would be longer than ``RenderOptions/maxOutputSize``.
  static func tooLarge(limit: Int) -> FunctionFailure {
    .call("result exceeds the limit of \(limit) bytes", code: .limitExceeded)
  }
}

// MARK: - Argument conversion, with Go's messages for wrong types

/// A string argument (string or bytes).
func string(_ value: TemplateValue) throws(FunctionFailure) -> String {
  switch value {
  case .string(let s): return s
  case .bytes(let b): return String(decoding: b, as: UTF8.self)
  case .null: throw .argument("invalid value; expected string")
  default: throw .argument("wrong type for value; expected string; got \(value.goTypeName)")
  }
}

/// An int argument. Unlike Go, an integral float (a JSON number) is accepted too.
func integer(_ value: TemplateValue) throws(FunctionFailure) -> Int {
  switch value {
  case .int(let i): return i
  case .double(let d) where d.rounded() == d && abs(d) < 9.2e18: return Int(d)
  case .null: throw .argument("invalid value; expected int")
  default: throw .argument("wrong type for value; expected int; got \(value.goTypeName)")
  }
}

/// A list of strings (`[]string`).
func stringList(_ value: TemplateValue) throws(FunctionFailure) -> [String] {
  guard case .list(let items) = value else {
    throw .argument("wrong type for value; expected []string; got \(value.goTypeName)")
  }
  var strings: [String] = []
  strings.reserveCapacity(items.count)
  for item in items {
    guard let s = item.stringValue else {
      throw .argument("wrong type for value; expected []string; got \(value.goTypeName)")
    }
    strings.append(s)
  }
  return strings
}
