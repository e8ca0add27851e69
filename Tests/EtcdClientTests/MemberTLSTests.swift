import EtcdTestSupport
import Foundation
import Testing

@testable import EtcdClient

/// Without `serverName`, each member's certificate is checked against that member's own
/// host, so members with certificates of their own fail over to each other.
@Suite("TLS: each member checked against its own host")
struct MemberTLSTests {
  /// A port on 127.0.0.1 where nothing listens (bound, then closed).
  static func deadPort() throws -> Int { try freePorts(1)[0] }

  @Test("failover from a dead https://localhost member to https://127.0.0.1 whose certificate names only 127.0.0.1")
  func failover() async throws {
    // The certificate names 127.0.0.1 and not localhost: checked against "localhost" (the
    // first host name, as before), the live member was refused and there was no failover.
    try await EtcdServer.with(tls: true, serverNames: "IP:127.0.0.1") { server in
      var configuration = server.configuration()
      configuration.endpoints = try EtcdConfiguration(endpoints: ["https://localhost:\(try Self.deadPort())", server.endpoint]).endpoints
      configuration.requestTimeout = .seconds(10)
      try await withEtcdClient(configuration) { etcd in
        try await etcd.put("/member-tls", "ok")
        #expect(try await etcd.get("/member-tls").kvs.first?.valueString == "ok")
      }
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
    #expect(ipAddressBytes("127.0.0.1") == [127, 0, 0, 1])
    #expect(ipAddressBytes("[::1]")?.count == 16)
    #expect(ipAddressBytes("localhost") == nil)
  }
}
