import Synchronization
import Templates

#if canImport(Glibc)
import Glibc
#endif

/// What a drift repair of one mapping did (see ``MappingRunner/repair(_:recorded:drifted:)``).
enum DriftRepairOutcome: Sendable, Equatable {
  /// These files (destination paths) were put back; none may have needed it after all.
  case restored([String])
  /// The snapshot no longer renders the bytes the record holds (a template reading
  /// `hostname` or a local file, a held conflicting key): nothing was written.
  case stale
  /// Planning or writing failed; the files are as they were (a failed write of a tree may
  /// have restored some).
  case failed(MappingError)
}

/// How a drifted file differs from what the agent wrote (for the log).
enum DriftKind: String, Sendable {
  /// A regular file with other bytes.
  case changed
  /// Nothing there.
  case deleted
  /// Something else there: a symlink, a directory, a FIFO, an unreadable file.
  case replaced
  /// The bytes are right, but not the configured mode, owner or group.
  case attributes
}

/// What a mapping's writes leave behind for the drift checks, shared by every copy of its
/// runner: how many writes began (a check that started before one is stale), and the
/// revision directory of a swapped tree that the agent last published or found intact (so a
/// `..data` that moves there is the agent's own publish, and one that moves elsewhere is not).
final class DriftMarks: Sendable {
  private let state = Mutex<(writes: Int, published: String?)>((0, nil))

  init() {}

  /// Writes begun so far (applies and repairs).
  var writes: Int { self.state.withLock { $0.writes } }
  /// The revision directory `..data` should point at (nil: not known).
  var published: String? { self.state.withLock { $0.published } }

  /// A write of the mapping's files begins.
  func writing() { self.state.withLock { $0.writes += 1 } }

  /// `..data` points at `directory`, which the agent published or found to hold its tree.
  func published(_ directory: String?) { self.state.withLock { $0.published = directory } }
}

/// What a drift check of one mapping found (computed away from the agent's executor).
struct DriftFound: Sendable {
  /// Files that no longer hold what the agent wrote.
  var drifted: [(path: ExactString, kind: DriftKind)]
  /// ``DriftMarks/writes`` when the check began: a write since makes the result stale.
  var writes: Int
  /// The record the files were compared with.
  var recorded: [ExactString: ContentHash]
  /// A swapped tree's revision directory that a whole check found intact.
  var verified: String?
  /// How many recorded files the check read.
  var checked = 0
  /// Whether every recorded file was compared: a whole check, or one that named them all
  /// (a file mapping's one file).
  var coversEverything: Bool { self.checked >= self.recorded.count }
}

/// What the daemon does with a drift check's result (``DriftFound/followUp(current:inPlaceTree:)``).
enum DriftFollowUp: Sendable, Equatable {
  /// Put the drifted files back.
  case putBack
  /// Check these files again once the mapping can be.
  case recheck(Set<ExactString>)
  /// Nothing: nothing drifted, or the apply that overtook the check compared every file.
  case none
}

extension DriftFound {
  /// What to do with this result. `current`: no write or change came since the check
  /// began, and the record is the one it compared with. A stale result (a write since, or a
  /// change waiting) is not acted on. A file or a swapped tree is compared whole by the
  /// apply that made it stale; an in-place tree's apply writes only the files whose record
  /// changed (``MappingRunner/apply(_:state:keep:expected:trustRecord:arrival:persist:)``),
  /// so its drifted files are checked again (one the apply rewrote then matches its new
  /// record).
  func followUp(current: Bool, inPlaceTree: Bool) -> DriftFollowUp {
    guard !self.drifted.isEmpty else { return .none }
    if current { return .putBack }
    return inPlaceTree ? .recheck(Set(self.drifted.map(\.path))) : .none
  }
}

// Drift repair: files of a mapping without write-back that someone changed locally are put
// back to what the agent wrote (docs/agent.md, "Drift repair").
extension MappingRunner {
  /// Whether the daemon repairs this mapping's files: write-back mappings push local edits
  /// instead, and `repairDrift: false` opts out.
  var repairsDrift: Bool { self.mapping.repairDrift && !self.mapping.writeBack }

