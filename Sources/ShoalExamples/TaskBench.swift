import Foundation
import Shoal

/// Task Bench (Slaughter et al., SC'20) patterns and its compute-bound kernel, on Shoal's local
/// runtime: the whole path (submit, dependency analysis, schedule, execute, complete) is measured.
public enum TaskBench {
    /// A dependence pattern: which points of step t-1 point x of step t reads.
    public enum Pattern: String, Sendable, CaseIterable {
        /// No dependences: `width × steps` independent tasks.
        case trivial
        /// Point x reads x-1, x, x+1 of the previous step.
        case stencil1d = "stencil_1d"
        /// Point x reads x of the previous step.
        case noComm = "no_comm"

        /// The points of the previous step that point x reads, or nil for none. Reads are
        /// symmetric (y reads x exactly when x reads y) and include x itself; the reference
        /// scheduler relies on both to reuse its per-task slots every two steps.
        func inputs(of x: Int, width: Int) -> ClosedRange<Int>? {
            switch self {
            case .trivial: nil
            case .noComm: x...x
            case .stencil1d: max(0, x - 1)...min(width - 1, x + 1)
            }
        }
    }

    /// The compute-bound kernel: `iterations` dependent fused multiply-adds. Returns a value that
    /// depends on every iteration so the work cannot be optimised away.
    @inline(never)
    public static func kernel(iterations: Int, seed: Double) -> Double {
        var a = seed
        let b = 1.000_000_1
        let c = 1e-9
        for _ in 0..<iterations { a = a * b + c }
        return a
    }

