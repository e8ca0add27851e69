import EtcdTestSupport
import Foundation
import Glibc
import Testing

@testable import EtcdClient

/// Without `serverName`, each member's certificate is checked against that member's own
/// host, so members with certificates of their own fail over to each other.
@Suite("TLS: each member checked against its own host")
struct MemberTLSTests {
  /// A port on 127.0.0.1 where nothing listens (bound, then closed).
  static func deadPort() throws -> Int { try freePorts(1)[0] }

  /// This machine's host name when it resolves to 127.0.0.1 and is not `localhost`: a second
  /// local name, so that two members have two names.
  static let otherLocalName: String? = {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count) == 0 else { return nil }
    let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard name != "localhost", !name.isEmpty, resolvesToLoopback(name) else { return nil }
    return name
  }()

  static func resolvesToLoopback(_ name: String) -> Bool {
    var hints = addrinfo()
    hints.ai_family = AF_INET
    var result: UnsafeMutablePointer<addrinfo>?
    guard getaddrinfo(name, nil, &hints, &result) == 0, let first = result else { return false }
    defer { freeaddrinfo(first) }
    let address = first.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
    return address == inet_addr("127.0.0.1")
  }

  @Test("failover from a dead member to one whose certificate names only its own host",
        .enabled(if: otherLocalName != nil))
  func failover() async throws {
    // The live member's certificate names localhost only. Checked against the first
    // endpoint's host name (as before: the dead member's), it was refused, and the client
    // never failed over.
    let other = try #require(Self.otherLocalName)
    try await EtcdServer.with(tls: true, serverNames: "DNS:localhost") { server in
      let port = server.endpoint.split(separator: ":").last.map(String.init)!
      var configuration = server.configuration()
      configuration.tls?.serverName = nil
      configuration.endpoints = try EtcdConfiguration(endpoints: ["https://\(other):\(try Self.deadPort())", "https://localhost:\(port)"]).endpoints
      // Wide: the dead member's attempt, then a TLS handshake with the live one, on a loaded
      // CI machine (about 2x slower than a developer's).
      configuration.requestTimeout = .seconds(30)
      try await withEtcdClient(configuration) { etcd in
        try await etcd.put("/member-tls", "ok")
        #expect(try await etcd.get("/member-tls").kvs.first?.valueString == "ok")
      }
      // Both endpoints' hosts resolve to the live member, which carries only one of them.
      configuration.endpoints = try EtcdConfiguration(endpoints: ["https://127.0.0.1:\(port)", "https://localhost:\(port)"]).endpoints
      let value = try await withEtcdClient(configuration) { etcd in try await etcd.get("/member-tls").kvs.first?.valueString }
      #expect(value == "ok")
    }
  }

  @Test("a member reached by a name its certificate does not carry is refused")
  func mismatchRefused() async throws {
    try await EtcdServer.with(tls: true, serverNames: "IP:127.0.0.1") { server in
      let port = server.endpoint.split(separator: ":").last.map(String.init)!
      var configuration = server.configuration()
      configuration.endpoints = try EtcdConfiguration(endpoints: ["https://localhost:\(port)", "https://127.0.0.1:\(try Self.deadPort())"]).endpoints
      configuration.requestTimeout = .seconds(3)
      let error = await #expect(throws: EtcdError.self) {
        try await withEtcdClient(configuration) { try await $0.get("/member-tls") }
      }
      #expect(error?.code == .unavailable || error?.code == .deadlineExceeded)
    }
  }

  @Test("DNS names match case-insensitively, * stands for one whole leftmost label")
  func dnsRules() {
    #expect(dnsNameMatches(pattern: "etcd-1.example.com", host: "ETCD-1.example.com."))
    #expect(dnsNameMatches(pattern: "*.example.com", host: "etcd-1.example.com"))
    #expect(!dnsNameMatches(pattern: "*.example.com", host: "a.etcd-1.example.com"))
    #expect(!dnsNameMatches(pattern: "*.com", host: "example.com"))
    #expect(!dnsNameMatches(pattern: "etcd-1.example.com", host: "etcd-2.example.com"))
    #expect(!dnsNameMatches(pattern: "e*.example.com", host: "etcd.example.com"))
    // ASCII folding only: the Kelvin sign lowercases to "k" in Unicode, and must not match.
    #expect(!dnsNameMatches(pattern: "\u{212A}ube.example.com", host: "kube.example.com"))
    #expect(!dnsNameMatches(pattern: "kube.example.com", host: "\u{212A}ube.example.com"))
    #expect(ipAddressBytes("127.0.0.1") == [127, 0, 0, 1])
    #expect(ipAddressBytes("[::1]")?.count == 16)
    #expect(ipAddressBytes("localhost") == nil)
  }
}
