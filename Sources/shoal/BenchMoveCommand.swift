import ArgumentParser
import Foundation
import ShoalExamples
import ShoalPeer
import ShoalTransport
import ShoalWire

#if canImport(Glibc)
    import Glibc
#endif

/// `shoal bench move`: a large value made at one peer and read by a task another peer stole,
/// through a workflow file, with CurveZMQ and in trusted-network mode. The figure is the thief's
/// fetch, from its request leaving to the value's bytes received, decoded and checked against
/// their digest (`fetched_bytes / fetch_micros` of the peers' status); beside it, in the same
/// run, bare libzmq sockets moving the same bytes (`shoal bench transport`'s reference).
struct BenchMove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "move",
        abstract: "GB/s of a large value fetched by one peer from another in a workflow (CURVE and plain), vs bare libzmq.")

    @Option(help: "Bytes of the value (default 64 MiB).") var valueBytes = 64 << 20
    @Option(help: "Workflows run per security mode (each moves one new value).") var runs = 3
    @Option(help: "Tasks reading the value (the owner runs one at a time; the other peer steals the rest).")
    var readers = 4
    @Option(help: "Milliseconds each reader waits, idle (long enough for the other peer to see ready work and steal).")
    var readerMs = 400

    func validate() throws {
        guard (1...(1 << 30)).contains(valueBytes) else { throw ValidationError("--value-bytes must be 1 to 1 GiB") }
        guard (1...20).contains(runs) else { throw ValidationError("--runs must be 1 to 20") }
        guard (2...64).contains(readers) else { throw ValidationError("--readers must be 2 to 64") }
        guard (10...10_000).contains(readerMs) else { throw ValidationError("--reader-ms must be 10 to 10000") }
    }

    func run() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("shoal-bench-move-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let reference = try BenchTransport.parse(["--value-bytes", String(valueBytes), "--values", "4"])
        let frames = reference.frames()
        print("a \(valueBytes)-byte value made at one peer (1 slot), read by \(readers) idle tasks of \(readerMs) ms; \(runs) workflows per mode")
        for curve in [true, false] {
            let pair = try await TwoPeers(me, folder: folder.appendingPathComponent(curve ? "curve" : "plain"), curve: curve)
            defer { pair.stop() }
            var rates: [Double] = []
            var bare: [Double] = []
            for run in 0..<runs {
                let before = try await pair.fetched()
                let text = """
                    name: move-\(run)
                    tasks:
                      - name: make
                        task: fill
                        args: { bytes: \(valueBytes), seed: \(run + 1) }
                        out: [big]
                      - name: read-{i}
                        foreach: { i: "0..<\(readers)" }
                        task: pause
                        args: { milliseconds: \(readerMs) }
                        in: [big]
                    outputs: []

                    """
                _ = try await pair.client.runFile(path: "move.yaml", text: text)
                let after = try await pair.fetched()
                let bytes = after.bytes - before.bytes, micros = after.micros - before.micros
                guard bytes >= UInt64(valueBytes), micros > 0 else {
                    print("  run \(run + 1): no peer fetched the value (the other peer stole no reader); not counted")
                    continue
                }
                rates.append(Double(bytes) / Double(micros) / 1e3)
                bare.append(Double(valueBytes * reference.values) / (try reference.bareSeconds(frames, curve: curve)) / 1e9)
            }
            let name = curve ? "CURVE" : "plain (security: none)"
            guard !rates.isEmpty else {
                print("\(name): no value moved in \(runs) runs")
                continue
            }
            let median = rates.sorted()[rates.count / 2], bareMedian = bare.sorted()[bare.count / 2]
            print(String(format: "%@: peer to peer fetch median %.2f GB/s, best %.2f (%d moves); bare libzmq in the same runs median %.2f GB/s; ratio %.2f",
                name, median, rates.max()!, rates.count, bareMedian, median / bareMedian))
            print("  each move: " + rates.map { String(format: "%.2f", $0) }.joined(separator: ", ") + " GB/s; bare: "
                + bare.map { String(format: "%.2f", $0) }.joined(separator: ", "))
        }
    }
}

/// Two peer processes on loopback, each one slot, the second seeded with the first; under CURVE
/// with keys of their own (made in `folder`) and a client key on both clients allow-lists.
struct TwoPeers {
    let peers: [PeerProcess]
    let client: ClientConnection
    let clients: [ClientConnection]

    init(_ executable: URL, folder: URL, curve: Bool) async throws {
        let dir = folder.path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var keys: [CurveKeyPair] = []
        var clientKey: CurveKeyPair?
        var security = ["--security", "none"]
        if curve {
            keys = try (0..<2).map { _ in try CurveKeyPair.generate() }
            clientKey = try CurveKeyPair.generate()
            for (k, name) in zip(keys, ["a", "b"]) { _ = try k.write(directory: dir, name: name) }
            try (keys.map(\.publicKey.z85).joined(separator: "\n") + "\n").write(toFile: dir + "/peers.allow", atomically: true, encoding: .utf8)
            try (clientKey!.publicKey.z85 + "\n").write(toFile: dir + "/clients.allow", atomically: true, encoding: .utf8)
            security = ["--security", "curve", "--peers-allow", dir + "/peers.allow", "--clients-allow", dir + "/clients.allow"]
        }
        func keyArguments(_ k: Int) -> [String] { curve ? ["--key", dir + "/\(["a", "b"][k]).key"] : [] }
        let common = ["--listen", "tcp://127.0.0.1:0", "--slots", "1"]
        let a = try PeerProcess(executable, common + ["--data-dir", dir + "/a"] + keyArguments(0), security: security)
        let addressA = try a.waitReady()
        var seeds = ["--seeds", addressA]
        if curve {
            try "\(addressA) \(keys[0].publicKey.z85)\n".write(toFile: dir + "/known-peers", atomically: true, encoding: .utf8)
            seeds += ["--known-peers", dir + "/known-peers"]
        }
        let b = try PeerProcess(executable, common + ["--data-dir", dir + "/b"] + keyArguments(1) + seeds, security: security)
        let addressB = try b.waitReady()
        peers = [a, b]
        clients = try zip([addressA, addressB], [0, 1]).map { address, k in
            try ClientConnection(peer: address, peerKey: curve ? keys[k].publicKey : nil, key: clientKey)
        }
        client = clients[0]
        for c in clients {
            guard try await c.waitForAlive(2) else { throw ClientError("two peers did not see each other alive within 10 s") }
        }
    }

    /// The bytes both peers fetched from each other so far, and the microseconds it took.
    func fetched() async throws -> (bytes: UInt64, micros: UInt64) {
        var bytes: UInt64 = 0, micros: UInt64 = 0
        for c in clients {
            let st = try await c.status()
            bytes += st.fetchedBytes
            micros += st.fetchMicros
        }
        return (bytes, micros)
    }

    func stop() {
        for c in clients { Task { await c.close() } }
        for p in peers { p.kill() }
    }
}
