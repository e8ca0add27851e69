#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Templates

/// One thing `sync` would change, as `etcsync diff` reports it: a file's bytes, its mode and
/// owner, or both; or (``note``) a swapped tree that would be published again although every
/// file in it is already as wanted.
public struct FileChange: Sendable, Equatable {
  /// The file's path (a tree's root for a note).
  public var path: String
  /// The bytes on disk; nil when there is no file.
  public var old: [UInt8]?
  /// The bytes `sync` would write; nil when it would delete the file.
  public var new: [UInt8]?
  /// Mode and owner on disk and what `sync` would set, when they differ (else both nil).
  public var oldMetadata: FileMetadata?
  /// See ``oldMetadata``.
  public var newMetadata: FileMetadata?
  /// Why `sync` would rewrite what holds no other difference (a swapped tree's stray
  /// entries or directory modes); nil otherwise.
  public var note: String?

  /// Creates a change.
  public init(path: String, old: [UInt8]?, new: [UInt8]?, oldMetadata: FileMetadata? = nil,
              newMetadata: FileMetadata? = nil, note: String? = nil) {
    self.path = path
    self.old = old
    self.new = new
    self.oldMetadata = oldMetadata
    self.newMetadata = newMetadata
    self.note = note
  }

  /// Whether the bytes differ (a created or deleted file included).
  public var contentChanged: Bool { self.old != self.new }
}

extension MappingRunner {
  /// What `sync` would change, without writing: bytes, mode and owner, as ``AtomicWriter``
  /// and ``TreeSwap`` decide what to rewrite. `previous` (the state file's record) names the
  /// tree files an in-place tree's sync would delete; a swapped tree is published as exactly
  /// the planned files, so whatever else it holds would go.
  public func diff(_ keySpace: KeySpace, previous: [ExactString: ContentHash] = [:]) throws(AgentError) -> [FileChange] {
    let plan: MappingPlan
    do { plan = try self.planner.plan(keySpace) } catch { throw AgentError(.plan, "mapping \(self.mapping.name): \(error.message)", cause: error) }
    do {
      switch plan.output {
      case .file(let file):
        let (writer, name) = AtomicWriter.forFile(self.mapping.dest)
        return try Self.change(self.mapping.dest, wanted: file, reader: writer, name: name).map { [$0] } ?? []
      case .tree(let files):
        guard let reader = try self.treeReader() else {
          return files.keys.sorted().map { FileChange(path: self.mapping.dest + "/" + $0.string, old: nil, new: files[$0]!.bytes) }
        }
        var paths = Set(files.keys).union(previous.keys.filter { $0 != Self.wholeFile })
        let swapped = self.mapping.swap == .symlink ? try self.currentTree(files) : nil
        let current = swapped?.tree
        if let current { paths.formUnion(current.files.keys) }
        var changes: [FileChange] = []
        for path in paths.sorted() {
          if let change = try Self.change(self.mapping.dest + "/" + path.string, wanted: files[path], reader: reader, name: path.string) {
            changes.append(change)
          }
        }
        if let swapped {
          // Readers reach the tree through `DEST/NAME -> ..data/NAME`: sync puts back a link
          // that is missing or points elsewhere, even when the tree itself is unchanged.
          for name in TreeSwap.topLevelNames(files.keys).sorted() {
            let target = TreeSwap.linkTarget(name.string)
            if readLinkAt(swapped.root.directory, name.string)?.bytesEqual(target) != true {
              changes.append(FileChange(
                path: self.mapping.dest + "/" + name.string, old: nil, new: nil,
                note: "sync would point it at \(target) again: the top-level symlink is missing or points elsewhere"))
            }
          }
        }
        if changes.isEmpty, let current, !current.matches(files) {
          changes.append(FileChange(
            path: self.mapping.dest, old: nil, new: nil,
            note: "sync would publish the tree again: it holds a symlink, a special file, an empty directory or a directory whose mode is not dirMode"))
        }
        return changes
      }
    } catch {
      throw AgentError(.write, "mapping \(self.mapping.name): \(error)", cause: error)
    }
  }

  /// The change at `name` below `reader`'s root (shown as `path`), or nil when the bytes, mode
  /// and owner already are `wanted` (or there is neither a file nor a wanted one).
  private static func change(_ path: String, wanted: DesiredFile?, reader: AtomicWriter, name: String) throws(FileError) -> FileChange? {
    let old = try reader.contents(of: name)
    var change = FileChange(path: path, old: old, new: wanted?.bytes)
    if let wanted, let (before, after) = try reader.attributeChange(wanted, at: name) {
      change.oldMetadata = before
      change.newMetadata = after
    }
    return change.contentChanged || change.oldMetadata != nil ? change : nil
  }

  /// The tree `..data` points at, compared with `files`, and the opened root; nil before
  /// the first publish.
  private func currentTree(_ files: [ExactString: DesiredFile]) throws(FileError) -> (tree: CurrentTree, root: RootedDirectory)? {
    let swap = self.treeWriter().swap
    let root = try RootedDirectory(root: self.mapping.dest, create: false, mode: swap.options.directoryMode)
    guard let tree = try swap.currentTree(in: root.directory, comparingWith: files) else { return nil }
    return (tree, root)
  }
}
