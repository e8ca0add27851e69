/// One mapping from etcd to local files: which keys, which file or directory, and what to do
/// around each write.
///
/// Two mappings are equal when every setting is; on SIGHUP the agent matches old and new
/// mappings by ``name`` and restarts only those that differ (see
/// ``AgentConfiguration/mappingChanges(from:)``).
public struct Mapping: Sendable, Equatable {
  /// How the keys become files.
  public enum Kind: String, Sendable, Hashable, CaseIterable {
    /// One or more prefixes render through a Go text/template into one file.
    case template
    /// A prefix maps to a directory, one file per key, with nested directories.
    case tree
    /// One key maps to one file holding its raw bytes.
    case file
    /// A prefix becomes one JSON, YAML, TOML, env or properties document.
    case format
  }

  /// How a `tree` mapping replaces its files.
  public enum Swap: String, Sendable, Hashable, CaseIterable {
    /// The whole tree is written beside the old one and swapped in with one rename of the
    /// `..data` symlink, as Kubernetes does: readers never see two revisions mixed.
    case symlink
    /// Each changed file is replaced atomically on its own; no symlinks.
    case inPlace = "in-place"
  }

  /// The document a `format` mapping writes.
  public enum Format: String, Sendable, Hashable, CaseIterable {
    case json, yaml, toml, env, properties
  }

  /// Who wins when a local edit and an etcd change race (write-back only).
  public enum ConflictPolicy: String, Sendable, Hashable, CaseIterable {
    /// etcd's value is written; the local edit is kept beside the file as `NAME.conflict.REV`.
    case etcdWins = "etcd-wins"
    /// The local edit is put to etcd, overwriting the newer value.
    case localWins = "local-wins"
  }

  /// Unique name, used in logs, metrics labels, the state file and presence values.
  public var name: String
  /// How the keys become files.
  public var kind: Kind
  /// The etcd prefixes read: one or more for `template`, exactly one for `tree` and `format`,
  /// none for `file`.
  public var prefixes: [String]
  /// The one key of a `file` mapping.
  public var key: String?
  /// Absolute path of the template file of a `template` mapping.
  public var template: String?
  /// Absolute path of the file (or, for `tree`, the directory) written. No two mappings'
  /// destinations overlap.
  public var dest: String
  /// Permission bits of written files; `nil` keeps an existing file's mode (new files get
  /// 0644).
  public var mode: UInt16?
  /// Owner of written files, a user name or numeric id; `nil` keeps the existing owner (new
  /// files belong to the agent's user).
  public var owner: String?
  /// Group of written files, a name or numeric id; `nil` as for ``owner``.
  public var group: String?
  /// Permission bits of directories the agent creates; `nil` gives 0755.
  public var dirMode: UInt16?
  /// Whether missing parent directories of ``dest`` are created (default true).
  public var createDirs: Bool
  /// Command run on each staged file before it replaces the old one, as argv; `{{.src}}` is
  /// replaced by the staged file's path. A non-zero exit keeps the old file.
  public var check: [String]?
  /// Command run once per applied batch after files changed, as argv.
  public var reload: [String]?
  /// Timeout of ``check`` and ``reload``; `nil` uses the global `commandTimeout`.
  public var commandTimeout: Duration?
  /// Quiescence of this mapping; `nil` uses the global `wait`.
  public var wait: WaitSettings?
  /// How a write that failed for a passing reason (or a failing `check`) is retried
  /// (default 1 s, doubling, at most 5 s).
  public var retry: RetrySettings
  /// How a `tree` replaces its files (default `.symlink`; always `.inPlace` with write-back);
  /// ignored by other kinds.
  public var swap: Swap
  /// The document format of a `format` mapping.
  public var format: Format?
  /// Whether local edits are pushed back to etcd (`tree`, `file` and `format` only).
  public var writeBack: Bool
  /// The write-back conflict policy (default `.etcdWins`).
  public var conflict: ConflictPolicy
  /// Whether deleting a local file deletes its key (write-back only; default false).
  public var deletes: Bool
  /// Quotas and the mass-deletion guard of write-back (``WriteBackLimits``).
  public var writeBackLimits: WriteBackLimits
  /// confd's `prefix`: the mapping's (or the top level's) `keyPrefix`, cleaned, starting with
  /// `/` (see ``KeyJoin``). ``prefixes`` and ``key`` already include it; a template reads
  /// `getv "/db/url"` as `<keyPrefix>/db/url`. `nil` when none is set.
  public var keyPrefix: String?
  /// What `.Foo` on a map without `Foo` does in a template (default `.error`).
  public var missingKey: MissingKeyOption = .error
  /// The template's action delimiters, such as `("[[", "]]")`; `nil` for `{{` and `}}`.
  public var delimiters: Delimiters?
  /// Whether the daemon puts back a file of this mapping that someone changed, deleted or
  /// replaced locally (default true; see "Drift repair" in docs/agent.md). Write-back
  /// mappings never do: they push local edits instead.
  public var repairDrift = true

  /// A mapping with the defaults for everything not given.
  public init(
    name: String,
    kind: Kind,
    prefixes: [String] = [],
    key: String? = nil,
    template: String? = nil,
    dest: String,
    mode: UInt16? = nil,
    owner: String? = nil,
    group: String? = nil,
    dirMode: UInt16? = nil,
    createDirs: Bool = true,
    check: [String]? = nil,
    reload: [String]? = nil,
    commandTimeout: Duration? = nil,
    wait: WaitSettings? = nil,
    retry: RetrySettings = .standard,
    swap: Swap = .symlink,
    format: Format? = nil,
    writeBack: Bool = false,
    conflict: ConflictPolicy = .etcdWins,
    deletes: Bool = false,
    writeBackLimits: WriteBackLimits = WriteBackLimits()
  ) {
    self.name = name
    self.kind = kind
    self.prefixes = prefixes
    self.key = key
    self.template = template
    self.dest = dest
    self.mode = mode
    self.owner = owner
    self.group = group
    self.dirMode = dirMode
    self.createDirs = createDirs
    self.check = check
    self.reload = reload
    self.commandTimeout = commandTimeout
    self.wait = wait
    self.retry = retry
    // A write-back tree needs real files to edit: it is always written in place (the
    // configuration file refuses `swap: symlink` beside `writeBack: true`).
    self.swap = writeBack && kind == .tree ? .inPlace : swap
    self.format = format
    self.writeBack = writeBack
    self.conflict = conflict
    self.deletes = deletes
    self.writeBackLimits = writeBackLimits
  }

  /// Go's `missingkey` option of a `template` mapping.
  public enum MissingKeyOption: String, Sendable, Hashable, CaseIterable {
    /// Fail the render, naming the key (etcsync's default).
    case error
    /// Go's `missingkey=zero`: the zero value of the map's element type. Maps in templates
    /// hold any value (`map[string]interface{}` in Go), whose zero value is nil, so this
    /// prints `<no value>`, exactly as Go and confd do.
    case zero
    /// Go's default (`missingkey=default` or `invalid`): `<no value>`.
    case `default`
  }

  /// A template's left and right action delimiters.
  public struct Delimiters: Sendable, Hashable {
    public var left: String
    public var right: String
    /// The delimiters `left` and `right`, both non-empty.
    public init(left: String, right: String) {
      self.left = left
      self.right = right
    }
  }

  /// The single prefix of a `tree` or `format` mapping (the first of a `template`'s).
  public var prefix: String? { self.prefixes.first }

}
