/// Resolves names for `lookupIP` and `lookupSRV`; `.system` asks the C library.
public struct DNSResolver: Sendable {
  /// Returns the addresses of a host name as text; empty when it does not resolve.
  public var lookupIP: @Sendable (_ host: String) -> [String]
  /// Returns the SRV records of `_service._proto.name` (or `name` when both are empty).
  public var lookupSRV: @Sendable (_ service: String, _ proto: String, _ name: String) -> [SRVRecord]

  /// Creates a resolver from two functions (tests use this to avoid the network).
  public init(
    lookupIP: @escaping @Sendable (_ host: String) -> [String],
    lookupSRV: @escaping @Sendable (_ service: String, _ proto: String, _ name: String) -> [SRVRecord]
  ) {
    self.lookupIP = lookupIP
    self.lookupSRV = lookupSRV
  }

  /// getaddrinfo(3) for addresses and res_query(3) for SRV records.
  public static let system = DNSResolver(lookupIP: SystemDNS.lookupIP, lookupSRV: SystemDNS.lookupSRV)
}

/// One DNS SRV record, with the field names Go's `net.SRV` has (`.Target`, `.Port`, ...).
public struct SRVRecord: Sendable, Hashable {
  /// The target host, with its trailing dot as Go returns it.
  public var target: String
  /// The port.
  public var port: Int
  /// The priority.
  public var priority: Int
  /// The weight.
  public var weight: Int

  /// Creates a record.
  public init(target: String, port: Int, priority: Int, weight: Int) {
    self.target = target
    self.port = port
    self.priority = priority
    self.weight = weight
  }
}
