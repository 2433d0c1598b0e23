import Foundation
import Synchronization
import Testing

@testable import Shoal

/// Idle workers spin for `spinMicros`, then sleep. Work that arrives at any moment around the end
/// of that spin must still be run; a lost wake-up shows as a hang, which the time limit turns into
/// a failure.
@Suite("Engine wake-ups", .timeLimit(.minutes(1)))
struct WakeupTests {
    static let increment = TaskDefinition<Int, Int>("increment") { n, _ in n + 1 }
    static let next = TaskDefinition<DataRef<Int>, Int>("next") { ref, context in try context.read(ref) + 1 }

    @Test(arguments: [1, 2, 3])
    func workSubmittedAsWorkersFallAsleepIsNeverStranded(workers: Int) async throws {
        var generator = SystemRandomNumberGenerator()
        var settings = RuntimeSettings(workers: workers)
        settings.spinMicros = 50
        try await Shoal.run(RunOptions(runtime: settings)) { wf in
            for i in 0..<300 {
                // Gaps from 0 to 120 µs straddle the 50 µs spin window.
                usleep(UInt32.random(in: 0...120, using: &generator))
                let r = wf.submit(WakeupTests.increment, i)
                let value = try await wf.wait(on: r)
                #expect(value == i + 1)
            }
        }
    }

    @Test func aChainOfSingleTasksCompletesWithSpinningOff() async throws {
        var settings = RuntimeSettings(workers: 2)
        settings.spinMicros = 0
        try await Shoal.run(RunOptions(runtime: settings)) { wf in
            var x = wf.value(0)
            for _ in 0..<2_000 {
                x = wf.submit(WakeupTests.next, x, .in(x))
            }
            let value = try await wf.wait(on: x)
            #expect(value == 2_000)
        }
    }
}

extension WakeupTests {
    /// A program that submits one task and then works on its own for a while, without calling
    /// Shoal, must see the task run meanwhile: it is not left in the submission buffer.
    @Test(arguments: [0, 50])
    func aLoneSubmissionRunsWhileTheProgramDoesOtherWork(spinMicros: Int) async throws {
        var settings = RuntimeSettings(workers: 2)
        settings.spinMicros = spinMicros
        let ran = Atomic<Int>(0)
        try await Shoal.run(RunOptions(runtime: settings)) { wf in
            for round in 1...50 {
                // Two quick submissions, so the second comes within the idle-flush window.
                wf.submit(name: "first", []) { _ in ran.add(1, ordering: .relaxed) }
                wf.submit(name: "second", []) { _ in ran.add(1, ordering: .relaxed) }
                // The program's own work: no Shoal call for up to 200 ms. (Task.sleep, not usleep:
                // blocking one of the two cooperative threads would starve the other tests.)
                let deadline = ContinuousClock.now + .milliseconds(200)
                while ran.load(ordering: .relaxed) < 2 * round, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .microseconds(100))
                }
                #expect(ran.load(ordering: .relaxed) == 2 * round, "round \(round): a submission was left buffered")
            }
        }
    }
}
