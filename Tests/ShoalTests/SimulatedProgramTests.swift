import Foundation
import ShoalCore
import Synchronization
import ShoalExamples
import ShoalSimulation
import Testing

@testable import Shoal

/// Registered tasks of the tests' Swift programs (they run on the simulated peers by name).
private let square = TaskDefinition<DataRef<Int>, Int>("test.square") { x, context in
    let v = try context.read(x)
    return v * v % 10_007
}
private let add = TaskDefinition<[DataRef<Int>], Int>("test.add") { xs, context in
    try xs.reduce(0) { ($0 + (try context.read($1))) % 10_007 }
}
/// Adds its input to a commutative total.
private let accumulate = TaskDefinition<AccumulateArgs, Void>("test.accumulate") { a, context in
    let x = try context.read(a.x)
    try context.update(a.total) { $0 += x }
}
private struct AccumulateArgs: Codable, Sendable {
    var x: DataRef<Int>
    var total: DataRef<Int>
}
private let fails = TaskDefinition<DataRef<Int>, Int>("test.fails") { _, _ in
    throw TaskContextError(task: "test.fails", message: "failed on purpose")
}

/// Not a function of its input: each run counts on (so a cluster's run cannot equal the local one).
private let runs = Atomic<Int>(0)
private let drifts = TaskDefinition<DataRef<Int>, Int>("test.drifts") { x, context in
    try context.read(x) + runs.add(1, ordering: .relaxed).newValue
}

private var registry: TaskRegistry {
    var r = TaskRegistry()
    r.register(drifts)
    r.register(square)
    r.register(add)
    r.register(accumulate)
    r.register(fails)
    return r
}

/// The same Swift program locally and on a simulated cluster with crashes (`Shoal.run(simulated:)`):
/// the cluster's results are the local engine's.
@Suite("Swift programs on a simulated cluster")
struct SimulatedProgramTests {
    static func cluster(seed: UInt64, crashes: [Int] = [3, 5], registry: TaskRegistry = registry) -> SimulatedCluster {
        let faults = crashes.enumerated().map { i, p in
            ScheduledFault(at: .milliseconds(2_300 + 400 * Int64(i)), fault: .crash(peer: PeerID(raw: UInt64(p))))
        }
        let scenario = Scenario(
            name: "program", peers: 8, durationSeconds: 120, seeds: 2, joinSpreadSeconds: 0.5, faults: FaultPlan(faults),
            slots: 2)
        return SimulatedCluster(scenario: scenario, seed: seed, registry: registry, submitter: 1, startSeconds: 2, taskMicros: 50_000)
    }

