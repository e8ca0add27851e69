/// Every function a template can call, resolved by name while parsing; calls dispatch on
/// this enum, with no dictionary lookup or closure in the render loop.
enum Builtin: String, CaseIterable, Sendable {
  // Go text/template built-ins.
  case and, or, not, len, index, slice, print, printf, println
  case eq, ne, lt, le, gt, ge
  case html, js, urlquery
  // confd's store functions.
  case get, gets, getv, getvs, exists, ls, lsdir
  // confd's other functions.
  case base, dir, split, join, toUpper, toLower, contains, replace, trimSuffix
  case json, jsonArray, base64Encode, base64Decode, atoi, parseBool
  case add, sub, mul, div, mod, seq, reverse, sortByLength, sortKVByLength
  case map, getenv, datetime, lookupIP, lookupIPV4, lookupIPV6, lookupSRV
  // A few from consul-template and sprig.
  case toJSON, toYAML, indent, trimSpace, `default`
  // sprig's (and consul-template's) functions that templates reach for most.
  case regexMatch, regexReplaceAll, regexFind, sha256sum, sha1sum, md5sum, hostname, fileExists
  case dict, list, append, hasKey, keys, values, uniq, sortAlpha, urlParse, b64enc, b64dec
  case trim, trimPrefix, hasPrefix, hasSuffix, title, quote, squote, nindent
  case ternary, coalesce, empty, required, toInt, toString, max, min

  /// The accepted number of arguments: (minimum, maximum or nil for any).
  var arity: (min: Int, max: Int?) {
    switch self {
    case .and, .or, .print, .println, .map: return (self == .and || self == .or ? 1 : 0, nil)
    case .eq: return (1, nil)
    case .printf: return (1, nil)
    case .index, .slice: return (1, nil)
    case .html, .js, .urlquery: return (0, nil)
    case .not, .len, .get, .gets, .getvs, .exists, .ls, .lsdir, .base, .dir, .toUpper, .toLower,
      .json, .jsonArray, .base64Encode, .base64Decode, .atoi, .parseBool, .reverse, .sortByLength,
      .sortKVByLength, .lookupIP, .lookupIPV4, .lookupIPV6, .toJSON, .toYAML, .trimSpace:
      return (1, 1)
    case .ne, .lt, .le, .gt, .ge, .split, .join, .contains, .trimSuffix, .add, .sub, .mul, .div,
      .mod, .seq, .indent:
      return (2, 2)
    case .getv, .getenv, .default: return (1, 2)
    case .replace: return (4, 4)
    case .lookupSRV: return (3, 3)
    case .datetime, .hostname: return (0, 0)
    case .dict, .list, .quote, .squote, .coalesce: return (0, nil)
    case .keys, .max, .min: return (1, nil)
    case .sha256sum, .sha1sum, .md5sum, .fileExists, .values, .uniq, .sortAlpha, .urlParse, .b64enc,
      .b64dec, .trim, .title, .empty, .toInt, .toString:
      return (1, 1)
    case .regexMatch, .regexFind, .append, .hasKey, .trimPrefix, .hasPrefix, .hasSuffix, .nindent,
      .required:
      return (2, 2)
    case .regexReplaceAll, .ternary: return (3, 3)
    }
  }

  /// Checks the argument count, with Go's wording.
  func checkArity(_ count: Int) throws(FunctionFailure) {
    let (min, max) = arity
    if let max, min == max, count != min {
      throw .argument("wrong number of args for \(rawValue): want \(min) got \(count)")
    }
    if count < min {
      throw .argument("wrong number of args for \(rawValue): want at least \(min) got \(count)")
    }
    if let max, count > max {
      throw .argument("wrong number of args for \(rawValue): want at most \(max) got \(count)")
    }
  }
}
