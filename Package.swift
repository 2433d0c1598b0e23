// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "Shoal",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Shoal", targets: ["Shoal"]),
        .library(name: "ShoalCore", targets: ["ShoalCore"]),
        .library(name: "ShoalSimulation", targets: ["ShoalSimulation"]),
        .executable(name: "shoal", targets: ["shoal"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        // The wire format's generated code (committed; `make proto` regenerates it).
        .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // A peer's counters: swift-metrics counters over a Prometheus registry of its own.
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C system libraries (Debian: liblmdb-dev, libsodium-dev, libzmq3-dev).
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        .systemLibrary(name: "CSodium", pkgConfig: "libsodium", providers: [.apt(["libsodium-dev"])]),
        // No pkgConfig for libzmq: its .pc file adds a flag SwiftPM refuses (module.modulemap).
        .systemLibrary(name: "CZMQ", providers: [.apt(["libzmq3-dev"])]),
        // glibc's <malloc.h> (mallinfo2), for the memory benchmarks.
        .systemLibrary(name: "CMallocInfo"),
        // Process control for exec tasks (posix_spawn with a clean signal state, subreaper, pidfd).
        .target(name: "CProcess"),

        // Pure: ids, task model, dependency analysis, scheduler machine, shard protocol.
        .target(name: "ShoalCore", dependencies: ["CSodium"], swiftSettings: strict),
        // Deterministic simulator: virtual time, event queue, simulated network with faults, many
        // peers running the real machines.
        .target(name: "ShoalSimulation", dependencies: ["ShoalCore", "ShoalShell"], swiftSettings: strict),
        // The one directive interpreter both shells run (the simulator and the real peer): payloads
        // on messages and in the shard, task inputs and outputs, what is persisted before what.
        .target(name: "ShoalShell", dependencies: ["ShoalCore"], swiftSettings: strict),
        // LMDB-backed shard.
        .target(name: "ShoalStore", dependencies: ["ShoalCore", "CLMDB"], swiftSettings: strict),
        // ZeroMQ transport: one IO thread per peer owning its sockets, CurveZMQ, ZAP allow-lists.
        .target(name: "ShoalTransport", dependencies: ["CZMQ"], swiftSettings: strict),
        // The wire format: proto3 messages (Protos/, generated code committed) and their mapping
        // to the machines' messages, with payload frames after the header.
        .target(
            name: "ShoalWire",
            dependencies: ["ShoalCore", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: strict),
        // A real peer: the machines through the shared interpreter over LMDB, ZeroMQ and the clock.
        .target(
            name: "ShoalPeer",
            dependencies: [
                "Shoal", "ShoalCore", "ShoalShell", "ShoalSimulation", "ShoalStore", "ShoalTransport", "ShoalWire",
                .product(name: "Logging", package: "swift-log"), .product(name: "Yams", package: "Yams"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict),
        // Public API for workflow authors, local runtime, workflow files.
        .target(
            name: "Shoal",
            dependencies: [
                "ShoalCore", "ShoalStore", "ShoalShell", "ShoalSimulation", "CProcess", .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict),
        // The cross-correlation example, Task Bench kernels, example tasks.
        .target(name: "ShoalExamples", dependencies: ["Shoal"], swiftSettings: strict),
        .executableTarget(
            name: "shoal",
            dependencies: [
                "Shoal", "ShoalExamples", "ShoalStore", "ShoalSimulation", "ShoalTransport", "ShoalWire", "ShoalPeer", "CZMQ", "CMallocInfo",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict),

        // Helpers shared by the test targets: finding the built `shoal`, child processes with a
        // deadline, scratch folders.
        .target(name: "ShoalTestSupport", path: "Tests/ShoalTestSupport", swiftSettings: strict),
        .testTarget(name: "ShoalCoreTests", dependencies: ["ShoalCore"], swiftSettings: strict),
        .testTarget(name: "ShoalSimulationTests", dependencies: ["ShoalSimulation", "ShoalExamples"], swiftSettings: strict),
        .testTarget(
            name: "ShoalStoreTests", dependencies: ["ShoalStore", "ShoalTestSupport", "shoal"], swiftSettings: strict),
        .testTarget(
            name: "ShoalTests", dependencies: ["Shoal", "ShoalExamples", "ShoalTestSupport", "shoal"],
            swiftSettings: strict),
        .testTarget(name: "ShoalTransportTests", dependencies: ["ShoalTransport"], swiftSettings: strict),
        .testTarget(name: "ShoalWireTests", dependencies: ["ShoalWire"], swiftSettings: strict),
        .testTarget(
            name: "ShoalPeerTests", dependencies: ["ShoalPeer", "ShoalTransport", "ShoalWire", "ShoalTestSupport", "shoal"],
            swiftSettings: strict),
        .testTarget(name: "ShoalExamplesTests", dependencies: ["ShoalExamples"], swiftSettings: strict),
    ]
)
