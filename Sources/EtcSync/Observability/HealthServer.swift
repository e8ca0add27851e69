import Foundation
import Hummingbird
import Logging
import NIOCore
import Prometheus

/// The HTTP endpoint of `metrics.listen`, served by Hummingbird:
/// - `GET /metrics`: the Prometheus text format of `registry`;
/// - `GET /healthz`: 200 while the process runs;
/// - `GET /readyz`: 200 once the first sync is done and while etcd is reachable, else 503 with
///   the reason.
public struct HealthServer: Sendable {
  public let settings: MetricsSettings
  public let registry: PrometheusCollectorRegistry
  public let readiness: Readiness
  let logger: Logger

  /// A server for `settings`, exporting `registry` and answering from `readiness`.
  public init(settings: MetricsSettings, registry: PrometheusCollectorRegistry, readiness: Readiness, logger: Logger) {
    self.settings = settings
    self.registry = registry
    self.readiness = readiness
    self.logger = logger
  }

  /// Serves until the task is cancelled. `onListening` gets the bound port (useful with port 0).
  public func run(onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
    let router = Router()
    let registry = self.registry
    let readiness = self.readiness
    router.get("/metrics") { _, _ -> Response in
      Response(
        status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
        body: ResponseBody(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
    }
    router.get("/healthz") { _, _ -> Response in
      Response(status: .ok, headers: [.contentType: "text/plain"], body: ResponseBody(byteBuffer: ByteBuffer(string: "ok\n")))
    }
    router.get("/readyz") { _, _ -> Response in
      let ready = readiness.isReady
      let text = ready ? "ready\n" : "not ready: \(readiness.reason)\n"
      return Response(status: ready ? .ok : .serviceUnavailable, headers: [.contentType: "text/plain"],
                      body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }
    // Hummingbird's own lines (one at error level for every clean stop) are not ours to show;
    // a server that fails to run is reported by the caller.
    var httpLogger = self.logger
    httpLogger.logLevel = .critical
    let host = self.settings.host.isEmpty ? "0.0.0.0" : self.settings.host
    let logger = self.logger
    let listen = self.settings.listen
    let application = Application(
      router: router,
      configuration: .init(address: .hostname(host, port: self.settings.port), serverName: "etcsync"),
      onServerRunning: { channel in
        let port = channel.localAddress?.port ?? 0
        logger.info("metrics and health endpoints listening", metadata: ["listen": "\(listen)", "port": "\(port)"])
        await onListening(port)
      },
      logger: httpLogger)
    try await application.run()
  }
}
