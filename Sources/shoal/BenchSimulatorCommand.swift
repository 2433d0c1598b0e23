import ArgumentParser
import Foundation
import ShoalCore
import ShoalSimulation

#if canImport(Glibc)
    import CMallocInfo
    import Glibc
#endif

/// `shoal bench simulator`: an idle cluster in the simulator. Peers join over a few seconds, the
/// membership converges, then the cluster idles (no faults, no workflows). Prints the simulator's
/// speed and the memory each idle peer costs.
struct BenchSimulator: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulator",
        abstract: "Simulator speed (events/s on one core) and memory per idle peer, for an idle cluster.",
        discussion: """
            Memory per idle peer is measured as the bytes malloc holds live (mallinfo2 uordblks + hblkhd) \
            after the run, with the converged cluster still in memory, minus the same before the cluster was \
            built, divided by the number of peers: it counts the simulator's own structures too (event queue, \
            network). It is also computed from the machines' arrays by capacity, and the resident set growth is \
            printed.
            """)

    @Option(help: "Peers in the cluster.") var peers = 1_000
    @Option(help: "Virtual seconds the cluster runs after the last peer started (convergence, then idle).")
    var seconds: Double = 60
    @Option(name: .customLong("join-spread"), help: "Virtual seconds over which the peers start.")
    var joinSpread: Double = 5
    @Option(name: .customLong("seed-peers"), help: "Peers the others join through.") var seedPeers = 3
    @Option(help: "Seed of the run.") var seed: UInt64 = 1
    @Option(help: "Runs (each prints its figures; the best and the median rate are printed at the end).")
    var runs = 1

    func validate() throws {
        let maxPeers = ScenarioLimits.maxPeers
        let maxSeconds = ScenarioLimits.maxDurationSeconds
        guard peers >= 1 && peers <= maxPeers else { throw refuse("--peers must be 1 to \(maxPeers), got \(peers)") }
        guard joinSpread.isFinite && joinSpread >= 0 && joinSpread < maxSeconds else {
            throw refuse("--join-spread must be 0 or more and less than \(Int(maxSeconds)) s, got \(joinSpread)")
        }
        // Membership is checked once a protocol period (200 ms) after the last start.
        guard seconds.isFinite && seconds >= 0.2 && joinSpread + seconds <= maxSeconds else {
            throw refuse(
                "--seconds must be at least 0.2 (one protocol period) and --join-spread + --seconds at most \(Int(maxSeconds)) (one day of virtual time), got \(seconds)")
        }
        guard seedPeers >= 1 else { throw refuse("--seed-peers must be at least 1, got \(seedPeers)") }
        guard runs >= 1 else { throw refuse("--runs must be at least 1, got \(runs)") }
    }

    func run() throws {
        let scenario = Scenario(
            name: "idle-\(peers)", peers: peers, durationSeconds: joinSpread + seconds, seeds: min(seedPeers, peers),
            joinSpreadSeconds: joinSpread, convergeWithinSeconds: seconds, runToEnd: true)
        print(
            "shoal bench simulator: \(peers) peers joining over \(fmt(joinSpread)) s through \(scenario.seeds) seeds, "
                + "\(fmt(seconds)) s of virtual time after the last start; seed \(seed)")
        var rates: [Double] = []
        for r in 1...runs {
            let before = Memory.sample()
            var simulation = ClusterSimulation(scenario: scenario, seed: seed)
            let clock = ContinuousClock()
            let started = clock.now
            let report = simulation.run()
            let wall = clock.now - started
            let after = Memory.sample()
            let computed = simulation.membershipEstimatedHeapBytes
            let live = simulation.livePeerCount
            withExtendedLifetime(simulation) {}

            let wallSeconds = wall.seconds
            let rate = Double(report.events) / wallSeconds
            rates.append(rate)
            if runs > 1 { print("run \(r):") }
            guard let convergedAfter = report.convergedAfterSeconds else {
                throw CommandFailure("the cluster did not converge: \(report.violations.joined(separator: "; "))")
            }
            print("  converged \(fmt(convergedAfter)) s after the last start; \(live) peers up at the end")
            print(
                "  events: \(grouped(report.events)) in \(String(format: "%.3f", wallSeconds)) s wall = "
                    + "\(grouped(Int(rate))) events/s (one core)")
            let n = Double(peers)
            let measured = Double(after.mallocLive - before.mallocLive) / n
            print(
                "  memory per idle peer: \(kb(measured)) measured (malloc live bytes after minus before, / peers); "
                    + "\(kb(Double(computed) / n)) computed for the membership machine alone (its arrays by capacity)")
            print(
                "  resident set: grew \(mb(Double(after.rss - before.rss))) (\(kb(Double(after.rss - before.rss) / n)) "
                    + "per peer); peak \(mb(Double(after.peakRSS)))")
        }
        let (bare, loaded) = Self.machineFootprints(members: peers)
        print(
            "  one machine with \(peers) members and an empty gossip queue, computed: \(kb(Double(bare))) with no "
                + "load reports; \(kb(Double(loaded))) when every member reports a load")
        if runs > 1 {
            let sorted = rates.sorted()
            print("events/s: best \(grouped(Int(sorted.last!))), median \(grouped(Int(sorted[sorted.count / 2])))")
        }
    }

    /// `Membership.estimatedHeapBytes` of one machine that learned `members` members by a join reply
    /// (so nothing is queued for gossip), without and with a load report from every member.
    static func machineFootprints(members: Int) -> (bare: Int, loaded: Int) {
        func footprint(load: PeerLoad?) -> Int {
            var m = Membership(id: PeerID(raw: 0), seed: 1)
            _ = m.on(.start(seeds: []), now: .zero)
            let view = (1..<max(1, members)).map {
                MemberUpdate(
                    peer: PeerID(raw: UInt64($0)), status: .alive, incarnation: 0, load: load ?? PeerLoad(),
                    loadVersion: load == nil ? 0 : 1)
            }
            _ = m.on(.message(.joinReply(members: view), from: PeerID(raw: 1)), now: .zero)
            return m.estimatedHeapBytes
        }
        let load = PeerLoad(freeSlots: 8, readyTasks: 3, storedBytes: 1 << 30, catalogue: 0xFF)
        return (footprint(load: nil), footprint(load: load))
    }

    private func fmt(_ x: Double) -> String {
        x == x.rounded() ? String(Int(x)) : String(format: "%.2f", x)
    }
    private func kb(_ bytes: Double) -> String { String(format: "%.1f KB", bytes / 1000) }
    private func mb(_ bytes: Double) -> String { String(format: "%.1f MB", bytes / 1e6) }

    private func grouped(_ n: Int) -> String {
        let digits = String(n)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out += "," }
            out.append(c)
        }
        return out
    }
}

/// The process's memory as malloc and the kernel see it.
struct Memory {
    /// Bytes malloc has handed out and not taken back: small chunks (`uordblks`) plus the ones it
    /// mapped on their own (`hblkhd`), over every arena.
    var mallocLive: Int
    /// Resident set size and its peak (VmRSS, VmHWM).
    var rss: Int
    var peakRSS: Int

    static func sample() -> Memory {
        #if canImport(Glibc)
            let info = mallinfo2()
            let live = Int(info.uordblks) + Int(info.hblkhd)
        #else
            let live = 0
        #endif
        var rss = 0
        var peak = 0
        if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) {
            for line in status.split(separator: "\n") {
                let fields = line.split(omittingEmptySubsequences: true) { $0 == " " || $0 == "\t" }
                guard fields.count >= 2, let value = Int(fields[1]) else { continue }
                if fields[0] == "VmRSS:" { rss = value * 1024 }
                if fields[0] == "VmHWM:" { peak = value * 1024 }
            }
        }
        return Memory(mallocLive: live, rss: rss, peakRSS: peak)
    }
}
