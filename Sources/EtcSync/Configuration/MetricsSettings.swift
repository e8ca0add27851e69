/// The HTTP endpoint that serves Prometheus metrics, `/healthz` and `/readyz`.
public struct MetricsSettings: Sendable, Equatable {
  /// `host:port`, `[v6]:port`, or `:port` for every interface (`127.0.0.1:9464` in the
  /// examples). Port 0 picks a free port.
  public var listen: String

  /// Metrics served on `listen`.
  public init(listen: String = "127.0.0.1:9464") {
    self.listen = listen
  }

  /// The host part of ``listen`` (empty for every interface; brackets removed for IPv6).
  public var host: String {
    (try? ValueSyntax.listenAddress(self.listen).get().host) ?? ""
  }

  /// The port part of ``listen``.
  public var port: Int {
    (try? ValueSyntax.listenAddress(self.listen).get().port) ?? 0
  }
}
