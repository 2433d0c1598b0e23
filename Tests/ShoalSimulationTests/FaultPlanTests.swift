import Foundation
import ShoalCore
import Testing

@testable import ShoalSimulation

private func p(_ n: UInt64) -> PeerID { PeerID(raw: n) }

@Suite struct FaultPlanTests {
    let peers = (0..<7).map { PeerID(raw: $0) }
    let duration = Interval.seconds(60)

    func swarm(seed: UInt64, intensity: Double = 1, peers: [PeerID]? = nil) -> FaultPlan {
        var g = SeededGenerator(seed: seed)
        return FaultPlan.swarm(peers: peers ?? self.peers, duration: duration, generator: &g, intensity: intensity)
    }

    @Test func planIsSortedAndStableForEqualTimes() {
        let plan = FaultPlan([
            ScheduledFault(at: .seconds(3), fault: .heal),
            ScheduledFault(at: .seconds(1), fault: .crash(peer: p(1))),
            ScheduledFault(at: .seconds(1), fault: .restart(peer: p(1), keepStore: true)),
            ScheduledFault(at: .seconds(2), fault: .partition(groups: [[p(1)], [p(2)]])),
        ])
        #expect(plan.faults.map(\.at) == [.seconds(1), .seconds(1), .seconds(2), .seconds(3)])
        #expect(plan.faults[0].fault == .crash(peer: p(1)))
        var more = plan
        more.add(.setDrop(probability: 0.5), at: .seconds(1))
        #expect(more.faults[2].fault == .setDrop(probability: 0.5))
        #expect(more.faults(from: .seconds(1), to: .seconds(2)).count == 3)
        #expect(more.lastFaultTime == .seconds(3))
    }

    @Test func codableRoundTripKeepsOrder() throws {
        let plan = swarm(seed: 5)
        let data = try JSONEncoder().encode(plan)
        #expect(try JSONDecoder().decode(FaultPlan.self, from: data) == plan)
        // A hand-written, unsorted plan is sorted on decoding.
        let json = #"{"faults":[{"at":{"nanoseconds":20},"fault":{"heal":{}}},{"at":{"nanoseconds":10},"fault":{"setDrop":{"probability":0.25}}}]}"#
        let decoded = try JSONDecoder().decode(FaultPlan.self, from: Data(json.utf8))
        #expect(decoded.faults.map(\.fault) == [.setDrop(probability: 0.25), .heal])
    }

    @Test func swarmIsDeterministicPerSeed() {
        #expect(swarm(seed: 1) == swarm(seed: 1))
        #expect(swarm(seed: 1) != swarm(seed: 2))
        // The order in which peers are listed does not matter.
        #expect(swarm(seed: 3) == swarm(seed: 3, peers: peers.reversed()))
        let distinct = Set((0..<50).map { swarm(seed: $0) })
        #expect(distinct.count == 50)
    }

    @Test func zeroIntensityIsQuiet() {
        #expect(swarm(seed: 1, intensity: 0).isEmpty)
    }

    @Test(arguments: [0.3, 1.0, 3.0])
    func swarmHealsEverythingBeforeSeventyPercent(intensity: Double) {
        for seed in UInt64(0)..<300 {
            let plan = swarm(seed: seed, intensity: intensity)
            #expect(zip(plan.faults, plan.faults.dropFirst()).allSatisfy { $0.at <= $1.at })
            let quiet = Interval(nanoseconds: duration.nanoseconds * 7 / 10)
            #expect(plan.faults.allSatisfy { $0.at >= .zero && $0.at < quiet })

            // Replay: down peers, partition, loss and duplication.
            var down = Set<PeerID>()
            var maxDown = 0
            var partitions = 0
            var network = SimulatedNetwork(settings: NetworkSettings(), seed: 0)
            var sawDrop = false
            var sawDuplicate = false
            for scheduled in plan.faults {
                switch scheduled.fault {
                case .crash(let peer):
                    let wasUp = down.insert(peer).inserted
                    #expect(wasUp, "crash of a down peer")
                    maxDown = max(maxDown, down.count)
                case .restart(let peer, _):
                    let wasDown = down.remove(peer) != nil
                    #expect(wasDown, "restart of a running peer")
                case .partition(let groups):
                    partitions += 1
                    #expect(groups.count == 2 && groups.allSatisfy { !$0.isEmpty })
                    let applied = network.apply(scheduled.fault)
                    #expect(applied)
                case .heal, .setDrop, .setDuplicate:
                    if case .setDrop(let q) = scheduled.fault, q > 0 { sawDrop = true; #expect(q <= 0.5) }
                    if case .setDuplicate(let q) = scheduled.fault, q > 0 { sawDuplicate = true; #expect(q <= 0.5) }
                    let applied = network.apply(scheduled.fault)
                    #expect(applied)
                }
            }
            #expect(down.isEmpty)
            #expect(maxDown <= (peers.count - 1) / 2)
            #expect(partitions == 1)
            #expect(!network.isPartitioned)
            #expect(network.settings.dropProbability == 0 && network.settings.duplicateProbability == 0)
            #expect(sawDrop && sawDuplicate)
        }
    }

    @Test func swarmRestoresTheGivenBaselines() {
        var g = SeededGenerator(seed: 9)
        let plan = FaultPlan.swarm(
            peers: peers, duration: duration, generator: &g, intensity: 1, baselineDrop: 0.01, baselineDuplicate: 0.02)
        var network = SimulatedNetwork(settings: NetworkSettings(), seed: 0)
        for f in plan.faults { network.apply(f.fault) }
        #expect(network.settings.dropProbability == 0.01)
        #expect(network.settings.duplicateProbability == 0.02)
    }

    @Test func swarmCopesWithTinyClusters() {
        #expect(swarm(seed: 1, peers: []).isEmpty)
        let one = swarm(seed: 1, peers: [p(1)])
        #expect(one.faults.allSatisfy {
            if case .crash = $0.fault { return false }
            if case .partition = $0.fault { return false }
            return true
        })
        let two = swarm(seed: 1, peers: [p(1), p(2)])
        #expect(two.faults.contains { $0.fault == .partition(groups: [[p(1)], [p(2)]]) || $0.fault == .partition(groups: [[p(2)], [p(1)]]) })
    }

    @Test func applyLeavesCrashesToTheDriver() {
        var network = SimulatedNetwork(settings: NetworkSettings(), seed: 0)
        let crash = network.apply(.crash(peer: p(1)))
        let restart = network.apply(.restart(peer: p(1), keepStore: false))
        #expect(!crash && !restart)
        let split = network.apply(.partition(groups: [[p(1)], [p(2)]]))
        #expect(split)
        #expect(!network.canReach(p(1), p(2)))
        let healed = network.apply(.heal)
        #expect(healed)
        #expect(network.canReach(p(1), p(2)))
    }
}
