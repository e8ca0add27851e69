#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// DNS through the C library: getaddrinfo(3) for addresses, res_query(3) for SRV records.
///
/// res_query lives in libc since glibc 2.34 and in libresolv before; it is found with
/// dlsym at run time, so nothing extra has to be linked. Where it cannot be found,
/// `lookupSRV` returns no records, as confd does on a lookup error.
enum SystemDNS {
  /// The host's IPv4 and IPv6 addresses as text, without duplicates (empty on failure).
  @Sendable static func lookupIP(_ host: String) -> [String] {
    var hints = addrinfo()
    hints.ai_family = AF_UNSPEC
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var list: UnsafeMutablePointer<addrinfo>?
    guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { return [] }
    defer { freeaddrinfo(first) }
    var seen: Set<String> = []
    var result: [String] = []
    var entry: UnsafeMutablePointer<addrinfo>? = first
    while let current = entry {
      if let text = addressText(current.pointee), seen.insert(text).inserted { result.append(text) }
      entry = current.pointee.ai_next
    }
    return result
  }

  private static func addressText(_ info: addrinfo) -> String? {
    guard let address = info.ai_addr else { return nil }
    var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
    switch info.ai_family {
    case AF_INET:
      var sin = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
      guard inet_ntop(AF_INET, &sin, &buffer, socklen_t(buffer.count)) != nil else { return nil }
    case AF_INET6:
      var sin6 = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
      guard inet_ntop(AF_INET6, &sin6, &buffer, socklen_t(buffer.count)) != nil else { return nil }
    default:
      return nil
    }
    return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }

  private typealias ResQuery = @convention(c) (
    UnsafePointer<CChar>, Int32, Int32, UnsafeMutablePointer<UInt8>, Int32
  ) -> Int32

  private static let resQuery: ResQuery? = {
    let names = ["res_query", "__res_query"]
    var handles: [UnsafeMutableRawPointer?] = [dlopen(nil, RTLD_NOW)]
    handles.append(dlopen("libresolv.so.2", RTLD_NOW))
    for handle in handles.compactMap({ $0 }) {
      for name in names {
        if let symbol = dlsym(handle, name) { return unsafeBitCast(symbol, to: ResQuery.self) }
      }
    }
    return nil
  }()

  /// SRV records of `_service._proto.name` (or of `name` when service and proto are empty).
  @Sendable static func lookupSRV(_ service: String, _ proto: String, _ name: String) -> [SRVRecord] {
    guard let query = resQuery else { return [] }
    let target = service.isEmpty && proto.isEmpty ? name : "_\(service)._\(proto).\(name)"
    var answer = [UInt8](repeating: 0, count: 65535)
    let length = query(target, 1 /* C_IN */, 33 /* T_SRV */, &answer, Int32(answer.count))
    guard length > 12 else { return [] }
    // A truncated answer can report its full length, beyond the buffer.
    return SRVRecord.records(inDNSResponse: Array(answer[..<min(Int(length), answer.count)]))
  }
}

extension SRVRecord {
  /// The SRV records in the answer section of a raw DNS response (RFC 1035 wire format,
  /// compressed names allowed); malformed input yields the records read so far.
  public static func records(inDNSResponse response: [UInt8]) -> [SRVRecord] {
    DNSMessage(bytes: response).srvRecords()
  }
}

/// Just enough of RFC 1035 to read SRV answers, including compressed names.
struct DNSMessage {
  let bytes: [UInt8]

  func srvRecords() -> [SRVRecord] {
    guard bytes.count >= 12 else { return [] }
    let questions = Int(u16(4))
    let answers = Int(u16(6))
    var position = 12
    for _ in 0..<questions {
      guard let end = skipName(position) else { return [] }
      position = end + 4
    }
    var records: [SRVRecord] = []
    for _ in 0..<answers {
      guard let end = skipName(position), end + 10 <= bytes.count else { break }
      let type = u16(end)
      let length = Int(u16(end + 8))
      let data = end + 10
      guard data + length <= bytes.count else { break }
      if type == 33, length >= 7, let (target, _) = readName(data + 6) {
        records.append(
          SRVRecord(
            target: target, port: Int(u16(data + 4)), priority: Int(u16(data)), weight: Int(u16(data + 2))))
      }
      position = data + length
    }
    return records
  }

  private func u16(_ i: Int) -> UInt16 {
    guard i + 1 < bytes.count else { return 0 }
    return UInt16(bytes[i]) << 8 | UInt16(bytes[i + 1])
  }

  private func skipName(_ start: Int) -> Int? {
    var i = start
    while i < bytes.count {
      let length = Int(bytes[i])
      if length == 0 { return i + 1 }
      if length & 0xC0 == 0xC0 { return i + 2 }
      i += length + 1
    }
    return nil
  }

  /// Reads a possibly compressed name; returns it with a trailing dot, as Go does.
  func readName(_ start: Int) -> (String, Int)? {
    var labels: [String] = []
    var i = start
    var end: Int?
    var jumps = 0
    while i < bytes.count {
      let length = Int(bytes[i])
      if length == 0 {
        return (labels.joined(separator: ".") + ".", end ?? i + 1)
      }
      if length & 0xC0 == 0xC0 {
        guard i + 1 < bytes.count, jumps < 64 else { return nil }
        if end == nil { end = i + 2 }
        i = (length & 0x3F) << 8 | Int(bytes[i + 1])
        jumps += 1
        continue
      }
      guard i + 1 + length <= bytes.count else { return nil }
      labels.append(String(decoding: bytes[(i + 1)..<(i + 1 + length)], as: UTF8.self))
      i += length + 1
    }
    return nil
  }
}
