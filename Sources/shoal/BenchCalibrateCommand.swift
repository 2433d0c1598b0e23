import ArgumentParser
import Foundation
import ShoalCore
import ShoalTransport
import ShoalWire

/// `shoal bench calibrate`: the loopback network as the simulator models it, measured through the
/// real stack: one-way latency and its spread from round trips of encoded membership pings between
/// two transports (encode, send, receive, decode, both ways), and bandwidth from 64 MiB values
/// (`shoal bench transport`'s measure). Prints, or writes with `--out`, a scenario `network:`
/// block; `shoal simulate --record-costs` measures the task costs.
struct BenchCalibrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calibrate", abstract: "Measure loopback latency and bandwidth; write a scenario network block.")

    @Option(help: "Round trips measured (after 100 to warm up).") var roundTrips = 2_000
    @Option(help: "curve (the default mode of peers) or none.") var security = "curve"
    @Option(help: "Write the network block to this file as well.") var out: String?

    func validate() throws {
        guard (10...1_000_000).contains(roundTrips) else { throw ValidationError("--round-trips must be 10 to 1000000") }
        guard security == "curve" || security == "none" else { throw ValidationError("--security must be curve or none") }
    }

    func run() async throws {
        let curve = security == "curve"
        let a = try CurveKeyPair.generate(), b = try CurveKeyPair.generate()
        let ta = try Transport(listen: "tcp://127.0.0.1:0", security: curve ? .curve(a, peers: [b.publicKey]) : .none)
        let tb = try Transport(listen: "tcp://127.0.0.1:0", security: curve ? .curve(b, peers: [a.publicKey]) : .none)
        defer {
            ta.shutdown()
            tb.shutdown()
        }
        let toB = Remote(endpoint: tb.endpoint!, serverKey: curve ? b.publicKey : nil)
        let toA = Remote(endpoint: ta.endpoint!, serverKey: curve ? a.publicKey : nil)
        let update = MemberUpdate(peer: PeerID(raw: 7), status: .alive, incarnation: 1, load: PeerLoad(), loadVersion: 1)
        var oneWay: [Double] = []
        let clock = ContinuousClock()
        for i in 0..<(roundTrips + 100) {
            let ping = WireMessage(body: .peer(.membership(.ping(sequence: UInt64(i), updates: [update])), contacts: []), sender: PeerID(raw: 1))
            let t0 = clock.now
            ta.send(Wire.encode(ping), to: toB)
            let got = try await next(tb)
            guard case .peer(.membership(.ping(let seq, _)), _) = try Wire.decode(got).body, seq == UInt64(i) else {
                throw CommandFailure("an unexpected message came back")
            }
            let ack = WireMessage(body: .peer(.membership(.ack(sequence: seq, updates: [update])), contacts: []), sender: PeerID(raw: 2))
            tb.send(Wire.encode(ack), to: toA)
            _ = try Wire.decode(try await next(ta))
            if i >= 100 { oneWay.append((clock.now - t0).seconds / 2) }
        }
        oneWay.sort()
        let median = oneWay[oneWay.count / 2], least = oneWay[0]
        let mean = oneWay.reduce(0, +) / Double(oneWay.count)
        let p99 = oneWay[oneWay.count * 99 / 100]
        // Bandwidth: 64 MiB values in 4 MiB frames, as peers send them.
        var bench = try BenchTransport.parse([])
        bench.values = 4
        let value = Data(count: bench.valueBytes)
        let frames = stride(from: 0, to: bench.valueBytes, by: bench.chunkBytes).map {
            value[$0..<min($0 + bench.chunkBytes, bench.valueBytes)]
        }
        var rates: [Double] = []
        for _ in 0..<3 { rates.append(Double(bench.valueBytes * bench.values) / (try await bench.transportSeconds(frames, curve: curve))) }
        rates.sort()
        let bandwidth = rates[1]
        let latencyMicros = Int((least * 1e6).rounded())
        let jitterMicros = Int(((mean - least) * 1e6).rounded())
        let mbps = Int(bandwidth * 8 / 1e6)
        print(String(format: "one-way (half a round trip, encode and decode included), %@: min %.1f µs, median %.1f µs, mean %.1f µs, p99 %.1f µs (%d round trips)",
            curve ? "CURVE" : "plain", least * 1e6, median * 1e6, mean * 1e6, p99 * 1e6, oneWay.count))
        print(String(format: "bandwidth, 64 MiB values: %.2f GB/s (median of 3)", bandwidth / 1e9))
        let block = """
            # shoal bench calibrate --security \(security), \(ISO8601DateFormatter().string(from: Date())): the latency is the least
            # one-way time, the jitter the mean's excess over it (the simulator draws it exponentially).
            network: { latencyMicros: \(latencyMicros), jitterMicros: \(jitterMicros), bandwidthMbps: \(mbps) }

            """
        print(block, terminator: "")
        if let out { try block.write(toFile: out, atomically: true, encoding: .utf8) }
    }

    /// The next message's frames (60 s at most).
    private func next(_ t: Transport) async throws -> [Data] {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            for case .message(let m) in t.poll() { return m.frames }
            await Task.yield()
        }
        throw CommandFailure("no message within 60 s")
    }
}
