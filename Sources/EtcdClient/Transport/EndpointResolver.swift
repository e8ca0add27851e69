import GRPCCore
import GRPCNIOTransportHTTP2Posix  // re-exports GRPCNIOTransportCore (a target, not a product) and its SocketAddress

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A `ResolvableTarget` listing etcd members: one gRPC endpoint per member, so the
/// round-robin balancer can fail over between them. Host names are resolved with
/// getaddrinfo each time the channel asks (after a connection failure), so DNS changes are
/// picked up; the addresses of one host are tried in order.
struct EtcdEndpointsTarget: ResolvableTarget, Sendable {
  var endpoints: [EtcdEndpoint]
  /// Where each resolved address's member hosts are recorded (for ``MemberIdentityHandler``).
  var members: MemberHosts? = nil
}

/// Resolves ``EtcdEndpointsTarget``.
struct EtcdEndpointsResolverFactory: NameResolverFactory {
  typealias Target = EtcdEndpointsTarget

  func resolver(for target: EtcdEndpointsTarget) -> NameResolver {
    NameResolver(names: RPCAsyncSequence(wrapping: Names(endpoints: target.endpoints, members: target.members)), updateMode: .pull)
  }

  /// Each `next()` resolves the endpoints anew.
  struct Names: AsyncSequence, Sendable {
    typealias Element = NameResolutionResult
    let endpoints: [EtcdEndpoint]
    let members: MemberHosts?

    func makeAsyncIterator() -> Iterator { Iterator(endpoints: self.endpoints, members: self.members) }

    struct Iterator: AsyncIteratorProtocol {
      let endpoints: [EtcdEndpoint]
      let members: MemberHosts?
      mutating func next() async throws -> NameResolutionResult? {
        let resolved = self.endpoints.compactMap { endpoint -> Endpoint? in
          let addresses = resolveHost(endpoint.host, port: endpoint.port)
          for address in addresses {
            guard let ip = address.ipv4?.host ?? address.ipv6?.host else { continue }
            self.members?.record(host: endpoint.host, address: ip, port: endpoint.port)
          }
          return addresses.isEmpty ? nil : Endpoint(addresses: addresses)
        }
        guard !resolved.isEmpty else {
          throw RPCError(code: .unavailable, message: "no etcd endpoint could be resolved: \(self.endpoints.map(\.description).joined(separator: ", "))")
        }
        return NameResolutionResult(endpoints: resolved, serviceConfig: nil)
      }
    }
  }
}

/// Resolves a host to socket addresses: literals directly, names through getaddrinfo.
func resolveHost(_ host: String, port: Int) -> [GRPCNIOTransportCore.SocketAddress] {
  var hints = addrinfo()
  hints.ai_family = AF_UNSPEC
  #if canImport(Glibc)
  hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
  #else
  hints.ai_socktype = SOCK_STREAM
  #endif
  var result: UnsafeMutablePointer<addrinfo>?
  guard getaddrinfo(host, String(port), &hints, &result) == 0, let first = result else { return [] }
  defer { freeaddrinfo(first) }
  var addresses: [GRPCNIOTransportCore.SocketAddress] = []
  var cursor: UnsafeMutablePointer<addrinfo>? = first
  while let info = cursor {
    if let address = socketAddress(info.pointee, port: port), !addresses.contains(address) {
      addresses.append(address)
    }
    cursor = info.pointee.ai_next
  }
  return addresses
}

private func socketAddress(_ info: addrinfo, port: Int) -> GRPCNIOTransportCore.SocketAddress? {
  var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
  switch info.ai_family {
  case AF_INET:
    var addr = info.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
    guard inet_ntop(AF_INET, &addr, &buffer, socklen_t(buffer.count)) != nil else { return nil }
    return .ipv4(host: String(cString: buffer), port: port)
  case AF_INET6:
    var addr = info.ai_addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
    guard inet_ntop(AF_INET6, &addr, &buffer, socklen_t(buffer.count)) != nil else { return nil }
    return .ipv6(host: String(cString: buffer), port: port)
  default:
    return nil
  }
}
