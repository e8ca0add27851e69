import EtcdClient
import Foundation
import Logging
import Synchronization
import Templates

// What the agent tells: its log lines, its observers (presence, systemd, metrics).
extension Agent {
  /// Reports progress to `reporter` from now on (nil: quiet).
  public func reportProgress(to reporter: (@Sendable (String) -> Void)?) {
    self.progressReporter = reporter
  }

  func log(_ result: MappingResult, duration: Duration, repeated: Bool = false) {
    // The common case at the default level: nothing to say, and nothing to format.
    if result.failure == nil, result.rejected.isEmpty, self.logger.logLevel > (result.changed ? .info : .debug) { return }
    var metadata: Logger.Metadata = [
      "mapping.name": "\(result.mapping)", "etcd.revision": "\(result.revision)",
      "files.written": "\(result.written.count)", "files.deleted": "\(result.deleted.count)",
      "duration": "\(duration)",
    ]
    for rejected in result.rejected {
      self.logger.warning("key rejected", metadata: ["mapping.name": "\(result.mapping)", "etcd.key": "\(rejected.escapedKey)", "reason": "\(rejected)"])
    }
    if let error = result.failure {
      // The full text (a template's error can quote values) is logged at debug level only.
      let failure = error.code
      self.logger.debug("mapping failure details", metadata: ["mapping.name": "\(result.mapping)", "error.code": "\(failure)", "error": "\(error)"])
      metadata["error.code"] = "\(failure)"
      metadata["error"] = failure.quotesValues ? "\(failure) (the details are logged at debug level)" : "\(error)"
      // A reload that failed after the files were written must not read as "unchanged".
      // A retry that failed as the previous attempt did was reported then.
      self.logger.log(level: repeated ? .debug : .error,
                      result.changed ? "mapping failed after changing files" : "mapping failed; its files are unchanged",
                      metadata: metadata)
    } else if result.changed {
      metadata["reloaded"] = "\(result.reloaded)"
      self.logger.info("applied", metadata: metadata)
    } else {
      self.logger.debug("unchanged", metadata: metadata)
    }
  }

  /// Registers `observer`, called with the agent's progress after every applied batch.
  public func observe(_ observer: @escaping @Sendable (AgentProgress) -> Void) {
    self.observers.append(observer)
    observer(self.progress)
  }

  /// The revision every file holds and the mappings now failing.
  public var progress: AgentProgress {
    var progress = AgentProgress(appliedRevision: self.publishedRevision, errors: self.errors, ready: self.readiness.isReady)
    progress.currentRevision = self.current.published
    progress.requestedRevision = self.current.requested
    progress.overdueReloads = self.overdueReloads
    return progress
  }

  func notify(_ result: MappingResult) {
    self.errors[result.mapping] = result.failureCode?.rawValue
    self.failedRepairs[result.mapping] = nil
  }

  /// Tells observers when the applied revision or the errors changed. The revision is the
  /// snapshot's only once no mapping waits to be applied: until then some file still holds
  /// an older one.
  func publishProgress() {
    // Also called while `apply` awaits (the etcd probe's readiness change): a mapping taken
    // out of `dirty` but still being written holds an older revision until it is done.
    // A reload still running (or owed) means its files' revision has not reached the
    // service yet either.
    // A failing mapping (a render error, a missing key, a held write-back, a reload that
    // failed) holds an older revision too, until it applies: a deploy that waits on `status`
    // must not pass while its files are old.
    if !self.schedule.hasPending && self.applying.isEmpty && self.reloading.isEmpty && self.errors.isEmpty {
      // Not the snapshot's revision: keys inside the watched range but outside every mapping
      // (a presence key under it, say) move that, and publishing it would make a presence put
      // advance every agent's revision, whose presence put advances it again, for ever.
      self.publishedRevision = max(self.publishedRevision, self.relevantRevision)
      // Every revision up to the snapshot's is in the files: the agent is current through it
      // (its watch, or a check at a status request, delivered everything up to it).
      self.current.published = max(self.current.published, self.keySpace.revision)
      self.metrics.appliedRevision.record(self.publishedRevision)
    }
    let progress = self.progress
    guard progress != self.lastPublished else { return }
    self.lastPublished = progress
    for observer in self.observers { observer(progress) }
  }
}
