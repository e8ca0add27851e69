// Telling exec mode that files changed (see `ExecSupervisor`).
extension Agent {
  /// Registers `observer`, called once files changed in an applied batch and no mapping's
  /// reload runs any more: the reloads of the batch (and any owed by changes written while
  /// they ran) have ended. A batch that changed no file calls nothing.
  public func observeChanges(_ observer: @escaping @Sendable () -> Void) {
    self.changeObservers.append(observer)
  }

  /// Calls the change observers if files changed since the last call and no reload runs.
  func announceChanges() {
    guard self.changesUnannounced, self.reloading.isEmpty else { return }
    self.changesUnannounced = false
    for observer in self.changeObservers { observer() }
  }
}
