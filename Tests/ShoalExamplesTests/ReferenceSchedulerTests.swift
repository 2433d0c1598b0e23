import Foundation
import Shoal
import ShoalExamples
import Synchronization
import Testing

/// What the task bodies saw, in the order they saw it: a log behind its own lock, shared with
/// nothing in the scheduler, so its order is the order the bodies really started and ended in.
private final class RunLog: Sendable {
    enum Event: Equatable, Sendable {
        case start(step: Int, point: Int)
        case end(step: Int, point: Int)
    }

    let events = Mutex<[Event]>([])
    /// Kernel iterations between a body's start and its end: a window in which a task run too
    /// early would be seen overlapping its predecessor.
    let work: Int

    init(work: Int) { self.work = work }

    /// The body the scheduler calls: records its start, works a little, records its end.
    static let body: ReferenceScheduler.Body = { context, t, x in
        let log = Unmanaged<RunLog>.fromOpaque(context!).takeUnretainedValue()
        log.events.withLock { $0.append(.start(step: t, point: x)) }
        let out = TaskBench.kernel(iterations: log.work, seed: 1)
        precondition(out.isFinite, "kernel diverged")
        log.events.withLock { $0.append(.end(step: t, point: x)) }
    }

    /// Runs `width × steps` tasks of `pattern` on `workers` threads with this log as the context.
    static func run(_ pattern: TaskBench.Pattern, width: Int, steps: Int, workers: Int, work: Int = 200) async -> [Event] {
        let log = RunLog(work: work)
        await offThePool {
            withExtendedLifetime(log) {
                _ = ReferenceScheduler(
                    pattern: pattern, width: width, steps: steps, workers: workers, body: body,
                    context: Unmanaged.passUnretained(log).toOpaque()
                ).run()
            }
        }
        return log.events.withLock { $0 }
    }
}

/// Runs `work`, which blocks until its scheduler is done, on a thread of its own, so no test holds
/// one of the few cooperative threads that other tests' programs need to go on.
private func offThePool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { c in Thread { c.resume(returning: work()) }.start() }
}

/// Checks a log against a pattern without asking the scheduler anything: every task of the
/// `width × steps` grid started once and ended once, after it started, and after every one of
/// its predecessors ended. The patterns' rules are written out here again: (t, x) reads (t - 1, y)
/// for |x - y| ≤ `reach` (1 for stencil_1d, 0 for no_comm, nil for no reads). Returns what is
/// wrong, empty if nothing.
private func problems(_ events: [RunLog.Event], reach: Int?, width: Int, steps: Int) -> [String] {
    var starts: [Int?] = Array(repeating: nil, count: width * steps)
    var ends: [Int?] = Array(repeating: nil, count: width * steps)
    var found: [String] = []
    for (i, e) in events.enumerated() {
        switch e {
        case .start(let t, let x):
            guard (0..<steps).contains(t) && (0..<width).contains(x) else {
                found.append("task (\(t), \(x)) is outside the grid")
                continue
            }
            if starts[t * width + x] != nil { found.append("task (\(t), \(x)) started twice") }
            starts[t * width + x] = i
        case .end(let t, let x):
            guard (0..<steps).contains(t) && (0..<width).contains(x) else { continue }
            if ends[t * width + x] != nil { found.append("task (\(t), \(x)) ended twice") }
            ends[t * width + x] = i
        }
    }
    for t in 0..<steps {
        for x in 0..<width {
            guard let s = starts[t * width + x], let e = ends[t * width + x] else {
                found.append("task (\(t), \(x)) did not run")
                continue
            }
            if e < s { found.append("task (\(t), \(x)) ended before it started") }
            guard let reach, t > 0 else { continue }
            for y in max(0, x - reach)...min(width - 1, x + reach) {
                if let before = ends[(t - 1) * width + y], before > s {
                    found.append("task (\(t), \(x)) started before its predecessor (\(t - 1), \(y)) ended")
                }
            }
        }
    }
    return found
}

