import EtcdClient
import Foundation
import Logging
import Synchronization
import Templates

// The state file and the temp files a crash left behind.
extension Agent {
  func save(_ mappingState: MappingState, for name: String) {
    // The runner's copy predates the write-back record kept meanwhile.
    let local = self.state[mapping: name].local
    self.state.mappings[name] = mappingState
    self.state.mappings[name]?.local = local
    // In the daemon, a mapping without write-back is saved at most once a second (see
    // ``SaveCoalescer`` for why).
    let writeBack = self.runners.first { $0.mapping.name == name }?.mapping.writeBack ?? true
    if self.saves.recordChanged(writeBack: writeBack, now: .now) { self.saveState() }
  }

  /// Saves the state now if a coalesced save is due (or `force`).
  func flushState(force: Bool = false) {
    guard self.saves.shouldFlush(now: .now, force: force) else { return }
    self.saveState()
  }

  func saveState() {
    self.saves.saved(at: .now)
    do {
      try self.stateFile.save(self.state)
    } catch {
      self.logger.error("cannot save the state file", metadata: ["file.path": "\(self.stateFile.path)", "error": "\(error)"])
    }
  }

  func cleanTemporaryFiles() {
    for runner in self.runners {
      if runner.mapping.kind == .tree {
        _ = try? TemporaryFileCleanup.clean(root: runner.mapping.dest)
      } else {
        Self.removeTemporaryFiles(besides: runner.mapping.dest)
      }
    }
  }

  /// Removes the temp files a crash left beside one destination file (`.NAME.etcsync-tmp-`
  /// and 16 hex digits, in its directory) and nothing else. The tree cleanup is meant for a
  /// root the mapping owns: run on a file's directory it walked all of it (all of `/etc` for
  /// `/etc/motd`, the whole file system for `/motd`) and deleted other writers' temp files
  /// and hidden `..N.hex` directories.
  static func removeTemporaryFiles(besides dest: String) {
    let (writer, name) = AtomicWriter.forFile(dest)
    let sample = Array(TemporaryName.make(for: name).utf8)
    let prefix = sample.dropLast(16)
    // Opened like the writers open it (no symlink on the way, nothing another user controls),
    // listed and compared as bytes, removed relative to that descriptor.
    guard let directory = try? RootedDirectory(root: writer.root, create: false, mode: 0o755),
      let entries = try? listDirectory(directory.directory, path: writer.root)
    else { return }
    for entry in entries where entry.bytes.starts(with: prefix) && entry.bytes.count == sample.count
      && entry.bytes.suffix(16).allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) })
    {
      _ = unlinkat(directory.directory.raw, entry.cName, 0)  // never follows a symlink
    }
  }
}
