#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A string compared, hashed and ordered by its UTF-8 bytes.
///
/// Swift's `String` equality and hashing follow Unicode canonical equivalence: a precomposed
/// `é` (`C3 A9`) and `e` + combining acute (`65 CC 81`) are one `String` key. etcd keys and
/// Linux file names are bytes, so two such keys are two keys and two files. Every dictionary,
/// set or comparison keyed by an etcd key, a relative path or a file name uses this type (or
/// the raw bytes) instead of `String`. The order is etcd's key order (`memcmp`).
public struct ExactString: Hashable, Comparable, Sendable, CustomStringConvertible,
  ExpressibleByStringLiteral, ExpressibleByStringInterpolation, Codable
{
  /// The string, with its bytes exactly as given (Swift never normalizes stored text).
  public let string: String

  /// Wraps `string`.
  public init(_ string: String) {
    self.string = string
  }

  /// Wraps a literal.
  public init(stringLiteral value: String) {
    self.string = value
  }

  /// Wraps an interpolated literal.
  public init(stringInterpolation: DefaultStringInterpolation) {
    self.string = String(stringInterpolation: stringInterpolation)
  }

  /// The UTF-8 bytes.
  public var utf8: String.UTF8View { self.string.utf8 }

  /// Whether the string has no bytes.
  public var isEmpty: Bool { self.string.utf8.isEmpty }

  public var description: String { self.string }

  // Compared with `memcmp` on the strings' contiguous UTF-8 (native strings are): the
  // element-wise `elementsEqual` on `UTF8View`s was a sixth of a large tree's apply.
  public static func == (lhs: ExactString, rhs: ExactString) -> Bool {
    var left = lhs.string, right = rhs.string
    guard left.utf8.count == right.utf8.count else { return false }
    return left.withUTF8 { x in
      right.withUTF8 { y in x.isEmpty || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 }
    }
  }

  public func hash(into hasher: inout Hasher) {
    var copy = self.string
    copy.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    hasher.combine(self.string.utf8.count)
  }

  public static func < (lhs: ExactString, rhs: ExactString) -> Bool {
    var left = lhs.string, right = rhs.string
    return left.withUTF8 { x in
      right.withUTF8 { y in
        let common = min(x.count, y.count)
        if common > 0 {
          let order = memcmp(x.baseAddress!, y.baseAddress!, common)
          if order != 0 { return order < 0 }
        }
        return x.count < y.count
      }
    }
  }

  public init(from decoder: any Decoder) throws {
    self.string = try decoder.singleValueContainer().decode(String.self)
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(self.string)
  }
}

extension String {
  /// Whether the two strings hold the same UTF-8 bytes (not merely canonically equivalent
  /// text, which is what `==` tests).
  @inlinable
  public func bytesEqual(_ other: String) -> Bool {
    self.utf8.elementsEqual(other.utf8)
  }
}
