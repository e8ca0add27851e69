#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A point in time as `datetime` returns it, with the methods confd templates call on
/// Go's `time.Time`: `.Format`, `.Unix`, `.UTC`, `.Year` and the like.
public struct TemplateTime: Sendable, Hashable {
  /// Whole seconds since 1970-01-01T00:00:00Z.
  public var seconds: Int64
  /// Nanoseconds within the second, `0..<1_000_000_000`.
  public var nanoseconds: Int32
  /// Whether the time shows in UTC (`true`) or in the local time zone (`false`).
  public var isUTC: Bool

  /// Creates a time from seconds and nanoseconds since the Unix epoch.
  public init(seconds: Int64, nanoseconds: Int32 = 0, isUTC: Bool = false) {
    self.seconds = seconds
    self.nanoseconds = nanoseconds
    self.isUTC = isUTC
  }

  /// The current time of the system's real-time clock, shown in the local zone.
  public static func now() -> TemplateTime {
    var spec = timespec()
    clock_gettime(CLOCK_REALTIME, &spec)
    return TemplateTime(seconds: Int64(spec.tv_sec), nanoseconds: Int32(spec.tv_nsec))
  }

  /// The calendar fields of this time in its zone.
  var fields: CalendarFields {
    var t = time_t(seconds)
    var parts = tm()
    if isUTC {
      gmtime_r(&t, &parts)
      return CalendarFields(parts, offset: 0, zone: "UTC")
    }
    localtime_r(&t, &parts)
    let zone = parts.tm_zone.map { String(cString: $0) } ?? ""
    return CalendarFields(parts, offset: Int(parts.tm_gmtoff), zone: zone)
  }
}

/// Broken-down calendar fields, as the formatter needs them.
struct CalendarFields {
  var year: Int
  var month: Int  // 1...12
  var day: Int
  var hour: Int
  var minute: Int
  var second: Int
  var weekday: Int  // 0 = Sunday
  var yearDay: Int  // 1...366
  var offset: Int  // seconds east of UTC
  var zone: String

  init(_ parts: tm, offset: Int, zone: String) {
    year = Int(parts.tm_year) + 1900
    month = Int(parts.tm_mon) + 1
    day = Int(parts.tm_mday)
    hour = Int(parts.tm_hour)
    minute = Int(parts.tm_min)
    second = Int(parts.tm_sec)
    weekday = Int(parts.tm_wday)
    yearDay = Int(parts.tm_yday) + 1
    self.offset = offset
    self.zone = zone
  }
}

extension TemplateTime {
  /// Calls a method of Go's `time.Time` by name, as `{{datetime.Format "2006"}}` does.
  func callMethod(_ name: String, _ args: [TemplateValue]) throws(FunctionFailure) -> TemplateValue {
    func noArgs() throws(FunctionFailure) {
      if !args.isEmpty {
        throw FunctionFailure.argument("wrong number of args for \(name): want 0 got \(args.count)")
      }
    }
    switch name {
    case "Format":
      guard args.count == 1 else {
        throw .argument("wrong number of args for Format: want 1 got \(args.count)")
      }
      guard let layout = args[0].stringValue else {
        throw .argument("wrong type for value; expected string; got \(args[0].goTypeName)")
      }
      return .string(format(layout))
    case "String": try noArgs(); return .string(description)
    case "Unix": try noArgs(); return .int(Int(seconds))
    case "UnixNano": try noArgs(); return .int(Int(seconds) &* 1_000_000_000 &+ Int(nanoseconds))
    case "UTC": try noArgs(); return .time(TemplateTime(seconds: seconds, nanoseconds: nanoseconds, isUTC: true))
    case "Local": try noArgs(); return .time(TemplateTime(seconds: seconds, nanoseconds: nanoseconds, isUTC: false))
    case "Year": try noArgs(); return .int(fields.year)
    case "YearDay": try noArgs(); return .int(fields.yearDay)
    case "Day": try noArgs(); return .int(fields.day)
    case "Hour": try noArgs(); return .int(fields.hour)
    case "Minute": try noArgs(); return .int(fields.minute)
    case "Second": try noArgs(); return .int(fields.second)
    case "Nanosecond": try noArgs(); return .int(Int(nanoseconds))
    default:
      throw .execution("can't evaluate field \(name) in type time.Time")
    }
  }
}

extension TemplateTime: CustomStringConvertible {
  /// Go's `time.Time.String()` layout, without the monotonic clock reading.
  public var description: String { format("2006-01-02 15:04:05.999999999 -0700 MST") }
}
