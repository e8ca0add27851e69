#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Byte-wise string comparison: the order of etcd keys and of Go's `sort.Strings`.
enum ByteOrder {
  /// Whether `a` sorts before `b` comparing UTF-8 bytes.
  static func less(_ a: String, _ b: String) -> Bool {
    let fast = a.utf8.withContiguousStorageIfAvailable { pa in
      b.utf8.withContiguousStorageIfAvailable { pb in less(pa, pb) }
    }
    if let fast, let result = fast { return result }
    return a.utf8.lexicographicallyPrecedes(b.utf8)
  }

  static func less(_ pa: UnsafeBufferPointer<UInt8>, _ pb: UnsafeBufferPointer<UInt8>) -> Bool {
    let n = min(pa.count, pb.count)
    if n > 0 {
      let c = memcmp(pa.baseAddress!, pb.baseAddress!, n)
      if c != 0 { return c < 0 }
    }
    return pa.count < pb.count
  }

  /// Whether `a` sorts before `b` comparing bytes.
  static func less(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in less(pa, pb) } }
  }

  /// Whether `s` starts with `prefix`, byte-wise (unlike `String.hasPrefix`, which
  /// compares characters).
  static func hasPrefix(_ s: String, _ prefix: String) -> Bool {
    let fast = s.utf8.withContiguousStorageIfAvailable { ps in
      prefix.utf8.withContiguousStorageIfAvailable { pp in
        pp.count <= ps.count && (pp.isEmpty || memcmp(ps.baseAddress!, pp.baseAddress!, pp.count) == 0)
      }
    }
    if let fast, let result = fast { return result }
    let su = s.utf8
    let pu = prefix.utf8
    return pu.count <= su.count && su.prefix(pu.count).elementsEqual(pu)
  }

  /// Whether two strings have the same bytes (`==` on String compares canonical equivalence).
  static func equal(_ a: String, _ b: String) -> Bool {
    a.utf8.count == b.utf8.count && !less(a, b) && !less(b, a)
  }

  /// Sorts strings by bytes, as Go's `sort.Strings` does.
  static func sorted(_ strings: [String]) -> [String] {
    strings.sorted(by: less)
  }
}