  /// The record paths (``MappingRunner/wholeFile`` for one file, relative paths in a tree)
  /// whose files a change that inotify reported at `changed` (relative to the watched
  /// directory) may concern, among `recorded`. Nil: check every recorded file.
  ///
  /// A swapped tree's files live in the revision directory `..data` points at: a change in
  /// it, or in a revision directory that was live when the change came (the drift watcher
  /// leaves out the agent's own staging and removals), is a change of the same relative path;
  /// a top-level name is the symlink to everything below it.
  func driftCandidates(_ changed: Set<ExactString>, recorded: [ExactString: ContentHash]) -> Set<ExactString>? {
    guard self.mapping.kind == .tree else { return changed.isEmpty ? [] : [Self.wholeFile] }
    let current = self.mapping.swap == .symlink ? (try? TreeSwap(root: self.mapping.dest).currentDirectory()) ?? nil : nil
    // `..data` moved (or went): the agent's own publish leaves it at the directory it
    // recorded; anywhere else (someone re-pointed it), every file is checked through it.
    if self.mapping.swap == .symlink, changed.contains(where: { $0.utf8.elementsEqual(TreeSwap.dataLinkName.utf8) }),
      current == nil || current != self.driftMarks.published
    {
      return nil
    }
    var prefixes: [ExactString] = []
    for path in changed {
      // The watcher decodes a name that is not UTF-8 with replacement characters: such a
      // change cannot be matched to its file, so every file is checked.
      if path.string.unicodeScalars.contains("\u{FFFD}") { return nil }
      guard self.mapping.swap == .symlink else {
        prefixes.append(path)
        continue
      }
      let segments = pathSegments(path.string)
      guard let first = segments.first else { continue }
      if first.utf8.starts(with: "..".utf8) {
        // `..data` and `..data_tmp` move at every publish of the agent's own; the files
        // they lead to are reported by name when they change.
        guard segments.count > 1, !first.bytesEqual(TreeSwap.dataLinkName), !first.bytesEqual(TreeSwap.dataTempLinkName)
        else { continue }
        // A change in the current revision is a change of the same relative path. So is one
        // in a revision that was live when it came (the watcher drops the others) and was
        // replaced since: a publish hard-links unchanged files, so a file edited in place
        // during the publish may be the new revision's file too.
        guard current != nil else { continue }
        prefixes.append(ExactString(segments.dropFirst().joined(separator: "/")))
      } else if segments.count == 1 {
        // A top-level name is the agent's symlink `..data/NAME`: the files below it are
        // reported by their own paths in the revision directory when they change, so only
        // a link that is no longer intact makes them candidates.
        if !self.topLevelLinkIsIntact(first) { prefixes.append(path) }
      } else {
        prefixes.append(path)
      }
    }
    var candidates: Set<ExactString> = []
    for prefix in prefixes {
      if recorded[prefix] != nil {
        candidates.insert(prefix)
        continue
      }
      // A directory reported removed (or a top-level symlink) stands for everything below it.
      let below = Array(prefix.utf8) + [UInt8(ascii: "/")]
      for path in recorded.keys where path.utf8.starts(with: below) { candidates.insert(path) }
    }
    return candidates
  }

  /// Which of `candidates` (all recorded files when nil) no longer hold what `recorded` says
  /// the agent wrote: gone, replaced by something other than a regular file, or other bytes.
  /// Reads each file once, never following a symlink.
  /// Files larger than this are taken as drifted without being read: 1 GiB, far above any
  /// configuration file etcd's values make (an output of the agent's own larger than this
  /// would be rewritten at every check).
  static let driftSizeLimit: Int64 = 1 << 30

  /// `ignoringAttributes`: paths whose configured mode or owner did not stay after a repair
  /// (the file system or the kernel changes it): only their bytes are compared.
  func drifted(_ candidates: Set<ExactString>?, recorded: [ExactString: ContentHash],
               ignoringAttributes: Set<ExactString> = []) -> [(path: ExactString, kind: DriftKind)] {
    let paths = (candidates ?? Set(recorded.keys)).filter { recorded[$0] != nil }.sorted()
    guard !paths.isEmpty else { return [] }
    // Files are hashed as they are streamed (a huge file planted by a local user costs no
    // memory), and one over the limit is taken as changed without being read.
    // A configured mode or owner is compared too (an unconfigured one is whatever the file
    // has): an apply writes only the files whose keys changed, so nothing else puts it back.
    let attributes = self.planner.attributes
    let configured = attributes.mode != nil || attributes.userID != nil || attributes.groupID != nil
    func compare(_ read: (read: AtomicWriter.HashedRead, info: stat?), _ hash: ContentHash, record: ExactString) -> DriftKind? {
      switch read.read {
      case .absent: return .deleted
      case .unreadable: return .replaced
      case .tooLarge: return .changed
      case .hash(let found):
        if found != hash { return .changed }
        guard configured, !ignoringAttributes.contains(record), let info = read.info else { return nil }
        return FileMetadata(attributes, over: info) == FileMetadata(info) ? nil : .attributes
      }
    }
    var found: [(path: ExactString, kind: DriftKind)] = []
    switch self.mapping.kind {
    case .tree where self.mapping.swap == .symlink:
      // Read through the revision directory `..data` points at; the top-level symlink that
      // leads a reader there is checked too.
      guard let reader = try? self.treeReader() else { return paths.map { ($0, .replaced) } }
      for path in paths where !Task.isCancelled {
        guard let top = pathSegments(path.string).first, self.topLevelLinkIsIntact(top) else {
          var info = stat()
          let gone = lstat(self.mapping.dest + "/" + (pathSegments(path.string).first ?? ""), &info) != 0 && errno == ENOENT
          found.append((path, gone ? .deleted : .replaced))
          continue
        }
        if let kind = compare(reader.hashAndStat(path.string, sizeLimit: Self.driftSizeLimit), recorded[path]!, record: path) {
          found.append((path, kind))
        }
      }
    case .tree:
      let reader = AtomicWriter(root: self.mapping.dest)
      for path in paths where !Task.isCancelled {
        if let kind = compare(reader.hashAndStat(path.string, sizeLimit: Self.driftSizeLimit), recorded[path]!, record: path) {
          found.append((path, kind))
        }
      }
    default:
      let (reader, name) = AtomicWriter.forFile(self.mapping.dest)
      if let hash = recorded[Self.wholeFile],
        let kind = compare(reader.hashAndStat(name, sizeLimit: Self.driftSizeLimit), hash, record: Self.wholeFile)
      {
        found.append((Self.wholeFile, kind))
      }
    }
    return found
  }

