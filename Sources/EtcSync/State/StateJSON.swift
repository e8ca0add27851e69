import Synchronization
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
  ///
  /// `order` keeps each path table's sorted paths from one save to the next: a table whose
  /// paths are the same (as many, each one present) is written in that order without being
  /// sorted again. Sorting 100,000 paths was half of a large tree's save.
  static func encode(_ state: SyncState, order: PathOrder? = nil) -> [UInt8] {
    var writer = Writer()
    writer.order = order
    let entries = state.mappings.values.reduce(0) { $0 + $1.files.count + $1.local.count + $1.intended.count }
    writer.out.reserveCapacity(1_024 + 128 * entries)
    writer.raw("{")
    var first = true
    if let clusterID = state.clusterID {
      writer.member("clusterID", level: 1, first: &first)
      writer.number(clusterID)
    }
    writer.member("destinations", level: 1, first: &first)
    writer.object(state.destinations, level: 1) { writer, _, record, level in
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
    writer.object(state.mappings, level: 1) { writer, name, mapping, level in
      writer.mapping(mapping, named: name, level: level)
    }
    writer.member("version", level: 1, first: &first)
    writer.number(Int64(state.version))
    writer.close("}", level: 0, empty: false)
    writer.out.append(UInt8(ascii: "\n"))
    return writer.out
  }

  /// The sorted paths of each table of the last save, by mapping and table.
  final class PathOrder: Sendable {
    private let tables = Mutex<[String: [ExactString]]>([:])

    init() {}

    func paths(_ table: String) -> [ExactString]? { self.tables.withLock { $0[table] } }

    func set(_ table: String, _ paths: [ExactString]) { self.tables.withLock { $0[table] = paths } }
  }

  struct Writer {
    var out: [UInt8] = []
    var order: PathOrder?

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
    mutating func object<Value>(_ members: [String: Value], level: Int, value: (inout Writer, String, Value, Int) -> Void) {
      self.raw("{")
      var first = true
      for name in members.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
        self.member(name, level: level + 1, first: &first)
        value(&self, name, members[name]!, level + 1)
      }
      self.close("}", level: level, empty: first)
    }

    /// A path table: `[path, value]` pairs, one per line, in byte order of the paths.
    /// With an ``order``, the table's paths of the last save (under `key`) are tried first.
    mutating func table<Value>(_ entries: [ExactString: Value], key: String, level: Int, value: (inout Writer, Value) -> Void) {
      let start = self.out.count
      if let order = self.order, let paths = order.paths(key), paths.count == entries.count {
        if self.rows(paths, entries, level: level, value: value) { return }
        self.out.removeSubrange(start...)
      }
      let paths = entries.keys.sorted()
      _ = self.rows(paths, entries, level: level, value: value)
      self.order?.set(key, paths)
    }

    /// The table's rows in the order of `paths`; false (with part of it written) when a path
    /// is not in `entries`.
    private mutating func rows<Value>(_ paths: [ExactString], _ entries: [ExactString: Value], level: Int,
                                      value: (inout Writer, Value) -> Void) -> Bool {
      self.raw("[")
      var first = true
      for path in paths {
        guard let entry = entries[path] else { return false }
        if !first { self.out.append(UInt8(ascii: ",")) }
        first = false
        self.out.append(UInt8(ascii: "\n"))
        self.indent(level + 1)
        self.out.append(UInt8(ascii: "["))
        self.string(path.string)
        self.raw(", ")
        value(&self, entry)
        self.out.append(UInt8(ascii: "]"))
      }
      self.close("]", level: level, empty: first)
      return true
    }

    mutating func record(_ record: LocalRecord) {
      self.raw("{\"hash\" : ")
      self.hash(record.hash)
      self.raw(", \"revision\" : ")
      self.number(record.revision)
      self.raw("}")
    }

    /// Mapping `name`'s state; its tables' orders are kept under `name` + NUL + the table's name.
    mutating func mapping(_ mapping: MappingState, named name: String, level: Int) {
      self.raw("{")
      var first = true
      self.member("appliedRevision", level: level + 1, first: &first)
      self.number(mapping.appliedRevision)
      self.member("files", level: level + 1, first: &first)
      self.table(mapping.files, key: name + "\u{0}files", level: level + 1) { writer, hash in writer.hash(hash) }
      self.member("intended", level: level + 1, first: &first)
      self.table(mapping.intended, key: name + "\u{0}intended", level: level + 1) { writer, record in writer.record(record) }
      self.member("local", level: level + 1, first: &first)
      self.table(mapping.local, key: name + "\u{0}local", level: level + 1) { writer, record in writer.record(record) }
      self.member("pendingReload", level: level + 1, first: &first)
      self.bool(mapping.pendingReload)
      self.close("}", level: level, empty: false)
    }
  }
}