    /// Nanoseconds per kernel iteration on one core, measured with a warm loop.
    public static func calibrate() -> Double {
        // Inputs the optimiser cannot see through, so the loop is really run.
        let opaque = Double(DispatchTime.now().uptimeNanoseconds & 1) + 1
        var sink = kernel(iterations: 1_000_000, seed: opaque)
        var best = Double.infinity
        for _ in 0..<5 {
            let n = 20_000_000 + Int(opaque) - 1
            let start = DispatchTime.now().uptimeNanoseconds
            sink += kernel(iterations: n, seed: opaque + sink * 1e-300)
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start)
            best = min(best, elapsed / Double(n))
        }
        precondition(sink.isFinite, "kernel diverged: \(sink)")
        return best
    }

    /// The outcome of one graph execution.
    public struct Measurement: Sendable {
        public var tasks: Int
        public var iterations: Int
        public var seconds: Double
        public var checksum: Double
        public var tasksPerSecond: Double { Double(tasks) / seconds }
    }

    static let point = TaskDefinition<Int, Void>("taskbench.point") { iterations, context in
        var acc = 0.0
        for i in 0..<context.parameterCount where context.direction(at: i).reads {
            acc += try context.input(at: i, as: Double.self)
        }
        let out = kernel(iterations: iterations, seed: acc.truncatingRemainder(dividingBy: 1) + 1)
        for i in 0..<context.parameterCount where context.direction(at: i).writes {
            try context.setOutput(at: i, out)
        }
    }

    static let empty = TaskDefinition<Empty, Void>("taskbench.empty") { _ in }

    /// Runs `pattern` over `width` points and `steps` steps, each task doing `iterations` kernel
    /// iterations, and measures the wall time from the first submission to the last completion.
    public static func run(
        pattern: Pattern, width: Int, steps: Int, iterations: Int, runtime: RuntimeSettings = RuntimeSettings()
    ) async throws -> Measurement {
        precondition(width > 0 && steps > 0 && iterations >= 0, "bad Task Bench shape \(width)x\(steps)/\(iterations)")
        let clock = ContinuousClock()
        var checksum = 0.0
        var elapsed = Duration.zero
        try await Shoal.run(RunOptions(runtime: runtime)) { wf in
            if pattern == .trivial && iterations == 0 {
                let start = clock.now
                for _ in 0..<(width * steps) { wf.submit(empty) }
                try await wf.barrier()
                elapsed = clock.now - start
                return
            }
            // Two buffers, as a sequential program would write it: step t reads `current` and
            // writes `next` (out), so every task of a step reads the previous step's values.
            var current = (0..<width).map { wf.value(Double($0), name: "a\($0)") }
            var next = (0..<width).map { wf.placeholder(Double.self, name: "b\($0)") }
            let start = clock.now
            var params: [DataParameter] = []
            for _ in 0..<steps {
                for x in 0..<width {
                    params.removeAll(keepingCapacity: true)
                    if let r = pattern.inputs(of: x, width: width) {
                        for y in r { params.append(.in(current[y])) }
                    }
                    params.append(.out(next[x]))
                    wf.submit(point, iterations, parameters: params)
                }
                swap(&current, &next)
            }
            let points = current
            for p in points { checksum += try await wf.wait(on: p) }
            elapsed = clock.now - start
        }
        return Measurement(
            tasks: width * steps, iterations: iterations,
            seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18,
            checksum: checksum)
    }

    /// Runs what `run` runs on the bare `ReferenceScheduler` instead of the engine: the same
    /// pattern, the same kernel on the same inputs (the checksum is the engine's, to the bit), an
    /// empty `@convention(c)` body for the trivial pattern without iterations. The values live in
    /// two rows of `Double`s, step t writing row t % 2 as the program's two buffers do (the
    /// scheduler's dependences make that safe: every reader of (t, x) runs before (t + 2, x)).
    /// Blocks the calling thread until the last task ran; `runtime` gives the workers, batch
    /// sizes and spin time, the engine's own.
    public static func runReference(
        pattern: Pattern, width: Int, steps: Int, iterations: Int, runtime: RuntimeSettings = RuntimeSettings()
    ) -> Measurement {
        precondition(width > 0 && steps > 0 && iterations >= 0, "bad Task Bench shape \(width)x\(steps)/\(iterations)")
        let rows = ReferenceRows(pattern: pattern, width: width, steps: steps, iterations: iterations)
        let body: ReferenceScheduler.Body =
            pattern == .trivial && iterations == 0 ? { _, _, _ in } : { rows, t, x in ReferenceRows.point(rows!, t, x) }
        let seconds = withExtendedLifetime(rows) {
            ReferenceScheduler(
                pattern: pattern, width: width, steps: steps, workers: runtime.workers,
                takeBatchMax: runtime.takeBatchMax, submitBatchMax: runtime.submitBatchMax,
                spinMicros: runtime.spinMicros, body: body, context: Unmanaged.passUnretained(rows).toOpaque()
            ).run()
        }
        return Measurement(tasks: width * steps, iterations: iterations, seconds: seconds, checksum: rows.checksum)
    }

    /// The reference's values: what `point` reads and writes through the engine, kept as two rows.
    final class ReferenceRows: @unchecked Sendable {
        let pattern: Pattern
        let width: Int
        let steps: Int
        let iterations: Int
        /// Row `t % 2` holds step t's values; row 1 starts with the initial ones (step -1). Raw
        /// memory, not an array: workers write different points of it at once.
        let values: UnsafeMutablePointer<Double>

        init(pattern: Pattern, width: Int, steps: Int, iterations: Int) {
            self.pattern = pattern
            self.width = width
            self.steps = steps
            self.iterations = iterations
            values = .allocate(capacity: 2 * width)
            for x in 0..<width {
                values[x] = 0
                values[width + x] = Double(x)
            }
        }

        deinit { values.deallocate() }

        /// The sum of the last step's values, as `run` sums the last values it waits on.
        var checksum: Double {
            guard pattern != .trivial || iterations > 0 else { return 0 }
            let row = (steps - 1) % 2 * width
            return (0..<width).reduce(0) { $0 + values[row + $1] }
        }

        /// Task (t, x): `point`'s work. Without dependences steps may run in any order and at
        /// once, so only the last step writes its row; the others' results are consumed unseen.
        static func point(_ context: UnsafeMutableRawPointer, _ t: Int, _ x: Int) {
            let rows = Unmanaged<ReferenceRows>.fromOpaque(context).takeUnretainedValue()
            let width = rows.width
            var acc = 0.0
            if let r = rows.pattern.inputs(of: x, width: width) {
                let previous = (t + 1) % 2 * width
                for y in r { acc += rows.values[previous + y] }
            }
            let out = kernel(iterations: rows.iterations, seed: acc.truncatingRemainder(dividingBy: 1) + 1)
            if rows.pattern == .trivial && t < rows.steps - 1 {
                consume(out)
            } else {
                rows.values[t % 2 * width + x] = out
            }
        }
    }

    /// Keeps a result the optimiser cannot prove unused, so the kernel call that made it stays.
    @inline(never) @_optimize(none)
    static func consume(_ x: Double) {}

    /// One point of a METG sweep.
    public struct EfficiencyPoint: Sendable {
        public var iterations: Int
        /// Wall time × cores / tasks, in microseconds.
        public var granularityMicros: Double
        /// Ideal time (tasks × per-task work / cores) over wall time.
        public var efficiency: Double
        public var tasksPerSecond: Double
    }

    /// One granularity of a METG sweep, on the engine and on the reference scheduler in the same
    /// run (their repeats interleaved, so both see the same noise).
    public struct SweepPoint: Sendable {
        public var engine: EfficiencyPoint
        public var reference: EfficiencyPoint
    }

    /// A METG sweep of the engine beside the reference scheduler.
    public struct METGSweep: Sendable {
        public var engineMicros: Double?
        public var referenceMicros: Double?
        public var points: [SweepPoint]
        public var nsPerIteration: Double

        /// Reference METG / engine METG: the fraction of the bare scheduler's granularity the
        /// engine reaches (1 = as fine-grained as the bare scheduler; 0.5 = its tasks must be twice
        /// as long to be run as efficiently). Nil if either METG was not reached.
        public var ratio: Double? {
            guard let e = engineMicros, let r = referenceMicros, e > 0 else { return nil }
            return r / e
        }
    }

    /// Task Bench's METG: sweeps task granularity downwards and reports the smallest granularity
    /// whose efficiency is still at least `threshold` (interpolated between sweep points), for the
    /// engine and for `ReferenceScheduler` running the same pattern and kernel. The sweep goes on
    /// until both fall below half the threshold.
    public static func metg(
        pattern: Pattern, width: Int, steps: Int, threshold: Double = 0.5, runtime: RuntimeSettings = RuntimeSettings(),
        startIterations: Int = 1 << 16, repeats: Int = 3, progress: (@Sendable (SweepPoint) -> Void)? = nil
    ) async throws -> METGSweep {
        precondition(repeats > 0, "repeats must be positive, got \(repeats)")
        let nsPerIteration = calibrate()
        let cores = Double(runtime.workers)
        func point(_ m: Measurement) -> EfficiencyPoint {
            let ideal = Double(m.tasks) * Double(m.iterations) * nsPerIteration * 1e-9 / cores
            return EfficiencyPoint(
                iterations: m.iterations, granularityMicros: m.seconds * cores / Double(m.tasks) * 1e6,
                efficiency: min(1, ideal / m.seconds), tasksPerSecond: m.tasksPerSecond)
        }
        var points: [SweepPoint] = []
        var iterations = startIterations
        while true {
            // The best of `repeats` runs each: the machine's noise only ever slows a run down.
            var engine: Measurement?
            var reference: Measurement?
            for _ in 0..<repeats {
                let e = try await run(pattern: pattern, width: width, steps: steps, iterations: iterations, runtime: runtime)
                if e.seconds < engine?.seconds ?? .infinity { engine = e }
                let r = runReference(pattern: pattern, width: width, steps: steps, iterations: iterations, runtime: runtime)
                if r.seconds < reference?.seconds ?? .infinity { reference = r }
            }
            let p = SweepPoint(engine: point(engine!), reference: point(reference!))
            points.append(p)
            progress?(p)
            if max(p.engine.efficiency, p.reference.efficiency) < threshold * 0.5 || iterations == 0 { break }
            iterations = iterations > 1 ? iterations / 2 : 0
        }
        return METGSweep(
            engineMicros: metgFromSweep(points.map(\.engine), threshold: threshold),
            referenceMicros: metgFromSweep(points.map(\.reference), threshold: threshold),
            points: points, nsPerIteration: nsPerIteration)
    }

    /// The smallest granularity with efficiency ≥ threshold, interpolating (in log granularity)
    /// between the last point above and the first point below.
    public static func metgFromSweep(_ points: [EfficiencyPoint], threshold: Double) -> Double? {
        let sorted = points.sorted { $0.granularityMicros > $1.granularityMicros }
        guard let lastAbove = sorted.lastIndex(where: { $0.efficiency >= threshold }) else { return nil }
        let a = sorted[lastAbove]
        guard lastAbove + 1 < sorted.count else { return a.granularityMicros }
        let b = sorted[lastAbove + 1]
        guard a.efficiency > b.efficiency else { return a.granularityMicros }
        let f = (a.efficiency - threshold) / (a.efficiency - b.efficiency)
        return exp(log(a.granularityMicros) + f * (log(b.granularityMicros) - log(a.granularityMicros)))
    }
}
