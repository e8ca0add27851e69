/// The fixed bounds that keep arithmetic and allocation finite whatever numbers and strings
/// the data holds. A render that would pass one fails with a ``TemplateError`` (or, for
/// `printf`, prints Go's `%!(BADWIDTH)`/`%!(BADPREC)`); it never traps or allocates without
/// bound. The size and loop bounds that callers may tune are in ``RenderOptions``.
enum Limits {
  /// Go's fmt refuses a `*` width or precision beyond ±1e6 (`tooLarge`), and stops reading
  /// a literal one once it has passed 1e6.
  static let formatNumber = 1_000_000
  /// The longest list `seq` builds.
  static let sequenceLength = 1_000_000
  /// The widest `indent`.
  static let indentWidth = 1_000_000
  /// The longest list `append` builds: each call copies the list, so appending in a loop
  /// costs the square of the length; 10,000 keeps that under a second.
  static let appendLength = 10_000

  /// Go's `fmt.tooLarge`.
  static func formatNumberTooLarge(_ value: Int) -> Bool {
    value > formatNumber || value < -formatNumber
  }

  /// `a * b + c` for non-negative sizes, or nil when it does not fit in an `Int`.
  static func size(_ a: Int, times b: Int, plus c: Int = 0) -> Int? {
    let (product, overflow) = a.multipliedReportingOverflow(by: b)
    guard !overflow else { return nil }
    let (sum, overflow2) = product.addingReportingOverflow(c)
    return overflow2 ? nil : sum
  }
}
