#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Templates

/// The tree `..data` currently points at, as compared with a wanted tree.
struct CurrentTree {
  /// One regular file of the current tree.
  struct File {
    /// Its `lstat`, whose mode and owner a new revision inherits when none is configured.
    var info: stat
    /// Whether its bytes and attributes already are the wanted ones.
    var matches: Bool
  }

  /// The hidden revision directory's name.
  var directoryName: String
  /// Regular files by relative path.
  var files: [ExactString: File] = [:]
  /// False when the tree holds anything a publish would not produce (symlinks, special
  /// files, empty directories, non-UTF-8 names, directories of another mode).
  var clean = true

  /// Whether publishing `wanted` would produce exactly this tree.
  func matches(_ wanted: [ExactString: DesiredFile]) -> Bool {
    clean && files.count == wanted.count
      && wanted.keys.allSatisfy { files[$0]?.matches == true }
  }
}

extension TreeSwap {
  /// Reads the current tree, comparing every file with `wanted`; nil when there is no
  /// current revision (first publish, or `..data` dangling).
  func currentTree(in rootDir: FileDescriptor, comparingWith wanted: [ExactString: DesiredFile])
    throws(FileError) -> CurrentTree?
  {
    guard let name = Self.currentTarget(of: rootDir) else { return nil }
    let path = joinPath(root, name)
    let directory: FileDescriptor
    do {
      directory = try RootedDirectory.openChild(
        of: rootDir, name: name, path: path, create: false, mode: options.directoryMode)
    } catch where error.errno == ENOENT {
      return nil
    }
    var tree = CurrentTree(directoryName: name)
    tree.clean = directoryModeMatches(directory)
    _ = try walk(directory, relative: "", path: path, wanted: wanted, into: &tree)
    return tree
  }

  /// Records the files below `directory`; returns how many regular files it holds.
  private func walk(
    _ directory: FileDescriptor, relative: String, path: String,
    wanted: [ExactString: DesiredFile], into tree: inout CurrentTree
  ) throws(FileError) -> Int {
    var count = 0
    for entry in try listDirectory(directory, path: path) {
      guard let name = entry.name else {
        tree.clean = false
        continue
      }
      let childRelative = joinPath(relative, name)
      let childPath = joinPath(path, name)
      switch entry.kind {
      case .directory:
        let child = try RootedDirectory.openChild(
          of: directory, name: name, path: childPath, create: false, mode: options.directoryMode)
        if !directoryModeMatches(child) { tree.clean = false }
        let inside = try walk(
          child, relative: childRelative, path: childPath, wanted: wanted, into: &tree)
        if inside == 0 { tree.clean = false }
        count += inside
      case .regular:
        guard let info = lstatAt(directory, name) else {
          throw .system(.read, childPath, "cannot inspect a file of the current tree")
        }
        let key = ExactString(childRelative)
        let matches = wanted[key].map { fileMatches($0, name, directory, info) } ?? false
        tree.files[key] = CurrentTree.File(info: info, matches: matches)
        count += 1
      case .symlink, .other:
        tree.clean = false
      }
    }
    return count
  }

  private func fileMatches(
    _ file: DesiredFile, _ name: String, _ directory: FileDescriptor, _ info: stat
  ) -> Bool {
    EffectiveAttributes(file.attributes, existing: info).matches(info)
      && hasContent(file.bytes, name: name, in: directory, info: info)
  }

  private func directoryModeMatches(_ directory: FileDescriptor) -> Bool {
    guard let info = directory.status() else { return false }
    return info.st_mode & 0o7777 == options.directoryMode
  }
}