    /// Submit, wait, decide from the value, submit more: rounds whose width is the value waited for.
    static func program(_ wf: Workflow) async throws -> [Int] {
        var seen: [Int] = []
        var x = wf.value(3)
        let total = wf.value(0)
        for _ in 0..<4 {
            let width = 1 + (try await wf.wait(on: x)) % 5
            seen.append(width)
            var parts: [DataRef<Int>] = []
            for i in 0..<width {
                let v = wf.value(i + width)
                let y = wf.submit(add, [v, x], .in(v), .in(x))
                parts.append(wf.submit(square, y, .in(y)))
                wf.submit(accumulate, AccumulateArgs(x: y, total: total), .in(y), .commutative(total))
            }
            x = parts.dropFirst().reduce(parts[0]) { a, b in wf.submit(add, [a, b], .in(a), .in(b)) }
        }
        try await wf.barrier()
        seen.append(try await wf.wait(on: total))
        seen.append(try await wf.wait(on: x))
        return seen
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func aProgramThatDecidesFromItsValuesGivesTheLocalResultsOnACrashingCluster(seed: UInt64) async throws {
        let local = try await Shoal.run(RunOptions(runtime: RuntimeSettings(workers: 2))) { try await Self.program($0) }
        let (simulated, report) = try await Shoal.run(simulated: Self.cluster(seed: seed)) { try await Self.program($0) }
        #expect(simulated == local, "seed \(seed)")
        #expect(report.passed, "seed \(seed): \(report.violations)")
        #expect(report.workflows.last?.status == .completed, "seed \(seed)")
        // The simulator checked each answer against its own local run of the program.
        #expect(report.workflows.last?.resultsMatch == true, "seed \(seed)")
        #expect(report.steal.tasksStolen > 0, "seed \(seed): tasks ran on other peers")
    }

    @Test func theCrossCorrelationExampleOnACrashingClusterEqualsTheLocalRun() async throws {
        let params = CCParameters(
            neurons: 16, bins: 1_000, rateHz: 10, binMs: 5, maxlag: 20, surrogates: 10, ditherBins: 5, seed: 7,
            fragments: 12, correlatedNeurons: 4, injectedRateHz: 5, injectedLagBins: 2)
        let local = try await Shoal.run(RunOptions(runtime: RuntimeSettings(workers: 2))) { wf in
            try await CrossCorrelationWorkflow.program(wf, params: params)
        }
        // Fragments long enough (0.4 s) for the load gossip to reach the other peers, which steal.
        var cluster = Self.cluster(seed: 4, crashes: [2, 6], registry: ExampleTasks.registry)
        cluster.taskMicros = 400_000
        let (simulated, report) = try await Shoal.run(simulated: cluster) { wf in
            try await CrossCorrelationWorkflow.program(wf, params: params)
        }
        #expect(simulated.result == local.result && simulated.trains == local.trains)
        #expect(report.passed, "seed 4: \(report.violations)")
        #expect(report.work.bytesFetched > 0, "seed 4: values crossed peers: \(report.steal) \(report.work)")
    }

    @Test func aClosureTaskIsRefusedWithAClearError() async throws {
        do {
            _ = try await Shoal.run(simulated: Self.cluster(seed: 1, crashes: [])) { wf in
                let x = wf.value(1)
                wf.submit(name: "inline", [.inout(x)]) { _ in }
                return try await wf.wait(on: x)
            }
            Issue.record("a closure task ran on a cluster")
        } catch {
            #expect("\(error)".contains("closure") && "\(error)".contains("register"), "\(error)")
        }
    }

    @Test func aFailedTaskFailsTheProgramWithItsCause() async throws {
        do {
            _ = try await Shoal.run(simulated: Self.cluster(seed: 1, crashes: [])) { wf in
                let y = wf.submit(fails, wf.value(1))
                return try await wf.wait(on: y)
            }
            Issue.record("a failing task did not fail the program")
        } catch {
            #expect("\(error)".contains("failed on purpose"), "\(error)")
        }
    }

    /// The simulator's checker is the local engine's run of the same program: an answer the
    /// cluster gives that the local run did not is a violation, found without the caller's help.
    @Test func anAnswerThatIsNotTheLocalRunsIsCaughtByTheSimulator() async throws {
        let (_, report) = try await Shoal.run(simulated: Self.cluster(seed: 1, crashes: [])) { wf in
            let x = wf.value(5)
            let a = try await wf.wait(on: wf.submit(square, x, .in(x)))
            let v = wf.value(a)
            return try await wf.wait(on: wf.submit(drifts, v, .in(v))) - a
        }
        #expect(!report.passed)
        #expect(report.workflows.last?.resultsMatch == false)
        #expect(
            report.violations.contains { $0.contains("request 2 of program") && $0.contains("the local run's was") },
            "\(report.violations)")
        // Without the check, nothing is compared.
        var unchecked = Self.cluster(seed: 1, crashes: [])
        unchecked.checkAgainstLocalRun = false
        let (_, plain) = try await Shoal.run(simulated: unchecked) { wf in
            let v = wf.value(1)
            return try await wf.wait(on: wf.submit(drifts, v, .in(v)))
        }
        #expect(plain.passed && plain.workflows.last?.resultsMatch == nil, "\(plain.violations)")
    }

    /// Persistent objects on a simulated cluster hold the program's real bytes on R = 3 replicas:
    /// an object persisted before two of its three replicas crash is opened afterwards with the
    /// same value, which later tasks read; a name never persisted is not found.
    @Test func aProgramPersistsAndOpensObjectsWhoseReplicasCrash() async throws {
        let name = "squares/7"
        let replicas = Rendezvous.replicas(
            of: ObjectKey.of(name: name), among: (0..<8).map { PeerID(raw: UInt64($0)) }, count: 3)
        let doomed = replicas.map { Int($0.raw) }.filter { $0 != 1 }.prefix(2)  // the program runs at p1
        #expect(doomed.count == 2)
        let (result, report) = try await Shoal.run(simulated: Self.cluster(seed: 5, crashes: Array(doomed))) { wf in
            let x = wf.value(7)
            let y = wf.submit(square, x, .in(x))
            try wf.persist(y, as: name)
            // Rounds of work until after both crashes (2.3 s and 2.7 s of virtual time).
            var z = y
            for _ in 0..<16 { z = wf.submit(square, z, .in(z)) }
            _ = try await wf.wait(on: z)
            let opened: DataRef<Int> = try wf.open(name)
            let sum = wf.submit(add, [opened, x], .in(opened), .in(x))
            var missing = false
            do { _ = try wf.open("never persisted") as DataRef<Int> } catch ShoalError.notFound { missing = true }
            return (try await wf.wait(on: sum), missing)
        }
        #expect(result.0 == 49 + 7 && result.1)
        #expect(report.passed, "seed 5: \(report.violations)")
        #expect(report.virtualSeconds > 2.7)
        #expect(report.faultsInjected.count == 2, "\(report.faultsInjected)")
    }

    /// The program's calls reach the owner in batches of at most `maxBatchCalls` while it runs,
    /// not only when it waits.
    @Test func callsStreamToTheOwnerInBoundedBatches() async throws {
        var cluster = Self.cluster(seed: 3, crashes: [])
        cluster.maxBatchCalls = 3
        let (handed, report) = try await Shoal.run(simulated: cluster) { wf in
            var x = wf.value(2)
            for _ in 0..<10 { x = wf.submit(square, x, .in(x)) }
            let handed = wf.statistics.submitted  // before any wait: three full batches
            _ = try await wf.wait(on: x)
            return handed
        }
        #expect(handed == 9)
        #expect(report.passed && report.workflows.last?.resultsMatch == true, "\(report.violations)")
    }
}
