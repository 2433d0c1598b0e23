import ShoalCore
import Testing

import ShoalExamples
@testable import ShoalSimulation

/// Scenario tests of the work protocol: workflows and persistent objects on simulated clusters,
/// with faults. Each names its seed; replay one with `shoal simulate` on an equivalent scenario.
@Suite("Workflow simulation")
struct WorkflowSimulationTests {
    static func peer(_ i: Int) -> PeerID { PeerID(raw: UInt64(i)) }

    static func stencil(peers: Int, width: Int, steps: Int, submitter: Int = 0, at: Double = 2, micros: Int64 = 10_000)
        -> Scenario
    {
        Scenario(
            name: "stencil", peers: peers, durationSeconds: 60, seeds: 2, joinSpreadSeconds: 0.5,
            workflows: [
                ScenarioWorkflow(
                    shape: .stencil(width: width, steps: steps), atSeconds: at, submitter: submitter,
                    taskMicros: micros, bytes: 2_048)
            ])
    }

    static func run(_ scenario: Scenario, seed: UInt64, adjust: (inout PeerSettings) -> Void = { _ in })
        -> SimulationReport
    {
        var simulation = ClusterSimulation(scenario: scenario, seed: seed, adjust: adjust)
        return simulation.run()
    }

    @Test func aStencilSpreadsByStealingAndEndsWithTheSequentialResults() {
        let report = Self.run(Self.stencil(peers: 16, width: 64, steps: 40), seed: 11)
        #expect(report.passed, "seed 11: \(report.violations)")
        let w = report.workflows[0]
        #expect(w.status == .completed && w.resultsMatch == true, "seed 11: \(w)")
        #expect(report.steal.tasksStolen > 1_000, "seed 11: \(report.work)")
        #expect(report.tasksPerPeer.first ?? 0 > 0, "every peer ran tasks, seed 11: \(report.tasksPerPeer)")
        #expect(report.work.bytesFetched > 0)
    }

    @Test func tasksAndDataLostWithACrashedPeerAreRecomputedFromLineage() {
        var scenario = Self.stencil(peers: 12, width: 48, steps: 60)
        scenario.faults = FaultPlan([
            ScheduledFault(at: .milliseconds(3_000), fault: .crash(peer: Self.peer(4))),
            ScheduledFault(at: .milliseconds(3_200), fault: .crash(peer: Self.peer(7))),
        ])
        let report = Self.run(scenario, seed: 12)
        #expect(report.passed, "seed 12: \(report.violations)")
        #expect(report.workflows[0].resultsMatch == true)
        #expect(report.work.tasksRecomputed + report.work.tasksRequeued > 0, "seed 12: \(report.work)")
    }

    /// Also with the record create in parts: 2,560 calls in parts of 100 (`maxRecordPart`).
    @Test(arguments: [WorkSettings().maxRecordPart, 100])
    func theFirstLiveBackupTakesOverWhenTheOwnerDies(maxRecordPart: Int) {
        var scenario = Self.stencil(peers: 10, width: 32, steps: 80, submitter: 3)
        // Submitted at 2 s; the stencil takes about a second (thieves hear of it from offers), so
        // the owner dies in its middle.
        scenario.faults = FaultPlan([ScheduledFault(at: .milliseconds(2_400), fault: .crash(peer: Self.peer(3)))])
        let report = Self.run(scenario, seed: 13) { $0.work.maxRecordPart = maxRecordPart }
        #expect(report.passed, "seed 13: \(report.violations)")
        let w = report.workflows[0]
        #expect(w.status == .completed && w.resultsMatch == true, "seed 13: \(w)")
        #expect(w.owners.count == 2 && w.owners[0] == 3, "seed 13: owners \(w.owners)")
        #expect(report.work.takeovers == 1)
    }

