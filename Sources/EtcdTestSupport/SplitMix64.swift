/// A small deterministic random generator (SplitMix64) for generated tests: the same
/// sequence on every platform for a seed, so that a failing case can be replayed.
public struct SplitMix64: RandomNumberGenerator, Sendable {
  public var state: UInt64

  public init(seed: UInt64) { self.state = seed }

  public mutating func next() -> UInt64 {
    self.state &+= 0x9E37_79B9_7F4A_7C15
    var z = self.state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// A number in `0..<n` (`n` > 0).
  public mutating func below(_ n: Int) -> Int { Int(self.next() % UInt64(n)) }

  /// One of `items` (not empty).
  public mutating func pick<T>(_ items: [T]) -> T { items[self.below(items.count)] }
}
