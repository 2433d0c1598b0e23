import ShoalCore
import Testing

@testable import ShoalSimulation

/// Scenario tests: whole clusters in virtual time. A failure names the seed; replay it with
/// `shoal simulate` on the same scenario and seed.
@Suite("Cluster simulation")
struct ClusterSimulationTests {
    static func peers(_ ids: Int...) -> [PeerID] { ids.map { PeerID(raw: UInt64($0)) } }

    static func run(_ scenario: Scenario, seed: UInt64, trace: Bool = false) -> (SimulationReport, String?) {
        var simulation = ClusterSimulation(scenario: scenario, seed: seed, recordTrace: trace)
        let report = simulation.run()
        return (report, simulation.traceJSON)
    }

    @Test func sixteenPeersJoinAndAgree() {
        let scenario = Scenario(name: "join-16", peers: 16, durationSeconds: 10, seeds: 2, joinSpreadSeconds: 1)
        let (report, _) = Self.run(scenario, seed: 1)
        #expect(report.passed, "seed 1: \(report.violations)")
        #expect(report.convergedAfterSeconds != nil)
    }

    @Test func aCrashedPeerIsDeclaredDeadByEveryone() {
        var scenario = Scenario(name: "crash", peers: 12, durationSeconds: 20, seeds: 2, joinSpreadSeconds: 1)
        scenario.faults = FaultPlan([ScheduledFault(at: .seconds(4), fault: .crash(peer: PeerID(raw: 5)))])
        let (report, _) = Self.run(scenario, seed: 2)
        #expect(report.passed, "seed 2: \(report.violations)")
    }

    @Test func aPartitionThatHealsReMerges() {
        var scenario = Scenario(
            name: "partition", peers: 16, durationSeconds: 45, seeds: 2, joinSpreadSeconds: 1,
            convergeWithinSeconds: 30)
        let halves = [Array(0..<8), Array(8..<16)].map { $0.map { PeerID(raw: UInt64($0)) } }
        scenario.faults = FaultPlan([
            ScheduledFault(at: .seconds(4), fault: .partition(groups: halves)),
            ScheduledFault(at: .seconds(12), fault: .heal),
        ])
        let (report, _) = Self.run(scenario, seed: 3)
        #expect(report.passed, "seed 3: \(report.violations)")
    }

    @Test func aRestartedPeerComesBackAlive() {
        var scenario = Scenario(
            name: "restart", peers: 10, durationSeconds: 40, seeds: 2, joinSpreadSeconds: 1, convergeWithinSeconds: 20)
        scenario.faults = FaultPlan([
            ScheduledFault(at: .seconds(4), fault: .crash(peer: PeerID(raw: 4))),
            ScheduledFault(at: .seconds(15), fault: .restart(peer: PeerID(raw: 4), keepStore: true)),
        ])
        let (report, _) = Self.run(scenario, seed: 4)
        #expect(report.passed, "seed 4: \(report.violations)")
    }

    @Test func theSameSeedGivesAByteIdenticalReportAndTrace() {
        var scenario = Scenario(name: "determinism", peers: 20, durationSeconds: 15, seeds: 2, joinSpreadSeconds: 1)
        scenario.network.dropProbability = 0.05
        scenario.network.duplicateProbability = 0.05
        scenario.network.reorderProbability = 0.1
        let (a, traceA) = Self.run(scenario, seed: 77, trace: true)
        let (b, traceB) = Self.run(scenario, seed: 77, trace: true)
        let (c, _) = Self.run(scenario, seed: 78, trace: true)
        #expect(a == b)
        #expect(traceA == traceB)
        #expect(traceA?.isEmpty == false)
        #expect(a.events != c.events || a.network != c.network, "different seeds should give different runs")
    }

    /// A rule broken on purpose (no gossip to the dead: two sides of a healed partition never speak
    /// again) must be caught by the convergence checker, and the report names the seed to replay.
    @Test func aBrokenRuleIsCaughtWithItsSeed() {
        var scenario = Scenario(
            name: "broken", peers: 8, durationSeconds: 40, seeds: 2, joinSpreadSeconds: 1, convergeWithinSeconds: 20)
        let halves = [Array(0..<4), Array(4..<8)].map { $0.map { PeerID(raw: UInt64($0)) } }
        scenario.faults = FaultPlan([
            ScheduledFault(at: .seconds(3), fault: .partition(groups: halves)),
            ScheduledFault(at: .seconds(10), fault: .heal),
        ])
        var healthy = ClusterSimulation(scenario: scenario, seed: 5)
        #expect(healthy.run().passed)
        var broken = ClusterSimulation(scenario: scenario, seed: 5) { $0.membership.deadProbePeriods = 0 }
        let report = broken.run()
        #expect(!report.passed)
        #expect(report.seed == 5)
        #expect(report.violations.first?.contains("never converged") == true, "\(report.violations)")
    }

    /// Swarm testing: the faults themselves drawn from the seed. Every seed must end converged.
    @Test func swarmSeedsConverge() {
        let base = Scenario(
            name: "swarm", peers: 12, durationSeconds: 60, seeds: 2, joinSpreadSeconds: 1, convergeWithinSeconds: 30)
        var failures: [UInt64] = []
        for seed in UInt64(1)...UInt64(SwarmSeeds.count) {
            var scenario = base
            var g = SeededGenerator(seed: seed ^ 0x5357_4152_4D00_0000)
            scenario.faults = FaultPlan.swarm(
                peers: (0..<scenario.peers).map { PeerID(raw: UInt64($0)) }, duration: scenario.duration,
                generator: &g, intensity: 1)
            let (report, _) = Self.run(scenario, seed: seed)
            if !report.passed { failures.append(seed) }
        }
        #expect(failures.isEmpty, "failing swarm seeds (replay: shoal simulate <scenario> --swarm --seed N): \(failures)")
    }
}

/// How many swarm seeds the unit suite replays. CI replays 200 more through the release CLI
/// (`make ci-swarm`), and `make swarm` runs thousands.
enum SwarmSeeds {
    static let count = 40
}