    /// An owner that comes back before anyone declared it dead: with its store it resumes from its
    /// own record; without it, it tells its backups it does not own the workflow, and they take over.
    @Test(arguments: [true, false])
    func anOwnerThatRestartsQuicklyDoesNotStrandItsWorkflow(keepStore: Bool) {
        var scenario = Self.stencil(peers: 8, width: 16, steps: 60, submitter: 3, micros: 20_000)
        scenario.faults = FaultPlan([
            ScheduledFault(at: .milliseconds(3_000), fault: .crash(peer: Self.peer(3))),
            ScheduledFault(at: .milliseconds(3_300), fault: .restart(peer: Self.peer(3), keepStore: keepStore)),
        ])
        let report = Self.run(scenario, seed: 19)
        #expect(report.passed, "seed 19, keepStore \(keepStore): \(report.violations)")
        #expect(report.workflows[0].resultsMatch == true, "seed 19: \(report.workflows[0])")
        if !keepStore { #expect(report.work.takeovers >= 1, "seed 19: \(report.work)") }
    }

    @Test func theCrossCorrelationShapeSurvivesLossAndDuplication() throws {
        var scenario = Scenario(
            name: "cc", peers: 8, durationSeconds: 60, seeds: 2, joinSpreadSeconds: 0.5,
            workflows: [ScenarioWorkflow(shape: .recorded(try CrossCorrelationWorkflow.scenarioShape.record(24)), atSeconds: 2, taskMicros: 100_000)])
        scenario.network.dropProbability = 0.05
        scenario.network.duplicateProbability = 0.05
        scenario.network.reorderProbability = 0.1
        let report = Self.run(scenario, seed: 14)
        #expect(report.passed, "seed 14: \(report.violations)")
        #expect(report.workflows[0].resultsMatch == true)
    }

    @Test func aSubmissionToADownPeerFailsWithAReason() {
        var scenario = Self.stencil(peers: 4, width: 4, steps: 2, submitter: 2, at: 3)
        scenario.faults = FaultPlan([ScheduledFault(at: .seconds(1), fault: .crash(peer: Self.peer(2)))])
        let report = Self.run(scenario, seed: 15)
        #expect(report.passed, "seed 15: \(report.violations)")
        #expect(report.workflows[0].status == .failed)
        #expect(report.workflows[0].reason?.contains("down") == true)
    }

    /// The rule "a result is sent until acknowledged, and the owner audits what it has not heard
    /// of" broken on purpose: one attempt and no audit. On a lossy network some result is lost for
    /// good, and the checker names the workflow that never ended, with the seed to replay. Wide
    /// enough that hundreds of results cross the network (at width 16 the owner ran all but a
    /// score of tasks, and a seed whose few results all arrived, 0.9^27 ≈ 6%, proved nothing).
    @Test func aBrokenResultRuleIsCaughtWithItsSeed() {
        var scenario = Self.stencil(peers: 8, width: 64, steps: 30, micros: 20_000)
        scenario.network.dropProbability = 0.1
        let healthy = Self.run(scenario, seed: 16)
        #expect(healthy.passed, "seed 16: \(healthy.violations)")
        let broken = Self.run(scenario, seed: 16) {
            $0.work.maxResultAttempts = 1
            $0.work.auditInterval = .seconds(10_000)
        }
        #expect(!broken.passed)
        #expect(broken.seed == 16)
        #expect(broken.violations.contains { $0.contains("did not end") }, "\(broken.violations)")
    }

    @Test func persistentObjectsSurviveChurnAndAreReReplicated() {
        var scenario = Scenario(
            name: "objects", peers: 10, durationSeconds: 40, seeds: 2, joinSpreadSeconds: 0.5,
            objects: ObjectWorkload(keys: 40, puts: 120, startSeconds: 2, everySeconds: 0.05, bytes: 4_096))
        scenario.faults = FaultPlan([
            ScheduledFault(at: .seconds(6), fault: .crash(peer: Self.peer(2))),
            ScheduledFault(at: .seconds(8), fault: .restart(peer: Self.peer(2), keepStore: false)),
            ScheduledFault(at: .seconds(12), fault: .crash(peer: Self.peer(5))),
            ScheduledFault(at: .seconds(14), fault: .restart(peer: Self.peer(5), keepStore: true)),
        ])
        let report = Self.run(scenario, seed: 17)
        #expect(report.passed, "seed 17: \(report.violations)")
        let o = report.objects!
        #expect(o.putsAcknowledged > 100 && o.objectsFound == o.objectsAcknowledged, "seed 17: \(o)")
        #expect(o.transfers > 0, "a peer restarted empty is refilled, seed 17: \(o)")
        #expect(report.invariantsChecked.contains { $0.contains("R current replicas") })
    }

    @Test func aWorkflowRunIsByteIdenticalForTheSameSeed() {
        var scenario = Self.stencil(peers: 8, width: 16, steps: 20)
        scenario.network.dropProbability = 0.05
        scenario.network.duplicateProbability = 0.05
        scenario.faults = FaultPlan([ScheduledFault(at: .milliseconds(2_300), fault: .crash(peer: Self.peer(5)))])
        var a = ClusterSimulation(scenario: scenario, seed: 18, recordTrace: true)
        var b = ClusterSimulation(scenario: scenario, seed: 18, recordTrace: true)
        #expect(a.run() == b.run())
        #expect(a.traceJSON == b.traceJSON)
    }

    @Test func swarmSeedsOfWorkflowsAndObjectsHold() {
        var base = Scenario(
            name: "swarm", peers: 8, durationSeconds: 40, seeds: 2, joinSpreadSeconds: 0.5, convergeWithinSeconds: 20,
            workflows: [
                ScenarioWorkflow(shape: .stencil(width: 16, steps: 20), atSeconds: 1.5, submitter: 1, taskMicros: 300_000)
            ], objects: ObjectWorkload(keys: 20, puts: 60, startSeconds: 2, everySeconds: 0.2))
        for seed in UInt64(1)...10 {
            var g = SeededGenerator(seed: seed ^ 0x5357_4152_4D00_0000)
            base.faults = FaultPlan.swarm(
                peers: (0..<8).map(Self.peer), duration: base.duration, generator: &g, intensity: 1)
            let report = Self.run(base, seed: seed)
            #expect(report.passed, "swarm seed \(seed): \(report.violations)")
        }
    }
}
