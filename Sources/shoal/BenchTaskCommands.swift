import ArgumentParser
import Foundation
import Shoal
import ShoalExamples

/// `shoal bench trivial`: independent empty tasks through the whole local path.
struct BenchTrivial: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trivial", abstract: "Empty independent tasks per second through submit, schedule, run, complete.")

    @Option(help: "Tasks per run.") var tasks = 2_000_000
    @Option(help: "Runs (the best and the median are printed).") var runs = 5
    @Option(help: "Worker threads (default: cores).") var workers = ProcessInfo.processInfo.activeProcessorCount

    func run() async throws {
        var rates: [Double] = []
        for i in 1...runs {
            let m = try await TaskBench.run(
                pattern: .trivial, width: tasks, steps: 1, iterations: 0, runtime: RuntimeSettings(workers: workers))
            rates.append(m.tasksPerSecond)
            print("run \(i): \(m.tasks) tasks in \(format(m.seconds * 1000, 1)) ms = \(format(m.tasksPerSecond / 1e6, 2)) M tasks/s")
        }
        rates.sort()
        print("empty tasks/s: best \(format(rates.last! / 1e6, 2)) M, median \(format(rates[rates.count / 2] / 1e6, 2)) M (\(workers) workers)")
    }
}

/// `shoal bench stencil`: Task Bench stencil_1d, a fixed granularity or a METG sweep.
struct BenchStencil: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stencil", abstract: "Task Bench stencil_1d: tasks/s at a granularity, or METG with --metg.")

    @Option(help: "Points per step.") var width = 2
    @Option(help: "Steps.") var steps = 1000
    @Option(help: "Kernel iterations per task (ignored with --metg).") var iterations = 0
    @Flag(help: "Sweep granularity downwards and report METG (Task Bench's minimum effective task granularity).")
    var metg = false
    @Option(help: "Efficiency threshold for METG.") var threshold = 0.5
    @Option(help: "Worker threads (default: cores).") var workers = ProcessInfo.processInfo.activeProcessorCount
    @Option(help: "Pattern: stencil_1d, no_comm, trivial.") var pattern = "stencil_1d"
    @Option(help: "Runs per granularity with --metg (the fastest counts).") var repeats = 3

    func run() async throws {
        guard let p = TaskBench.Pattern(rawValue: pattern) else {
            throw ValidationError("unknown pattern '\(pattern)'; known: \(TaskBench.Pattern.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let runtime = RuntimeSettings(workers: workers)
        if !metg {
            let m = try await TaskBench.run(pattern: p, width: width, steps: steps, iterations: iterations, runtime: runtime)
            print("\(p.rawValue) width \(width) steps \(steps) iterations \(iterations): \(m.tasks) tasks in \(format(m.seconds * 1000, 2)) ms = \(format(m.tasksPerSecond, 0)) tasks/s, \(format(m.seconds * Double(workers) / Double(m.tasks) * 1e6, 2)) µs per task-core")
            return
        }
        print("\(p.rawValue) width \(width) steps \(steps), \(workers) workers; sweeping granularity")
        print("iterations  granularity(µs)  efficiency  tasks/s")
        let r = try await TaskBench.metg(pattern: p, width: width, steps: steps, threshold: threshold, runtime: runtime, repeats: repeats) { pt in
            print("\(String(pt.iterations).padding(toLength: 10, withPad: " ", startingAt: 0))  \(format(pt.granularityMicros, 2).padding(toLength: 15, withPad: " ", startingAt: 0))  \(format(pt.efficiency * 100, 1).padding(toLength: 10, withPad: " ", startingAt: 0))  \(format(pt.tasksPerSecond, 0))")
        }
        print("kernel: \(format(r.nsPerIteration, 3)) ns per iteration")
        if let m = r.metgMicros {
            print("METG(\(Int(threshold * 100))%): \(format(m, 2)) µs")
        } else {
            print("METG(\(Int(threshold * 100))%): not reached (efficiency below threshold at every granularity)")
        }
    }
}

func format(_ x: Double, _ decimals: Int) -> String { String(format: "%.\(decimals)f", x) }

/// `shoal bench memory`: bytes held per pending task.
struct BenchMemory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memory", abstract: "Memory per pending task: a million tasks blocked behind one gate.")

    @Option(help: "Pending tasks.") var tasks = 1_000_000

    func run() async throws {
        for withArguments in [false, true] {
            let r = try await PendingMemoryBench.run(count: tasks, withArguments: withArguments)
            let kind = withArguments ? "tasks with an Int argument" : "tasks without arguments"
            print("\(r.tasks) pending \(kind), each reading one datum: \(format(r.bytesPerTask, 1)) bytes per pending task (resident set growth)")
            print("  submitted in \(format(r.submitSeconds * 1000, 1)) ms (\(format(Double(r.tasks) / r.submitSeconds / 1e6, 2)) M/s), drained in \(format(r.drainSeconds * 1000, 1)) ms (\(format(Double(r.tasks) / r.drainSeconds / 1e6, 2)) M/s)")
        }
    }
}