  /// Whether `ROOT/top` of a swapped tree is still the agent's symlink `..data/top`.
  private func topLevelLinkIsIntact(_ top: String) -> Bool {
    var buffer = [CChar](repeating: 0, count: 4_097)
    let count = readlink(self.mapping.dest + "/" + top, &buffer, buffer.count - 1)
    guard count > 0 else { return false }
    let target = buffer[..<count].map { UInt8(bitPattern: $0) }
    return target.elementsEqual(TreeSwap.linkTarget(top).utf8)
  }

  /// Checks the files `request` names (all recorded ones when it says so) against
  /// `recorded`. Runs away from the agent's executor: it reads and hashes files.
  func driftCheck(_ request: DriftCheck, recorded: [ExactString: ContentHash], writes: Int,
                  ignoringAttributes: Set<ExactString> = []) -> DriftFound {
    let swapped = self.mapping.kind == .tree && self.mapping.swap == .symlink
    let before = swapped ? (try? TreeSwap(root: self.mapping.dest).currentDirectory()) ?? nil : nil
    let candidates = request.everything ? nil : self.driftCandidates(request.changed, recorded: recorded)
    let drifted = self.drifted(candidates, recorded: recorded, ignoringAttributes: ignoringAttributes)
    var found = DriftFound(drifted: drifted, writes: writes, recorded: recorded)
    found.checked = candidates.map { paths in paths.filter { path in recorded[path] != nil }.count } ?? recorded.count
    if swapped, candidates == nil, drifted.isEmpty, let before,
      before == ((try? TreeSwap(root: self.mapping.dest).currentDirectory()) ?? nil)
    {
      found.verified = before
    }
    return found
  }

  /// Puts `drifted` back to the bytes the agent wrote, through the atomic writers (temp file,
  /// mode and owner before the rename, fsync, rename): the one file, the drifted files of an
  /// in-place tree, or a new revision of a swapped tree (its links restored as well).
  ///
  /// Writes only when the snapshot renders exactly `recorded` (the hashes of what the agent
  /// wrote and the service last loaded, or will load with a reload still owed); otherwise
  /// ``DriftRepairOutcome/stale`` and nothing is touched. No check command runs (these bytes
  /// passed it when they were first written) and no reload.
  func repair(_ keySpace: KeySpace, recorded: [ExactString: ContentHash], drifted: [ExactString]) async -> DriftRepairOutcome {
    let folding: NameFolding
    do { folding = try self.destinationFolding() } catch { return .failed(MappingError(writing: error)) }
    let plan: MappingPlan
    do { plan = try self.planner.plan(keySpace, folding: folding) } catch { return .failed(MappingError(planning: error)) }
    let output = self.holding(plan, previous: recorded).output
    guard Self.hashes(output) == recorded else { return .stale }
    self.driftMarks.writing()
    do {
      switch output {
      case .file(let file):
        let (writer, name) = self.fileWriter()
        let outcome = try await writer.write(file, to: name)
        return .restored(outcome == .unchanged ? [] : [self.mapping.dest])
      case .tree(let files):
        let writer = self.treeWriter()
        let strategy = writer.strategy
        // A swap publishes the whole tree (one new revision directory); in place, only the
        // drifted files are written.
        let paths = Set(drifted)
        let wanted = strategy == .atomicSwap ? files : files.filter { paths.contains($0.key) }
        let before = strategy == .atomicSwap ? try? writer.swap.currentDirectory() : nil
        let report = try await writer.apply(wanted, deleted: [ExactString](), revision: keySpace.revision)
        if strategy == .atomicSwap, report.failures.isEmpty { self.driftMarks.published(report.publishedDirectory ?? before) }
        if let (path, failure) = report.failures.min(by: { $0.key < $1.key }) {
          return .failed(MappingError(.writeFailed, "\(report.failures.count) file(s) not restored, first \(path): \(failure)",
                                      subject: .file(ExactString(failure.path))))
        }
        var restored = report.written
        if strategy == .atomicSwap {
          // A publish that found the revision directory intact still put the top-level
          // links back: what no longer differs was restored.
          let still = Set(self.drifted(Set(drifted), recorded: recorded).map(\.path))
          restored = drifted.filter { !still.contains($0) }.map(\.string)
        }
        return .restored(restored.map { self.mapping.dest + "/" + $0 })
      }
    } catch {
      return .failed(MappingError(writing: error))
    }
  }
}
