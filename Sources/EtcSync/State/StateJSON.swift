import Templates

/// The state file's JSON, written by hand; `JSONDecoder` still reads it (and any file
/// Foundation's `JSONEncoder` wrote before). The encoder built its whole tree of values before
/// writing a byte: for a 30,000-file tree its intermediates were 17 MB of the sync's 33 MB heap
/// peak (valgrind's massif), and the daemon saves the state up to once a second while a tree
/// changes (at every apply with write-back). This writes the
/// bytes directly, in the layout `JSONEncoder` used (`.prettyPrinted`, `.sortedKeys`, slashes
/// not escaped; two-space indents, `"key" : value`), except that each path table's
/// `[path, value]` pair sits on one line, as docs/writing.md shows it.
enum StateJSON {
  /// The state as JSON, ending in a newline.
  static func encode(_ state: SyncState) -> [UInt8] {
    var writer = Writer()
    let entries = state.mappings.values.reduce(0) { $0 + $1.files.count + $1.local.count + $1.intended.count }
    writer.out.reserveCapacity(1_024 + 128 * entries)
    writer.raw("{")
    var first = true
    if let clusterID = state.clusterID {
      writer.member("clusterID", level: 1, first: &first)
      writer.number(clusterID)
    }
    writer.member("destinations", level: 1, first: &first)
    writer.object(state.destinations, level: 1) { writer, record, level in
      writer.raw("{")
      var first = true
      writer.member("device", level: level + 1, first: &first)
      writer.number(record.device)
      writer.member("inode", level: level + 1, first: &first)
      writer.number(record.inode)
      writer.member("path", level: level + 1, first: &first)
      writer.string(record.path)
      writer.close("}", level: level, empty: false)
    }
    writer.member("mappings", level: 1, first: &first)
    writer.object(state.mappings, level: 1) { writer, mapping, level in
      writer.mapping(mapping, level: level)
    }
    writer.member("version", level: 1, first: &first)
    writer.number(Int64(state.version))
    writer.close("}", level: 0, empty: false)
    writer.out.append(UInt8(ascii: "\n"))
    return writer.out
  }

  struct Writer {
    var out: [UInt8] = []

    mutating func raw(_ text: StaticString) {
      text.withUTF8Buffer { self.out.append(contentsOf: $0) }
    }

    /// Ends an object or list: on its own line at `level`, or right after the opening bracket
    /// when it had no member.
    mutating func close(_ bracket: StaticString, level: Int, empty: Bool) {
      if !empty {
        self.out.append(UInt8(ascii: "\n"))
        self.indent(level)
      }
      self.raw(bracket)
    }

    mutating func indent(_ level: Int) {
      self.out.append(contentsOf: repeatElement(UInt8(ascii: " "), count: 2 * level))
    }

    /// `,` after the previous member, a new line, the indent and `"name" : `.
    mutating func member(_ name: String, level: Int, first: inout Bool) {
      if !first { self.out.append(UInt8(ascii: ",")) }
      first = false
      self.out.append(UInt8(ascii: "\n"))
      self.indent(level)
      self.string(name)
      self.raw(" : ")
    }

    mutating func number(_ value: some BinaryInteger) {
      self.out.append(contentsOf: String(value).utf8)
    }

    mutating func bool(_ value: Bool) {
      if value { self.raw("true") } else { self.raw("false") }
    }

    mutating func string(_ text: String) {
      FormatRenderer.appendJSONString(text, to: &self.out)
    }

    /// `"sha256:<hex>"`, as ``ContentHash``'s description, without building the string.
    mutating func hash(_ hash: ContentHash) {
      self.out.append(UInt8(ascii: "\""))
      hash.append(to: &self.out)
      self.out.append(UInt8(ascii: "\""))
    }

    /// A `String`-keyed object, its members in the byte order of their names.
    mutating func object<Value>(_ members: [String: Value], level: Int, value: (inout Writer, Value, Int) -> Void) {
      self.raw("{")
      var first = true
      for name in members.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
        self.member(name, level: level + 1, first: &first)
        value(&self, members[name]!, level + 1)
      }
      self.close("}", level: level, empty: first)
    }

    /// A path table: `[path, value]` pairs, one per line, in byte order of the paths.
    mutating func table<Value>(_ entries: [ExactString: Value], level: Int, value: (inout Writer, Value) -> Void) {
      self.raw("[")
      var first = true
      for path in entries.keys.sorted() {
        if !first { self.out.append(UInt8(ascii: ",")) }
        first = false
        self.out.append(UInt8(ascii: "\n"))
        self.indent(level + 1)
        self.out.append(UInt8(ascii: "["))
        self.string(path.string)
        self.raw(", ")
        value(&self, entries[path]!)
        self.out.append(UInt8(ascii: "]"))
      }
      self.close("]", level: level, empty: first)
    }

    mutating func record(_ record: LocalRecord) {
      self.raw("{\"hash\" : ")
      self.hash(record.hash)
      self.raw(", \"revision\" : ")
      self.number(record.revision)
      self.raw("}")
    }

    mutating func mapping(_ mapping: MappingState, level: Int) {
      self.raw("{")
      var first = true
      self.member("appliedRevision", level: level + 1, first: &first)
      self.number(mapping.appliedRevision)
      self.member("files", level: level + 1, first: &first)
      self.table(mapping.files, level: level + 1) { writer, hash in writer.hash(hash) }
      self.member("intended", level: level + 1, first: &first)
      self.table(mapping.intended, level: level + 1) { writer, record in writer.record(record) }
      self.member("local", level: level + 1, first: &first)
      self.table(mapping.local, level: level + 1) { writer, record in writer.record(record) }
      self.member("pendingReload", level: level + 1, first: &first)
      self.bool(mapping.pendingReload)
      self.close("}", level: level, empty: false)
    }
  }
}
