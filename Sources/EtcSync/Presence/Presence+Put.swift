import EtcdClient
import Foundation
import Logging
import Synchronization

// How the presence key is put: at once or delayed (one delayed put carries every change until
// then), one put at a time, retried a second later, under the current lease only.
extension Presence {
  /// Puts at `instant`, unless a put is already scheduled no later.
  func schedulePut(at instant: ContinuousClock.Instant) {
    if self.delayedPut != nil, let scheduled = self.delayedAt, scheduled <= instant { return }
    self.cancelDelayedPut()
    let token = self.delayedToken
    self.delayedAt = instant
    self.delayedPut = Task {
      do { try await Task.sleep(until: instant) } catch { return }
      await self.flushDelayed(token)
    }
  }

  func cancelDelayedPut() {
    self.delayedPut?.cancel()
    self.delayedPut = nil
    self.delayedAt = nil
    self.delayedToken &+= 1
  }

  func flushDelayed(_ token: Int) async {
    guard token == self.delayedToken else { return }
    self.delayedPut = nil
    self.delayedAt = nil
    await self.putOrRetry()
  }

  /// Puts the record; a failed put (a leader election, say) is tried again a second later,
  /// so the key never stays behind the agent's progress.
  func putOrRetry() async {
    do {
      try await self.put()
    } catch {
      guard self.delayedPut == nil, !Task.isCancelled, !self.superseded else { return }
      self.schedulePut(at: .now + Self.minimumInterval)
    }
  }

  /// Puts the latest record under the current lease. One put at a time: two in flight could
  /// land in either order and leave the key with the older record.
  func put() async throws {
    if self.putting {
      self.putAgain = true
      return
    }
    self.putting = true
    defer { self.putting = false }
    repeat {
      self.putAgain = false
      try await self.putOnce()
    } while self.putAgain
  }

  /// Puts the record if our lease still holds the key, or creates the key if it is absent
  /// (deleted by hand); a key that another agent's lease holds is left alone, and this
  /// presence stops.
  func putOnce() async throws {
    guard !self.superseded else { return }
    guard self.registered, self.leaseID != 0 else {
      self.pendingPut = true
      return
    }
    self.record.updatedAt = PresenceRecord.timestamp()
    self.pacer.put(at: .now, answering: self.answerPending)
    self.answerPending = false
    let key = Array(self.settings.key.utf8)
    let lease = self.leaseID
    let record = self.record
    let put = Op.put(key: key, value: record.json, PutOptions(lease: lease))
    let response: TxnResponse
    do {
      response = try await self.store.txn(
        if: [Compare(.key(key), .lease(lease), .equal)], then: [put],
        else: [.txn(compare: [Compare(.key(key), .createRevision(0), .equal)], success: [put], failure: [.get(.key(key))])])
    } catch {
      self.logger.warning("presence key not updated", metadata: ["presence.key": "\(self.settings.key)", "error": "\(error)"])
      throw error
    }
    if response.succeeded || response.responses.first.map({ if case .txn(let inner) = $0 { inner.succeeded } else { false } }) == true {
      self.keyCurrentRevision = max(self.keyCurrentRevision, record.currentRevision ?? 0)
    }
    guard !response.succeeded, case .txn(let inner)? = response.responses.first, !inner.succeeded else { return }
    guard case .get(let get)? = inner.responses.first, let holder = get.kvs.first else { return }
    // Our own earlier lease: a registration in progress moves the key.
    guard !self.ownLeases.contains(holder.lease) else { return }
    self.supersede("presence key taken over by another agent; this agent no longer updates it and keeps syncing its files",
                   holder: PresenceHolder(holder))
  }
}
