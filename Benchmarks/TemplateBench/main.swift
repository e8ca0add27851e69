// Renders 100,000 lines through the Templates engine and prints the time per render.
//
//   swift build -c release --product TemplateBench && .build/release/TemplateBench [case-name]
//
// The data source holds 100,000 keys; the templates range over them with `gets` (glob
// match, one KVPair per key) and with `ls` + `getv` (child listing, then one lookup per
// key), writing one line per key. Parsing happens once, outside the timing; each figure
// is the best of several renders into a fresh buffer. Exits non-zero if a case takes
// longer than the 0.15 s budget.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Templates

struct BenchCase {
  var name: String
  var text: String
  var options: RenderOptions
}

enum Bench {
  static let lineCount = 100_000
  static let runs = 7
  static let budget = 0.15

  static let cases = [
    BenchCase(
      name: "gets",
      text: """
        upstream {{getv "/services/web-name"}} {
        {{- range gets "/services/web/*"}}
            server {{.Key}} {{.Value}};
        {{- end}}
        }

        """,
      options: RenderOptions()),
    BenchCase(
      name: "ls+getv",
      text: """
        {{range $name := ls "/web"}}server {{$name}} {{getv (printf "/web/%s" $name)}};
        {{end}}
        """,
      options: RenderOptions(keyPrefix: "/services")),
  ]

  static func seconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
  }

  static func makeData() -> DictionaryDataSource {
    var entries: [String: [UInt8]] = [:]
    entries.reserveCapacity(lineCount + 1)
    for i in 0..<lineCount {
      let number = String(i)
      let name = "node-" + String(repeating: "0", count: 6 - number.count) + number
      entries["/services/web/" + name] = Array("10.\(i / 65536 % 256).\(i / 256 % 256).\(i % 256):8080".utf8)
    }
    entries["/services/web-name"] = Array("web".utf8)
    return DictionaryDataSource(entries)
  }

  static func milliseconds(_ value: Double) -> String {
    let tenths = Int((value * 10_000).rounded())
    return "\(tenths / 10).\(tenths % 10) ms"
  }

  /// Runs one case; returns whether it stayed within the budget.
  static func run(_ bench: BenchCase, data: DictionaryDataSource) throws -> Bool {
    let template = try Template(name: bench.name, text: bench.text)
    var best = Double.infinity
    var total = 0.0
    var lines = 0
    var bytes = 0
    for _ in 0..<runs {
      let start = seconds()
      let output = try template.render(data: data, options: bench.options)
      let elapsed = seconds() - start
      best = min(best, elapsed)
      total += elapsed
      lines = output.reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
      bytes = output.count
    }
    let within = best <= budget
    print(
      "\(bench.name): \(lines) lines, \(bytes) bytes: best \(milliseconds(best)), "
        + "mean \(milliseconds(total / Double(runs))) over \(runs) renders "
        + "(\(within ? "within" : "OVER") the \(milliseconds(budget)) budget)")
    return within
  }

  static func main() -> Int32 {
    let selected = CommandLine.arguments.dropFirst().first
    let data = makeData()
    var ok = true
    for bench in cases where selected == nil || bench.name == selected {
      do {
        ok = try run(bench, data: data) && ok
      } catch {
        print("\(bench.name): \(error)")
        return 2
      }
    }
    return ok ? 0 : 1
  }
}

exit(Bench.main())
