// swift-tools-version: 6.1
// SPDX-License-Identifier: Apache-2.0 (SwiftPM has no license field; see LICENSE and NOTICE)
import PackageDescription

// Swift 6 language mode everywhere, plus the upcoming features our code is written for.
let baseSettings: [SwiftSetting] = [
  .swiftLanguageMode(.v6),
  .enableUpcomingFeature("ExistentialAny"),
]
let settings = baseSettings + [.enableUpcomingFeature("MemberImportVisibility")]

// EtcSync works with Glibc's `struct stat`. On Linux that struct is also visible through
// CoreFoundation and CDispatch, and with MemberImportVisibility its fields then demand
// whichever of those modules the compiler happened to load first; so EtcSync goes without it.
let agentSettings = baseSettings

let grpc: [Target.Dependency] = [
  .product(name: "GRPCCore", package: "grpc-swift-2"),
  .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
  .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
  .product(name: "SwiftProtobuf", package: "swift-protobuf"),
  .product(name: "NIOCore", package: "swift-nio"),
  .product(name: "NIOPosix", package: "swift-nio"),
  .product(name: "NIOTLS", package: "swift-nio"),
  .product(name: "NIOHTTP2", package: "swift-nio-http2"),
  .product(name: "NIOSSL", package: "swift-nio-ssl"),
  .product(name: "Logging", package: "swift-log"),
]

// The clientv3 tutorial's programs, one executable each (examples/tutorial/NAME).
let tutorial = ["connect", "put", "get", "delete", "watch", "lease", "op"]

var targets: [Target] = [
  .target(name: "EtcdClient", dependencies: grpc, swiftSettings: settings),
  // Crypto for sha256sum, sha1sum and md5sum: swift-crypto is linked into the agent already.
  .target(name: "Templates", dependencies: [.product(name: "Crypto", package: "swift-crypto")], swiftSettings: settings),
  .target(
    name: "EtcSync",
    dependencies: [
      "EtcdClient", "Templates",
      .product(name: "Logging", package: "swift-log"),
      .product(name: "Yams", package: "Yams"),
      .product(name: "Metrics", package: "swift-metrics"),
      .product(name: "Prometheus", package: "swift-prometheus"),
      .product(name: "Hummingbird", package: "hummingbird"),
      .product(name: "Crypto", package: "swift-crypto"),
      .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
    ],
    swiftSettings: agentSettings
  ),
  .executableTarget(
    name: "etcsync",
    dependencies: [
      "EtcSync", "EtcdClient",
      .product(name: "ArgumentParser", package: "swift-argument-parser"),
      .product(name: "Logging", package: "swift-log"),
      .product(name: "Metrics", package: "swift-metrics"),
      .product(name: "Prometheus", package: "swift-prometheus"),
      .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
    ],
    swiftSettings: settings
  ),
  // Package-only: starts real etcd processes for tests, examples and benchmarks.
  .target(
    name: "EtcdTestSupport",
    dependencies: ["EtcdClient", .product(name: "NIOCore", package: "swift-nio"),
                   .product(name: "NIOPosix", package: "swift-nio")],
    swiftSettings: settings
  ),
  .testTarget(
    name: "EtcdClientTests",
    dependencies: [
      "EtcdClient", "EtcdTestSupport",
      .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      .product(name: "GRPCCore", package: "grpc-swift-2"),
      .product(name: "NIOCore", package: "swift-nio"),
      .product(name: "NIOPosix", package: "swift-nio"),
      .product(name: "NIOEmbedded", package: "swift-nio"),
    ],
    swiftSettings: settings
  ),
  .testTarget(name: "TemplatesTests", dependencies: ["Templates", "EtcdTestSupport"], swiftSettings: settings),
  .testTarget(
    name: "EtcSyncTests",
    // "etcsync": the CLI and fault tests launch the built binary, so it is built first.
    dependencies: ["EtcSync", "EtcdTestSupport", "EtcdClient", "Templates", "etcsync", .product(name: "Yams", package: "Yams"),
                   .product(name: "Metrics", package: "swift-metrics"), .product(name: "Prometheus", package: "swift-prometheus")],
    // confd directories read by ConfdImportTests through #filePath.
    exclude: ["Fixtures"],
    // Its file tests read `struct stat` fields, which MemberImportVisibility ties to whichever
    // of Glibc, CoreFoundation or CDispatch the compiler loaded first (see agentSettings): an
    // incremental build failed on them once NIOPosix joined the graph.
    swiftSettings: agentSettings
  ),
  .executableTarget(
    name: "ClientBench",
    dependencies: ["EtcdClient", "EtcdTestSupport"],
    path: "Benchmarks/ClientBench",
    swiftSettings: settings
  ),
  .executableTarget(
    name: "TemplateBench",
    dependencies: ["Templates"],
    path: "Benchmarks/TemplateBench",
    swiftSettings: settings
  ),
]
targets += tutorial.map { name in
  .executableTarget(
    name: "example-\(name)",
    dependencies: ["EtcdClient"],
    path: "examples/tutorial/\(name)",
    swiftSettings: settings
  )
}

let package = Package(
  name: "etcsync",
  platforms: [.macOS(.v15)],
  products: [
    .library(name: "EtcdClient", targets: ["EtcdClient"]),
    .executable(name: "etcsync", targets: ["etcsync"]),
  ],
  dependencies: [
    .package(url: "https://github.com/grpc/grpc-swift-2.git", exact: "2.4.3"),
    .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", exact: "2.9.2"),
    .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", exact: "2.4.1"),
    .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
    .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    .package(url: "https://github.com/apple/swift-nio-http2.git", exact: "1.46.0"),
    .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
    .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
    .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
    .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
    // Resolved through Hummingbird already; `etcsync run`'s services run in its ServiceGroup.
    .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
  ],
  targets: targets
)

