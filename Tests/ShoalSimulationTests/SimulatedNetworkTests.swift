import Foundation
import ShoalCore
import Testing

@testable import ShoalSimulation

private func p(_ n: UInt64) -> PeerID { PeerID(raw: n) }
private func at(_ ns: Int64) -> Instant { Instant(nanoseconds: ns) }

/// Sends `count` messages among `peers` peers (pairs and sizes from their own generator), one
/// microsecond apart, and returns every delivery list.
private func traffic(_ network: inout SimulatedNetwork, count: Int, peers: UInt64 = 8, seed: UInt64 = 1) -> [[Instant]] {
    var g = SeededGenerator(seed: seed)
    var out: [[Instant]] = []
    for i in 0..<count {
        let from = g.next() % peers
        var to = g.next() % peers
        if to == from { to = (to + 1) % peers }
        let bytes = Int(g.next() % 4096)
        out.append(network.send(from: p(from), to: p(to), bytes: bytes, now: at(Int64(i) * 1_000)))
    }
    return out
}

@Suite struct SimulatedNetworkTests {
    @Test func defaults() {
        let s = NetworkSettings()
        #expect(s.latency == .microseconds(200))
        #expect(s.jitter == .microseconds(50))
        #expect(s.bandwidthBytesPerSecond == 1_250_000_000)
        #expect(s.dropProbability == 0 && s.duplicateProbability == 0 && s.reorderProbability == 0)
    }

    @Test func sameSeedSameDeliveriesDifferentSeedsDiffer() {
        var s = NetworkSettings()
        s.dropProbability = 0.1
        s.duplicateProbability = 0.1
        s.reorderProbability = 0.1
        var a = SimulatedNetwork(settings: s, seed: 42)
        var b = SimulatedNetwork(settings: s, seed: 42)
        var c = SimulatedNetwork(settings: s, seed: 43)
        let ta = traffic(&a, count: 2_000)
        let tb = traffic(&b, count: 2_000)
        let tc = traffic(&c, count: 2_000)
        #expect(ta == tb)
        #expect(a.statistics == b.statistics)
        #expect(ta != tc)
    }

    @Test func dropAndDuplicateRatesFollowTheSettings() {
        var s = NetworkSettings()
        s.dropProbability = 0.1
        s.duplicateProbability = 0.05
        var net = SimulatedNetwork(settings: s, seed: 7)
        let n = 100_000
        var lost = 0
        var doubled = 0
        for i in 0..<n {
            let r = net.send(from: p(1), to: p(2), bytes: 100, now: at(Int64(i) * 1_000))
            if r.isEmpty { lost += 1 }
            if r.count == 2 { doubled += 1 }
        }
        let st = net.statistics
        #expect(st.dropped == lost && st.duplicated == doubled)
        // Binomial standard deviations: about 95 and 67; allow five.
        #expect(abs(Double(lost) - 0.1 * Double(n)) < 500)
        #expect(abs(Double(doubled) - 0.05 * 0.9 * Double(n)) < 350)
    }

    @Test func linkIsFIFOWithoutJitterOrReordering() {
        var s = NetworkSettings()
        s.jitter = .zero
        var net = SimulatedNetwork(settings: s, seed: 1)
        var g = SeededGenerator(seed: 9)
        var last = Instant.zero
        for i in 0..<10_000 {
            // Irregular sizes and send times, several sends per instant.
            let now = at(Int64(i / 3) * 700)
            let r = net.send(from: p(3), to: p(4), bytes: Int(g.next() % 100_000), now: now)
            #expect(r.count == 1)
            #expect(r[0] >= last)
            #expect(r[0] >= now + s.latency)
            last = r[0]
        }
    }

    @Test func jitterAveragesToItsMean() {
        var s = NetworkSettings.ideal(latency: .microseconds(100))
        s.jitter = .microseconds(50)
        var net = SimulatedNetwork(settings: s, seed: 5)
        var total: Int64 = 0
        let n = 50_000
        for i in 0..<n {
            let now = at(Int64(i) * 1_000_000)
            let r = net.send(from: p(1), to: p(2), bytes: 10, now: now)
            total += (r[0] - now).nanoseconds - 100_000
        }
        let mean = Double(total) / Double(n)
        #expect(abs(mean - 50_000) < 1_500)
    }

    @Test func reorderingLetsMessagesOvertake() {
        var s = NetworkSettings.ideal()
        s.reorderProbability = 0.2
        var net = SimulatedNetwork(settings: s, seed: 11)
        var times: [Instant] = []
        for i in 0..<1_000 {
            let now = at(Int64(i) * 10_000)
            let r = net.send(from: p(1), to: p(2), bytes: 10, now: now)
            #expect(r[0] >= now + s.latency)
            #expect(r[0] <= now + s.latency * 11)
            times.append(r[0])
        }
        #expect(times != times.sorted())
    }

