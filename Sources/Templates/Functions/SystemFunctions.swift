#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// getenv, datetime, lookupIP, lookupIPV4, lookupIPV6 and lookupSRV: the functions that
/// read the environment, the clock or DNS, each through the render's options.
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
    default:
      preconditionFailure("not a system function: \(function)")
    }
  }

  private func environmentValue(_ name: String) -> String? {
    if let environment { return environment[name] }
    guard let value = getenv(name) else { return nil }
    return String(cString: value)
  }
}
