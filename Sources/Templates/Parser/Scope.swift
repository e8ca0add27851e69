/// Variables visible while parsing one tree, each bound to a slot of the execution frame.
///
/// Slot 0 is `$`. Declaring a name again makes a new slot that shadows the old one until the
/// enclosing control structure ends, as in Go.
struct Scope {
  private var visible: [(name: String, slot: Int)] = [("$", 0)]
  private(set) var slotCount = 1

  /// A mark to return to with ``restore(_:)``.
  var mark: Int { visible.count }

  mutating func restore(_ mark: Int) {
    visible.removeLast(visible.count - mark)
  }

  /// Declares `name` and returns its new slot.
  mutating func declare(_ name: String) -> Int {
    let slot = slotCount
    slotCount += 1
    visible.append((name, slot))
    return slot
  }

  /// The slot of the innermost visible variable called `name`.
  func lookup(_ name: String) -> Int? {
    visible.last(where: { $0.name == name })?.slot
  }
}