    @Test func bandwidthSerializesALink() {
        var s = NetworkSettings.ideal(latency: .milliseconds(1))
        s.bandwidthBytesPerSecond = 1_000_000
        var net = SimulatedNetwork(settings: s, seed: 1)
        let a = net.send(from: p(1), to: p(2), bytes: 1_000_000, now: .zero)
        let b = net.send(from: p(1), to: p(2), bytes: 1_000_000, now: .zero)
        let c = net.send(from: p(1), to: p(2), bytes: 1_000_000, now: .zero)
        #expect(a == [at(1_001_000_000)])
        #expect(b == [at(2_001_000_000)])
        #expect(c == [at(3_001_000_000)])
        // Other links, including the reverse direction, are independent.
        #expect(net.send(from: p(2), to: p(1), bytes: 1_000_000, now: .zero) == [at(1_001_000_000)])
        #expect(net.send(from: p(1), to: p(3), bytes: 500_000, now: .zero) == [at(501_000_000)])
        // After the link drains, a message starts at once.
        #expect(net.send(from: p(1), to: p(2), bytes: 1_000, now: at(5_000_000_000)) == [at(5_002_000_000)])
        // Unlimited bandwidth: only latency.
        net.settings.bandwidthBytesPerSecond = 0
        #expect(net.send(from: p(1), to: p(2), bytes: 1 << 30, now: at(6_000_000_000)) == [at(6_001_000_000)])
    }

    @Test func partitionsDropExactlyCrossGroupMessagesAndHealRestores() {
        var net = SimulatedNetwork(settings: .ideal(), seed: 1)
        let peers = (0..<6).map(p)
        net.partition([[p(0), p(1), p(2)], [p(3), p(4)]])  // p5 is isolated
        #expect(net.isPartitioned)
        var expectedLost = 0
        for a in peers {
            for b in peers {
                let group: (PeerID) -> Int? = { $0.raw < 3 ? 0 : ($0.raw < 5 ? 1 : nil) }
                let reachable = a == b || (group(a) != nil && group(a) == group(b))
                #expect(net.canReach(a, b) == reachable)
                let r = net.send(from: a, to: b, bytes: 10, now: .zero)
                #expect(r.isEmpty == !reachable)
                if !reachable { expectedLost += 1 }
            }
        }
        #expect(net.statistics.partitioned == expectedLost)
        #expect(expectedLost == 36 - (9 + 4 + 1))  // all ordered pairs minus same-group ones and p5 → p5
        net.heal()
        #expect(!net.isPartitioned)
        for a in peers {
            for b in peers {
                #expect(net.canReach(a, b))
                #expect(net.send(from: a, to: b, bytes: 10, now: .zero).count == 1)
            }
        }
        #expect(net.statistics.partitioned == expectedLost)
    }

    @Test func peersInNoGroupAreIsolated() {
        var net = SimulatedNetwork(settings: .ideal(), seed: 1)
        net.partition([])
        #expect(!net.canReach(p(1), p(2)))
        #expect(net.send(from: p(1), to: p(2), bytes: 1, now: .zero).isEmpty)
        #expect(net.send(from: p(2), to: p(2), bytes: 1, now: .zero) == [.zero])
        net.partition([[p(1)], [p(2), p(3)]])
        #expect(!net.canReach(p(1), p(2)))
        #expect(net.canReach(p(2), p(3)))
        #expect(!net.canReach(p(3), p(4)))
    }

    @Test func messageToSelfIsImmediateAndReliable() {
        var s = NetworkSettings()
        s.dropProbability = 1
        s.duplicateProbability = 1
        var net = SimulatedNetwork(settings: s, seed: 1)
        net.partition([[p(2)]])
        let now = at(123_456)
        for _ in 0..<100 {
            #expect(net.send(from: p(1), to: p(1), bytes: 1_000_000, now: now) == [now])
        }
        #expect(net.statistics.delivered == 100)
        #expect(net.statistics.dropped == 0 && net.statistics.duplicated == 0)
    }

    @Test func duplicatesAreIndependentAndOrdered() {
        var s = NetworkSettings()
        s.duplicateProbability = 1
        var net = SimulatedNetwork(settings: s, seed: 3)
        var differ = 0
        for i in 0..<1_000 {
            let r = net.send(from: p(1), to: p(2), bytes: 100, now: at(Int64(i) * 1_000_000))
            #expect(r.count == 2)
            #expect(r[0] <= r[1])
            if r[0] != r[1] { differ += 1 }
        }
        #expect(differ > 900)
    }

