#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// getenv, datetime, lookupIP, lookupIPV4, lookupIPV6 and lookupSRV: the functions that
/// read the environment, the clock or DNS, each through the render's options; and hostname
/// and fileExists, which ask the machine directly.
extension FunctionContext {
  func systemFunction(_ function: Builtin, _ a: [TemplateValue]) throws(FunctionFailure) -> TemplateValue {
    switch function {
    case .getenv:
      let name = try string(a[0])
      let fallback = a.count > 1 ? try string(a[1]) : ""
      let value = environmentValue(name) ?? ""
      return .string(value.isEmpty ? fallback : value)
    case .datetime:
      return .time(clock())
    case .lookupIP, .lookupIPV4, .lookupIPV6:
      var addresses = ByteOrder.sorted(resolver.lookupIP(try string(a[0])))
      if function == .lookupIPV4 { addresses = addresses.filter { $0.contains(".") } }
      if function == .lookupIPV6 { addresses = addresses.filter { $0.contains(":") } }
      return .list(addresses.map { .string($0) })
    case .lookupSRV:
      let records = resolver.lookupSRV(try string(a[0]), try string(a[1]), try string(a[2]))
      // confd sorts by the concatenation of target, port, priority and weight.
      let sorted = records.sorted {
        ByteOrder.less("\($0.target)\($0.port)\($0.priority)\($0.weight)", "\($1.target)\($1.port)\($1.priority)\($1.weight)")
      }
      return .list(sorted.map { record in
        .map([
          "Target": .string(record.target), "Port": .int(record.port),
          "Priority": .int(record.priority), "Weight": .int(record.weight),
        ])
      })
    case .hostname:
      return .string(Self.hostName())
    case .fileExists:
      return .bool(Self.fileExists(try string(a[0])))
    default:
      preconditionFailure("not a system function: \(function)")
    }
  }

  /// Go's `os.Hostname` (`gethostname`); empty if it fails.
  static func hostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count - 1) == 0 else { return "" }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }

  /// confd's `fileExists`: `stat` (symlinks followed) finds something at `path`. Like confd
  /// (`!os.IsNotExist(err)`), a path that exists but cannot be examined (permission denied)
  /// counts as existing; one whose parent is not a directory does not. It runs with the
  /// agent's rights (root) and blocks as long as the file system does (a hung NFS mount):
  /// docs/templates.md warns against passing it values from etcd.
  static func fileExists(_ path: String) -> Bool {
    guard !path.utf8.contains(0) else { return false }
    var info = stat()
    if stat(path, &info) == 0 { return true }
    return errno != ENOENT && errno != ENOTDIR && errno != ENAMETOOLONG
  }

  private func environmentValue(_ name: String) -> String? {
    if let environment { return environment[name] }
    guard let value = getenv(name) else { return nil }
    return String(cString: value)
  }
}
