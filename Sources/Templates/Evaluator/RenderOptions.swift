/// How one render reads its data and treats gaps; the defaults are strict.
public struct RenderOptions: Sendable {
  /// Prepended to every key the template names, like confd's `prefix`: with `/app`,
  /// `getv "/db/host"` reads `/app/db/host`, and `gets`/`ls` results drop `/app` again.
  /// A trailing `/` is ignored. Empty (the default) reads keys as written.
  public var keyPrefix: String
  /// What reading a missing map key or field (`.Foo`) does; `.error` by default.
  public var missingKey: MissingKeyPolicy
  /// The variables `getenv` sees; `nil` (the default) reads the process environment.
  public var environment: [String: String]?
  /// The clock `datetime` reads.
  public var clock: @Sendable () -> TemplateTime
  /// Name resolution for `lookupIP` and `lookupSRV`.
  public var resolver: DNSResolver
  /// How deeply `{{template}}` calls may nest (guards against runaway recursion).
  public var maxTemplateDepth: Int
  /// The most bytes one render may output, and the longest string any function may build
  /// (`printf`, `indent`, `replace`, `join`, ...): 64 MiB by default. Past it the render fails
  /// with ``TemplateError/Code/limitExceeded``, so data cannot make it allocate without bound.
  public var maxOutputSize: Int
  /// The most `range` iterations one render may run, over all loops together: 10,000,000
  /// by default. Past it the render fails with ``TemplateError/Code/limitExceeded``, so a
  /// count from the data (`range (atoi (getv "/n"))`) cannot run for ever.
  public var maxIterations: Int

  /// Creates options; every parameter has the strict default.
  public init(
    keyPrefix: String = "",
    missingKey: MissingKeyPolicy = .error,
    environment: [String: String]? = nil,
    clock: @escaping @Sendable () -> TemplateTime = { TemplateTime.now() },
    resolver: DNSResolver = .system,
    maxTemplateDepth: Int = 100,
    maxOutputSize: Int = 64 << 20,
    maxIterations: Int = 10_000_000
  ) {
    self.keyPrefix = keyPrefix
    self.missingKey = missingKey
    self.environment = environment
    self.clock = clock
    self.resolver = resolver
    self.maxTemplateDepth = maxTemplateDepth
    self.maxOutputSize = maxOutputSize
    self.maxIterations = maxIterations
  }
}

/// What `.Foo` does when a map has no key `Foo` (Go's `missingkey` option).
public enum MissingKeyPolicy: Sendable, Hashable {
  /// Fail the render, naming the key and the position (Go's `missingkey=error`).
  case error
  /// Yield nil, which prints as `<no value>` (Go's default, and so confd's).
  case noValue
}
