import EtcdClient
import Foundation
import Templates

#if canImport(Glibc)
import Glibc
#endif

// The scanner's rules for names a new file may not have, and its bounded, symlink-free looks at
// the files of a write-back destination (lstat, reads, the tree's walk).
extension LocalScanner {
  /// Names a new local file may not have to become a key: hidden files, editor backups and
  /// swap files, our own conflict copies and temp files. A path already in the record is
  /// never ignored.
  static func isIgnored(_ path: String) -> Bool {
    let segments = pathSegments(path)
    if segments.contains(where: { $0.utf8.first == UInt8(ascii: ".") }) { return true }
    let name = segments.last ?? path
    if isEmacsAutosave(name) || name.hasSuffix("~") || name == "4913" { return true }
    if name.hasSuffix(".swp") || name.hasSuffix(".swx") || name.hasSuffix(".tmp") { return true }
    // sed -i's temp file (`sed` and six letters or digits), JetBrains' safe-write copies.
    if isSedTemporary(name) || name.hasSuffix("___jb_tmp___") || name.hasSuffix("___jb_old___") { return true }
    if isConflictCopy(name) { return true }
    return pathProblem(path) != nil
  }

  /// `#NAME#`: Emacs' auto-save file. A name that only starts with `#` (`#notes`) is a file
  /// like any other.
  static func isEmacsAutosave(_ name: String) -> Bool {
    let bytes = name.utf8
    return bytes.count >= 2 && bytes.first == UInt8(ascii: "#") && bytes.last == UInt8(ascii: "#")
  }

  /// `sedXXXXXX`: GNU sed -i writes its output to `sed` and six random letters or digits
  /// beside the file, then renames it over the file.
  static func isSedTemporary(_ name: String) -> Bool {
    let bytes = Array(name.utf8)
    guard bytes.count == 9, bytes.starts(with: Array("sed".utf8)) else { return false }
    return bytes[3...].allSatisfy { (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) }
  }

  /// `NAME.conflict.REV` (or `NAME.conflict.REV.N` when that exists), as the agent names a
  /// kept local edit.
  static func isConflictCopy(_ name: String) -> Bool {
    guard let range = name.range(of: ".conflict.", options: .backwards) else { return false }
    let digits = name[range.upperBound...]
    return !digits.isEmpty && digits.first != "." && digits.allSatisfy { $0.isASCII && ($0.isNumber || $0 == ".") }
  }

  /// Why a changed file may not be pushed with the agent's credentials: a hard link (its
  /// bytes may be another file's, linked in by someone who cannot read that file through
  /// etcd otherwise), or a file owned by someone other than the mapping's owner (the agent's
  /// user unless `owner` is set) or root.
  func ownershipProblem(_ stamp: AtomicWriter.FileStamp) -> String? {
    if stamp.links > 1 {
      return "the file has \(stamp.links) hard links; a hard-linked file is not pushed (copy it instead)"
    }
    let expected = UInt32(self.owner ?? geteuid())
    if stamp.owner != expected && stamp.owner != 0 {
      return "the file belongs to uid \(stamp.owner), not to uid \(expected) (the mapping's owner) or root; it is not pushed"
    }
    return nil
  }

  /// What `lstat` says of a record path now (nil: nothing there).
  func stamp(_ path: String) -> AtomicWriter.FileStamp? {
    (try? self.checkedStamp(path)) ?? nil
  }

  /// Like ``stamp(_:)``, but nil only when nothing is there: a watched directory that cannot
  /// be opened, or is not the recorded one (see ``AtomicWriter/checkedStamp(of:)``), throws.
  func checkedStamp(_ path: String) throws(FileError) -> AtomicWriter.FileStamp? {
    Self.scanHook?(.open(ExactString(path)))
    let (writer, file) = self.reader()
    return try writer.checkedStamp(of: file ?? path)
  }

  /// Whether nothing stands at a record path (nor at a directory above it): looked at with
  /// `lstat`, never read. A path that cannot be looked at is not absent.
  func isAbsent(_ path: String) -> Bool {
    do throws(FileError) {
      return try self.checkedStamp(path) == nil
    } catch {
      return false
    }
  }

  /// Whether the regular file at a record path holds exactly `bytes`; at most their count
  /// plus one byte is read.
  func holds(_ path: String, _ bytes: [UInt8]) -> Bool {
    guard case .bytes(let read, _) = self.readLocal(path, limit: bytes.count) else { return false }
    return read == bytes
  }

  /// Reads a record path without following any symlink, at most `limit` bytes plus one (see
  /// ``AtomicWriter/read(_:limit:)``): only `.absent` is ever taken for a delete. Every read of
  /// a local file is bounded so: a file is never read whole from what its size claims.
  func readLocal(_ path: String, limit: Int) -> AtomicWriter.BoundedRead {
    Self.scanHook?(.open(ExactString(path)))
    let (writer, file) = self.reader()
    return writer.read(file ?? path, limit: limit)
  }

  /// Every regular file under the tree's root, relative to it; symlinks are not followed.
  func listTree() -> [String] {
    var paths: [String] = []
    // A file deeper than a key's path may go cannot be a key: the walk stops there, so that a
    // local user's 10,000-level tree costs neither a descriptor per level nor a scan of it.
    func walk(_ directory: FileDescriptor, _ relative: String, _ path: String, depth: Int) {
      guard let entries = try? listDirectory(directory, path: path) else { return }
      for entry in entries {
        guard let name = entry.name else { continue }
        let childRelative = joinPath(relative, name)
        switch entry.kind {
        case .directory:
          guard depth + 1 < maximumPathDepth else { continue }
          let childPath = joinPath(path, name)
          if let child = try? RootedDirectory.openChild(of: directory, name: name, path: childPath, create: false, mode: 0o755) {
            walk(child, childRelative, childPath, depth: depth + 1)
          }
        case .regular: paths.append(childRelative)
        case .symlink, .other: continue
        }
      }
    }
    if let root = try? RootedDirectory(root: self.mapping.dest, create: false, mode: 0o755, expected: self.expected) {
      walk(root.directory, "", self.mapping.dest, depth: 0)
    }
    return paths
  }
}