@Suite("ReferenceScheduler: the bare scheduler the Task Bench benchmarks compare the engine with")
struct ReferenceSchedulerTests {
    /// The checker is not vacuous: it finds a task run twice, one not run, and one run before its
    /// predecessor ended.
    @Test func theCheckerCatchesWhatItLooksFor() {
        typealias E = RunLog.Event
        let good: [E] = [.start(step: 0, point: 0), .end(step: 0, point: 0), .start(step: 1, point: 0), .end(step: 1, point: 0)]
        #expect(problems(good, reach: 1, width: 1, steps: 2).isEmpty)
        let early: [E] = [.start(step: 0, point: 0), .start(step: 1, point: 0), .end(step: 0, point: 0), .end(step: 1, point: 0)]
        #expect(problems(early, reach: 1, width: 1, steps: 2) == ["task (1, 0) started before its predecessor (0, 0) ended"])
        // A neighbour counts too: (1, 1) reads (0, 0).
        let neighbour: [E] = [
            .start(step: 0, point: 1), .end(step: 0, point: 1), .start(step: 0, point: 0), .start(step: 1, point: 1),
            .end(step: 0, point: 0), .end(step: 1, point: 1), .start(step: 1, point: 0), .end(step: 1, point: 0),
        ]
        #expect(problems(neighbour, reach: 1, width: 2, steps: 2) == ["task (1, 1) started before its predecessor (0, 0) ended"])
        let twice: [E] = good + [.start(step: 1, point: 0), .end(step: 1, point: 0)]
        #expect(problems(twice, reach: 1, width: 1, steps: 2) == ["task (1, 0) started twice", "task (1, 0) ended twice"])
        #expect(problems(Array(good.prefix(2)), reach: 1, width: 1, steps: 2) == ["task (1, 0) did not run"])
    }

    /// Every stencil_1d task runs once, and only after its (up to) three predecessors ended, at
    /// widths from one point to more points than workers, on one to four workers.
    @Test(arguments: [1, 2, 3, 16, 100], [1, 2, 4])
    func stencilTasksRunOnceAfterTheirPredecessors(width: Int, workers: Int) async {
        let steps = 40
        let events = await RunLog.run(.stencil1d, width: width, steps: steps, workers: workers)
        #expect(events.count == 2 * width * steps)
        let found = problems(events, reach: 1, width: width, steps: steps)
        #expect(found.isEmpty, "\(found.prefix(10))")
    }

    /// no_comm: each point reads itself only, so each point's steps run one after the other.
    @Test(arguments: [1, 5], [1, 3])
    func noCommTasksRunOnceAfterTheirPredecessor(width: Int, workers: Int) async {
        let steps = 60
        let events = await RunLog.run(.noComm, width: width, steps: steps, workers: workers)
        let found = problems(events, reach: 0, width: width, steps: steps)
        #expect(found.isEmpty, "\(found.prefix(10))")
    }

    /// Independent tasks run once each, also when there are more of them than the queue holds (the
    /// calling thread then waits for room).
    @Test(arguments: [(150_000, 1), (7, 20_000)])
    func independentTasksRunOnce(width: Int, steps: Int) async {
        let events = await RunLog.run(.trivial, width: width, steps: steps, workers: 2, work: 0)
        let found = problems(events, reach: nil, width: width, steps: steps)
        #expect(found.isEmpty, "\(found.prefix(10))")
    }

    /// The reference computes what the engine computes: the same kernel on the same inputs gives
    /// the engine's checksum to the bit, so it runs the same dependence pattern and does the same
    /// work per task.
    @Test(arguments: TaskBench.Pattern.allCases, [0, 50])
    func theReferenceComputesTheEnginesChecksum(pattern: TaskBench.Pattern, iterations: Int) async throws {
        let runtime = RuntimeSettings(workers: 2)
        let engine = try await TaskBench.run(pattern: pattern, width: 5, steps: 30, iterations: iterations, runtime: runtime)
        let reference = await offThePool {
            TaskBench.runReference(pattern: pattern, width: 5, steps: 30, iterations: iterations, runtime: runtime)
        }
        #expect(reference.tasks == engine.tasks)
        #expect(reference.checksum == engine.checksum)
        if pattern != .trivial || iterations > 0 { #expect(engine.checksum != 0) }
    }
}
