import NIOCore
import NIOSSL
import NIOTLS
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which configured member hosts each resolved address belongs to, so that a TLS connection
/// can be checked against the host of the member it reached (`https://etcd-2.example:2379`
/// against `etcd-2.example`, `https://10.0.0.3:2379` against the IP address 10.0.0.3).
/// The resolver records every address it hands to gRPC here.
final class MemberHosts: Sendable {
  private let hosts = Mutex<[String: Set<String>]>([:])

  /// Records that `host` resolved to `address` (an IP literal) at `port`.
  func record(host: String, address: String, port: Int) {
    self.hosts.withLock { $0[Self.key(address, port), default: []].insert(host) }
  }

  /// The configured hosts that resolved to `address` at `port`.
  func hosts(address: String, port: Int) -> Set<String> {
    self.hosts.withLock { $0[Self.key(address, port)] ?? [] }
  }

  private static func key(_ address: String, _ port: Int) -> String { "\(address)|\(port)" }
}

/// Checks a TLS server certificate against the host of the member the connection reached,
/// for configurations that name members by their own hosts (no `serverName`): gRPC's one
/// channel carries one server name for every member, which per-member certificates do not
/// share. It sits between NIOSSL (which verified the chain, not the name) and HTTP/2, and
/// holds every outbound byte, the HTTP/2 preface included, until the name matched: nothing
/// reaches a server whose certificate is not its own. A mismatch closes the connection, and
/// gRPC moves on to the next member.
final class MemberIdentityHandler: ChannelDuplexHandler, RemovableChannelHandler {
  typealias InboundIn = ByteBuffer
  typealias InboundOut = ByteBuffer
  typealias OutboundIn = IOData
  typealias OutboundOut = IOData

  private let members: MemberHosts?
  /// The member's host, when the connection was made to one known member (DirectTransport).
  private let host: String?
  private var verified = false
  private var pending: [(NIOAny, EventLoopPromise<Void>?)] = []
  private var flushPending = false

  init(members: MemberHosts) {
    self.members = members
    self.host = nil
  }

  /// Checks the certificate against `host`, the member this connection was made to.
  init(host: String) {
    self.members = nil
    self.host = host
  }

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    if self.verified {
      context.write(data, promise: promise)
    } else {
      self.pending.append((data, promise))
    }
  }

  func flush(context: ChannelHandlerContext) {
    if self.verified { context.flush() } else { self.flushPending = true }
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    guard let tlsEvent = event as? TLSUserEvent, case .handshakeCompleted = tlsEvent, !self.verified else {
      context.fireUserInboundEventTriggered(event)
      return
    }
    if let error = self.mismatch(context) {
      let pending = self.pending
      self.pending = []
      for (_, promise) in pending { promise?.fail(error) }
      context.fireErrorCaught(error)
      context.close(promise: nil)
      return
    }
    self.verified = true
    let pending = self.pending
    self.pending = []
    for (data, promise) in pending { context.write(data, promise: promise) }
    if self.flushPending { context.flush() }
    context.fireUserInboundEventTriggered(event)
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    let pending = self.pending
    self.pending = []
    for (_, promise) in pending { promise?.fail(ChannelError.ioOnClosedChannel) }
  }

  /// Why the peer's certificate does not name the member this connection reached; nil when it does.
  private func mismatch(_ context: ChannelHandlerContext) -> EtcdError? {
    guard let remote = context.channel.remoteAddress, let address = remote.ipAddress, let port = remote.port else {
      return EtcdError(.tlsFailed, "cannot tell which etcd member a TLS connection reached")
    }
    let hosts = self.host.map { [$0] } ?? self.members?.hosts(address: address, port: port) ?? []
    let certificate = try? context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self).peerCertificate
    guard let certificate else {
      return EtcdError(.tlsFailed, "the etcd member at \(address):\(port) presented no certificate")
    }
    if hosts.contains(where: { certificateNames(certificate, host: $0) }) { return nil }
    let names = hosts.sorted().joined(separator: ", ")
    return EtcdError(
      .tlsFailed,
      "the certificate of the etcd member at \(address):\(port) is not valid for \(names.isEmpty ? "it" : names); "
        + "set etcd.tls.serverName when every member's certificate carries one shared name")
  }
}

/// Whether `certificate`'s subject alternative names cover `host`: an IP literal against its
/// IP address entries (byte for byte), a name against its DNS entries (ASCII
/// case-insensitively, with a `*` standing for exactly one whole leftmost label).
func certificateNames(_ certificate: NIOSSLCertificate, host: String) -> Bool {
  let ip = ipAddressBytes(host)
  for name in certificate._subjectAlternativeNames() {
    let contents = Array(name.contents)
    if let ip {
      if name.nameType == .ipAddress && contents == ip { return true }
    } else if name.nameType == .dnsName, let pattern = String(validating: contents, as: UTF8.self) {
      if dnsNameMatches(pattern: pattern, host: host) { return true }
    }
  }
  return false
}

/// RFC 6125's rules, as Go's crypto/x509 applies them: exact match, or `*.rest` matching one
/// label followed by `.rest` (never a bare `*`, never `*` inside a label). A trailing dot
/// on either side is ignored.
func dnsNameMatches(pattern: String, host: String) -> Bool {
  // Bytes, with ASCII letters folded and nothing else: Unicode's `lowercased()` and `String`
  // comparison would let a name with the Kelvin sign (U+212A) or a combining mark match an
  // ASCII one. A name that is not ASCII matches nothing (certificates carry A-labels).
  func normalized(_ text: String) -> [[UInt8]]? {
    var bytes = Array(text.utf8)
    guard bytes.allSatisfy({ $0 < 0x80 }) else { return nil }
    bytes = bytes.map { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) ? $0 + 32 : $0 }
    if bytes.last == UInt8(ascii: ".") { bytes.removeLast() }
    return bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).map(Array.init)
  }
  guard let patternLabels = normalized(pattern), let hostLabels = normalized(host),
    patternLabels.count == hostLabels.count, !hostLabels.contains(where: \.isEmpty)
  else { return false }
  for (index, (want, have)) in zip(patternLabels, hostLabels).enumerated() {
    if index == 0 && want == [UInt8(ascii: "*")] && patternLabels.count > 2 { continue }
    if want != have { return false }
  }
  return true
}

/// The address bytes of an IP literal (4 or 16), or nil for a host name.
func ipAddressBytes(_ host: String) -> [UInt8]? {
  var text = host
  if text.hasPrefix("[") && text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
  var buffer = [UInt8](repeating: 0, count: 16)
  if inet_pton(AF_INET, text, &buffer) == 1 { return Array(buffer[..<4]) }
  if inet_pton(AF_INET6, text, &buffer) == 1 { return buffer }
  return nil
}