    @Test func statisticsAddUp() {
        var s = NetworkSettings()
        s.dropProbability = 0.2
        s.duplicateProbability = 0.2
        s.reorderProbability = 0.1
        var net = SimulatedNetwork(settings: s, seed: 77)
        net.partition([[p(0), p(1), p(2), p(3)], [p(4), p(5), p(6)]])
        let first = traffic(&net, count: 5_000)
        net.heal()
        let second = traffic(&net, count: 5_000, seed: 2)
        let st = net.statistics
        #expect(st.sent == 10_000)
        #expect(st.delivered == (first + second).reduce(0) { $0 + $1.count })
        #expect(st.sent + st.duplicated == st.delivered + st.dropped + st.partitioned)
        #expect(st.partitioned > 0 && st.dropped > 0 && st.duplicated > 0)
        #expect(st.bytesSent > 0)
        let data = try? JSONEncoder().encode(st)
        #expect(data.flatMap { try? JSONDecoder().decode(NetworkStatistics.self, from: $0) } == st)
    }

    @Test func settingsChangeMidRun() {
        var net = SimulatedNetwork(settings: .ideal(), seed: 1)
        #expect(net.send(from: p(1), to: p(2), bytes: 1, now: .zero).count == 1)
        net.settings.dropProbability = 1
        #expect(net.send(from: p(1), to: p(2), bytes: 1, now: .zero).isEmpty)
        net.settings.dropProbability = 0
        net.settings.latency = .milliseconds(5)
        #expect(net.send(from: p(1), to: p(2), bytes: 1, now: .zero) == [at(5_000_000)])
    }

    @Test func idleLinksAreForgotten() {
        var s = NetworkSettings()
        s.bandwidthBytesPerSecond = 1_000_000_000
        var net = SimulatedNetwork(settings: s, seed: 1)
        // 1,000 peers, every message on a fresh link, the clock moving on: state stays bounded.
        var g = SeededGenerator(seed: 4)
        for i in 0..<200_000 {
            let from = g.next() % 1_000
            let to = (from + 1 + g.next() % 999) % 1_000
            _ = net.send(from: p(from), to: p(to), bytes: 1_000, now: at(Int64(i) * 100))
        }
        #expect(net.trackedLinkCount < 10_000)
    }

    @Test(.enabled(if: ProcessInfo.processInfo.environment["SHOAL_BENCH"] == "1"))
    func throughputAmongAThousandPeers() {
        var s = NetworkSettings()
        s.dropProbability = 0.01
        s.duplicateProbability = 0.01
        s.reorderProbability = 0.01
        var net = SimulatedNetwork(settings: s, seed: 1)
        let n = 1_000_000
        var g = SeededGenerator(seed: 2)
        var pairs: [(PeerID, PeerID)] = []
        pairs.reserveCapacity(n)
        for _ in 0..<n {
            let from = g.next() % 1_000
            let to = (from + 1 + g.next() % 999) % 1_000
            pairs.append((p(from), p(to)))
        }
        var checksum: Int64 = 0
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            for i in 0..<n {
                let r = net.send(from: pairs[i].0, to: pairs[i].1, bytes: 1_024, now: at(Int64(i) * 1_000))
                for t in r { checksum &+= t.nanoseconds }
            }
        }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("SimulatedNetwork: \(n) sends among 1,000 peers in \(seconds) s = \(Int(Double(n) / seconds)) sends/s (checksum \(checksum), links tracked \(net.trackedLinkCount))")
        #expect(net.statistics.sent == n)
    }
}

@Suite struct PortableLogTests {
    @Test func matchesTheLibraryLogarithm() {
        var g = SeededGenerator(seed: 1)
        for _ in 0..<100_000 {
            let x = 1 - g.nextUnitDouble()
            let ours = portableLog(x)
            let theirs = Foundation.log(x)
            #expect(abs(ours - theirs) <= 4 * max(abs(theirs), 1e-300).ulp)
        }
        #expect(portableLog(1) == 0)
        #expect(abs(portableLog(0x1p-53) - Foundation.log(0x1p-53)) < 1e-12)
    }

    /// Pins the delivery times of a fixed seed, so a change of the model, of the generator or of
    /// the arithmetic (which would break replay of recorded seeds) is noticed.
    @Test func goldenDeliveryTimes() {
        var s = NetworkSettings()
        s.dropProbability = 0.1
        s.duplicateProbability = 0.1
        s.reorderProbability = 0.1
        var net = SimulatedNetwork(settings: s, seed: 2024)
        var out: [[Int64]] = []
        for i in 0..<8 {
            out.append(net.send(from: PeerID(raw: 1), to: PeerID(raw: 2), bytes: 1_000 * i, now: Instant(nanoseconds: Int64(i) * 1_000)).map(\.nanoseconds))
        }
        #expect(out == [[], [216_653], [310_452], [258_378, 258_882], [209_337], [378_578], [1_766_779], [328_570]])
    }
}
