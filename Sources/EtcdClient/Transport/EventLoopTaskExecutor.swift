import NIOCore
import NIOPosix

/// Runs Swift concurrency jobs on one NIO event loop: the loop that serves the client's
/// connections (``EtcdClient/eventLoopExecutor``).
///
/// A unary call and the watch stream prefer this executor (`withTaskExecutorPreference`), so
/// the task that writes a request and awaits its response runs on the thread that reads the
/// socket. Without it every call moves between Swift's global pool and the event loop several
/// times, and each move from another thread wakes the loop through its eventfd (about 0.3 ms
/// of a 0.9 ms put on the project's 2-core machine: docs/benchmarks.md). A job enqueued from the
/// loop's own thread is queued without a wake-up.
final class EventLoopTaskExecutor: TaskExecutor {
  let loop: any EventLoop

  init(_ loop: any EventLoop) {
    self.loop = loop
  }

  func enqueue(_ job: consuming ExecutorJob) {
    let job = UnownedJob(job)
    self.loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
  }

  /// The process-wide group every client's connections run on: one thread. The group is
  /// created at first use and never shut down, like NIO's own singleton groups. One thread is
  /// enough for a client's few connections, and it makes the loop of every connection the
  /// loop this executor runs jobs on.
  static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
  static let shared = EventLoopTaskExecutor(group.next())
}
