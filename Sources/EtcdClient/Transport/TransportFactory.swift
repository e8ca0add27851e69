import GRPCCore
import GRPCNIOTransportHTTP2Posix
import NIOCore
import NIOHTTP2
import NIOPosix

/// Builds the gRPC transport for an ``EtcdConfiguration``.
enum TransportFactory {
  static func make(_ configuration: EtcdConfiguration) throws(EtcdError) -> HTTP2ClientTransport.Posix {
    var config = HTTP2ClientTransport.Posix.Config.defaults
    // gRPC's own keepalive is off: HTTP2LivenessHandler runs it (see there for why).
    config.connection.keepalive = nil
    config.connection.maxIdleTime = nil
    // Coalescing flushes holds each request up to 100 µs: a latency cost for no gain with
    // etcd's request/response pattern.
    config.connection.flushCoalescing = nil
    config.backoff = .init(initial: .milliseconds(100), max: .seconds(5), multiplier: 1.6, jitter: 0.2)
    let keepalive = HTTP2LivenessHandler.Keepalive(
      interval: timeAmount(max(configuration.keepaliveTime, .seconds(5))),
      timeout: timeAmount(max(configuration.keepaliveTimeout, .milliseconds(100)))
    )
    let security: HTTP2ClientTransport.Posix.TransportSecurity
    // Set when each member's certificate is checked against that member's own host.
    var members: MemberHosts?
    if configuration.usesTLS {
      let tls = configuration.tls ?? EtcdConfiguration.TLS()
      switch configuration.certificateNames {
      case .shared(let name):
        // One name for every member (configured, or the one host: a single member or a load
        // balancer): NIOSSL checks it, and sends it as SNI when it is a name.
        config.http2.authority = name
        security = .tls(Self.tlsConfig(tls))
      case .perMember:
        // Several hosts: gRPC's channel has one server name for all of them, so NIOSSL checks
        // the chain only and MemberIdentityHandler checks each member against its own host.
        members = MemberHosts()
        security = .tls(Self.tlsConfig(tls, verifyHostname: false))
      }
    } else {
      security = .plaintext
    }
    let installsLiveness = configuration.installsLivenessHandler
    if installsLiveness || members != nil { config.channelDebuggingCallbacks.onCreateTCPConnection = { [members] channel in
      channel.eventLoop.makeCompletedFuture {
        let sync = channel.pipeline.syncOperations
        let http2 = try sync.handler(type: NIOHTTP2Handler.self)
        if let members {
          try sync.addHandler(MemberIdentityHandler(members: members), position: .before(http2))
        }
        if installsLiveness {
          try sync.addHandler(HTTP2LivenessHandler(keepalive: keepalive), position: .before(http2))
        }
      }
    } }

    // The transport checks responses against maxRequestMessageBytes too (2.9.2), so the
    // service config sets both limits for every method.
    let limits = MethodConfig(
      names: [MethodConfig.Name(service: "")],
      maxRequestMessageBytes: max(configuration.maxSendMessageBytes, configuration.maxReceiveMessageBytes),
      maxResponseMessageBytes: configuration.maxReceiveMessageBytes
    )
    let serviceConfig = ServiceConfig(methodConfig: [limits], loadBalancingConfig: [.roundRobin])

    var registry = NameResolverRegistry()
    registry.registerFactory(EtcdEndpointsResolverFactory())
    do {
      return try HTTP2ClientTransport.Posix(
        target: EtcdEndpointsTarget(endpoints: configuration.endpoints, members: members),
        transportSecurity: security,
        config: config,
        resolverRegistry: registry,
        serviceConfig: serviceConfig,
        // One thread serves every connection, so a call that prefers EventLoopTaskExecutor runs
        // on the thread that reads its responses.
        eventLoopGroup: configuration.runsOnConnectionLoop
          ? EventLoopTaskExecutor.group : MultiThreadedEventLoopGroup.singletonMultiThreadedEventLoopGroup
      )
    } catch {
      throw EtcdError(.tlsFailed, "cannot set up the connection: \(error)", cause: error)
    }
  }

  private static func tlsConfig(_ tls: EtcdConfiguration.TLS, verifyHostname: Bool = true)
    -> HTTP2ClientTransport.Posix.TransportSecurity.TLS
  {
    .defaults { config in
      if !verifyHostname { config.serverCertificateVerification = .noHostnameVerification }
      if let ca = tls.caFile {
        config.trustRoots = .certificates([.file(path: ca, format: .pem)])
      }
      if let cert = tls.certFile, let key = tls.keyFile {
        config.certificateChain = [.file(path: cert, format: .pem)]
        config.privateKey = .file(path: key, format: .pem)
      }
      if tls.insecureSkipVerify { config.serverCertificateVerification = .noVerification }
    }
  }
}

func isIPLiteral(_ host: String) -> Bool {
  host.contains(":") || host.allSatisfy { $0.isNumber || $0 == "." }
}

func timeAmount(_ duration: Duration) -> TimeAmount {
  let (seconds, attoseconds) = duration.components
  return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
}
