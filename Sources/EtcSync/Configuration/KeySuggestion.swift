/// "Did you mean …?" for unknown keys and enumeration values.
enum KeySuggestion {
  /// Spellings from confd, consul-template and etcdctl that have a different name here,
  /// keyed in squashed form (lower case, no `_` or `-`). Looked up before the edit distance.
  static let aliases: [String: String] = [
    "src": "template", "source": "template", "destination": "dest", "keys": "prefixes",
    "checkcmd": "check", "reloadcmd": "reload", "command": "reload", "perms": "mode",
    "uid": "owner", "user": "owner", "gid": "group", "createdestdirs": "createDirs", "type": "kind",
    "cafile": "ca", "cacert": "ca", "certfile": "cert", "keyfile": "key", "username": "user",
    "password": "passwordFile", "minimum": "min", "maximum": "max", "timeout": "commandTimeout",
  ]

  /// The candidate closest to `word`: one that differs only in case, `_` or `-`, a known
  /// alias, or one within edit distance 2 (the first of equally close candidates).
  static func closest(to word: String, in candidates: [String]) -> String? {
    let squashed = self.squash(word)
    if let match = candidates.first(where: { self.squash($0) == squashed }) { return match }
    if let alias = self.aliases[squashed], candidates.contains(alias) { return alias }
    var best: (candidate: String, distance: Int)?
    for candidate in candidates {
      let distance = self.editDistance(word, candidate)
      if distance <= 2, distance < (best?.distance ?? Int.max) { best = (candidate, distance) }
    }
    return best?.candidate
  }

  /// Lower case without `_` and `-`: `write_back`, `write-back` and `writeback` all match
  /// `writeBack`.
  private static func squash(_ word: String) -> String {
    String(word.lowercased().filter { $0 != "_" && $0 != "-" })
  }

  /// Levenshtein distance over characters.
  static func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a)
    let b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
      current[0] = i
      for j in 1...b.count {
        let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
        current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
      }
      swap(&previous, &current)
    }
    return previous[b.count]
  }
}
