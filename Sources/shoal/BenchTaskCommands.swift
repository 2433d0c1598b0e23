import ArgumentParser
import Foundation
import Shoal
import ShoalExamples

/// `shoal bench trivial`: independent empty tasks through the whole local path, and the same
/// number of empty tasks on the bare `ReferenceScheduler` in the same run, for the ratio that
/// holds from one machine to the next.
struct BenchTrivial: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trivial", abstract: "Empty independent tasks per second through submit, schedule, run, complete.")

    @Option(help: "Tasks per run.") var tasks = 2_000_000
    @Option(help: "Runs (the best and the median are printed).") var runs = 5
    @Option(help: "Worker threads (default: cores).") var workers = ProcessInfo.processInfo.activeProcessorCount

    func validate() throws {
        guard tasks >= 1 && tasks <= benchMaxTasks else {
            throw refuse("--tasks must be 1 to \(benchMaxTasks), got \(tasks)")
        }
        guard runs >= 1 else { throw refuse("--runs must be at least 1, got \(runs)") }
        guard workers >= 1 && workers <= Run.maxWorkers else {
            throw refuse("--workers must be 1 to \(Run.maxWorkers), got \(workers)")
        }
    }

    func run() async throws {
        let runtime = RuntimeSettings(workers: workers)
        var rates: [Double] = []
        var referenceRates: [Double] = []
        var ratios: [Double] = []
        for i in 1...runs {
            let m = try await TaskBench.run(pattern: .trivial, width: tasks, steps: 1, iterations: 0, runtime: runtime)
            rates.append(m.tasksPerSecond)
            print("run \(i): \(m.tasks) tasks in \(format(m.seconds * 1000, 1)) ms = \(format(m.tasksPerSecond / 1e6, 2)) M tasks/s")
            // Right after the engine's run, so both see the machine as it is now.
            let r = TaskBench.runReference(pattern: .trivial, width: tasks, steps: 1, iterations: 0, runtime: runtime)
            referenceRates.append(r.tasksPerSecond)
            ratios.append(m.tasksPerSecond / r.tasksPerSecond)
            print("  reference: \(r.tasks) tasks in \(format(r.seconds * 1000, 1)) ms = \(format(r.tasksPerSecond / 1e6, 2)) M tasks/s; engine/reference \(format(ratios.last!, 2))")
        }
        rates.sort()
        referenceRates.sort()
        ratios.sort()
        print("empty tasks/s: best \(format(rates.last! / 1e6, 2)) M, median \(format(rates[rates.count / 2] / 1e6, 2)) M (\(workers) workers)")
        print("reference: best \(format(referenceRates.last! / 1e6, 2)) M tasks/s, median \(format(referenceRates[referenceRates.count / 2] / 1e6, 2)) M (bare scheduler: one shared queue, the same worker threads, an empty @convention(c) kernel)")
        print("engine/reference: best \(format(ratios.last!, 2)), median \(format(ratios[ratios.count / 2], 2)) (each run's engine figure over the reference's in the same run)")
    }
}

/// `shoal bench stencil`: Task Bench stencil_1d, a fixed granularity or a METG sweep; each beside
/// the bare `ReferenceScheduler` running the same pattern and kernel in the same run.
struct BenchStencil: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stencil", abstract: "Task Bench stencil_1d: tasks/s at a granularity, or METG with --metg.")

    @Option(help: "Points per step.") var width = 2
    @Option(help: "Steps.") var steps = 1000
    @Option(help: "Kernel iterations per task (ignored with --metg).") var iterations = 0
    @Flag(help: "Sweep granularity downwards and report METG (Task Bench's minimum effective task granularity).")
    var metg = false
    @Option(help: "Efficiency threshold for METG (more than 0, at most 1).") var threshold = 0.5
    @Option(help: "Worker threads (default: cores).") var workers = ProcessInfo.processInfo.activeProcessorCount
    @Option(help: "Pattern: \(TaskBench.Pattern.allCases.map(\.rawValue).joined(separator: ", ")).")
    var pattern = "stencil_1d"
    @Option(help: "Runs per granularity with --metg (the fastest counts).") var repeats = 3

    func validate() throws {
        guard TaskBench.Pattern(rawValue: pattern) != nil else {
            throw refuse(
                "unknown --pattern '\(pattern)'; known: \(TaskBench.Pattern.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard width >= 1 && width <= benchMaxTasks else { throw refuse("--width must be 1 to \(benchMaxTasks), got \(width)") }
        guard steps >= 1 && steps <= benchMaxTasks else { throw refuse("--steps must be 1 to \(benchMaxTasks), got \(steps)") }
        guard width * steps <= benchMaxTasks else {  // both at most 10^9: the product fits
            throw refuse("--width × --steps is \(width * steps) tasks; at most \(benchMaxTasks)")
        }
        guard iterations >= 0 else { throw refuse("--iterations must be 0 or more, got \(iterations)") }
        guard threshold > 0 && threshold <= 1 else {
            throw refuse("--threshold must be more than 0 and at most 1, got \(threshold)")
        }
        guard workers >= 1 && workers <= Run.maxWorkers else {
            throw refuse("--workers must be 1 to \(Run.maxWorkers), got \(workers)")
        }
        guard repeats >= 1 else { throw refuse("--repeats must be at least 1, got \(repeats)") }
    }

    func run() async throws {
        let p = TaskBench.Pattern(rawValue: pattern)!  // checked in validate()
        let runtime = RuntimeSettings(workers: workers)
        if !metg {
            let m = try await TaskBench.run(pattern: p, width: width, steps: steps, iterations: iterations, runtime: runtime)
            print("\(p.rawValue) width \(width) steps \(steps) iterations \(iterations): \(m.tasks) tasks in \(format(m.seconds * 1000, 2)) ms = \(format(m.tasksPerSecond, 0)) tasks/s, \(format(m.seconds * Double(workers) / Double(m.tasks) * 1e6, 2)) µs per task-core")
            let r = TaskBench.runReference(pattern: p, width: width, steps: steps, iterations: iterations, runtime: runtime)
            print("reference: \(r.tasks) tasks in \(format(r.seconds * 1000, 2)) ms = \(format(r.tasksPerSecond, 0)) tasks/s; engine/reference \(format(m.tasksPerSecond / r.tasksPerSecond, 2))")
            return
        }
        print("\(p.rawValue) width \(width) steps \(steps), \(workers) workers; sweeping granularity, engine and reference scheduler in turn")
        print("iterations  granularity(µs)  efficiency  tasks/s     reference: granularity(µs)  efficiency  tasks/s     engine/reference")
        let r = try await TaskBench.metg(pattern: p, width: width, steps: steps, threshold: threshold, runtime: runtime, repeats: repeats) { pt in
            let e = pt.engine
            let ref = pt.reference
            print("\(pad(String(e.iterations), 10))  \(pad(format(e.granularityMicros, 2), 15))  \(pad(format(e.efficiency * 100, 1), 10))  \(pad(format(e.tasksPerSecond, 0), 10))  \(pad("", 10)) \(pad(format(ref.granularityMicros, 2), 15))  \(pad(format(ref.efficiency * 100, 1), 10))  \(pad(format(ref.tasksPerSecond, 0), 10))  \(format(e.tasksPerSecond / ref.tasksPerSecond, 2))")
        }
        print("kernel: \(format(r.nsPerIteration, 3)) ns per iteration")
        let label = "METG(\(Int(threshold * 100))%)"
        let notReached = "not reached (efficiency below threshold at every granularity)"
        if let m = r.engineMicros {
            print("\(label): \(format(m, 2)) µs")
        } else {
            print("\(label): \(notReached)")
        }
        let engine = r.engineMicros.map { "\(format($0, 2)) µs" } ?? "not reached"
        let reference = r.referenceMicros.map { "\(format($0, 2)) µs" } ?? "not reached"
        let ratio = r.ratio.map { "ratio \(format($0, 2)) (reference METG / engine METG: the fraction of the bare scheduler's granularity the engine reaches; 1 = as fine-grained)" } ?? "no ratio"
        print("\(label): engine \(engine), reference \(reference), \(ratio)")
        // Efficiency is measured against every worker having a core of its own. When another
        // process holds a core, even the coarsest tasks fall short and the METG figures mean
        // little; the per-granularity ratios above, measured in the same runs, still hold.
        if let coarsest = r.points.first, max(coarsest.engine.efficiency, coarsest.reference.efficiency) < 0.8 {
            print("note: at the coarsest granularity efficiency is only \(format(max(coarsest.engine.efficiency, coarsest.reference.efficiency) * 100, 0))%: the machine is busy (fewer free cores than workers), so METG is unreliable; read the engine/reference column")
        }
    }
}

func format(_ x: Double, _ decimals: Int) -> String { String(format: "%.\(decimals)f", x) }

/// `s` padded with spaces to `width` characters, for a table's column.
func pad(_ s: String, _ width: Int) -> String { s.padding(toLength: max(width, s.count), withPad: " ", startingAt: 0) }

/// `shoal bench memory`: bytes held per pending task.
///
/// Each case runs in a fresh child process of this very binary (`shoal bench memory --case NAME`),
/// so no case can reuse heap a previous case grew and freed. The figure is the growth of the bytes
/// malloc holds in use (glibc `mallinfo2`: `uordblks + hblkhd`, over every arena) while the tasks
/// are submitted, divided by the number of tasks; the resident-set growth of the same process is
/// printed beside it (it counts only the pages touched, and whatever heap the process had already
/// freed and now reuses). Cases: tasks without arguments, with an `Int` argument, with a 32-byte
/// argument; and a reference, a bare Swift array of 64-byte structs measured the same way (it must
/// read 64 bytes per element), for scale and as a check of the method.
struct BenchMemory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memory", abstract: "Memory per pending task: a million tasks blocked behind one gate.",
        discussion: """
            Each case runs in a fresh child process (the same binary, with --case), and is measured as \
            the growth of the bytes malloc holds in use (glibc mallinfo2: uordblks + hblkhd) while the \
            tasks are submitted, divided by the tasks. The resident-set growth is printed beside it, and a \
            bare Swift array of 64-byte structs is measured the same way for reference.
            """)

    /// The cases, in the order they are printed.
    enum Case: String, CaseIterable, Codable, ExpressibleByArgument {
        /// Tasks without arguments (one shared body).
        case none
        /// Tasks with an `Int` argument each (it fits in the task's existential container inline).
        case intArg = "int-arg"
        /// Tasks with a 32-byte argument each (too big to be stored inline: boxed on the heap).
        case structArg = "struct-arg"
        /// Not tasks: a Swift array of 64-byte structs, reserved up front (reads 64 bytes each).
        case reference

        var label: String {
            switch self {
            case .none: "tasks without arguments"
            case .intArg: "tasks with an Int argument"
            case .structArg: "tasks with a 32-byte struct argument"
            case .reference: "reference, a Swift array of 64-byte structs"
            }
        }
    }

    /// What a child reports, as one JSON line.
    struct Figures: Codable {
        var `case`: Case
        var count: Int
        /// Growth of malloc's in-use bytes, and of the resident set, over building `count` items.
        var mallocBytes: Int
        var residentBytes: Int
        var submitSeconds: Double?
        var drainSeconds: Double?

        var mallocPerItem: Double { Double(mallocBytes) / Double(count) }
        var residentPerItem: Double { Double(residentBytes) / Double(count) }
    }

    static let maxTasks = 100_000_000

    @Option(help: "Pending tasks per case (elements, for the reference).") var tasks = 1_000_000
    @Option(help: "The cases to measure, in this order, comma-separated: \(Case.allCases.map(\.rawValue).joined(separator: ", ")).")
    var cases = Case.allCases.map(\.rawValue).joined(separator: ",")
    @Option(
        name: .customLong("case"),
        help: ArgumentHelp(
            "Measure only this case, in this process, and print its figures as JSON (what each child runs).",
            visibility: .hidden))
    var only: Case?

    func validate() throws {
        guard tasks >= 1 && tasks <= Self.maxTasks else {
            throw refuse("--tasks must be 1 to \(Self.maxTasks), got \(tasks)")
        }
        _ = try selectedCases()
    }

    /// `--cases`, parsed; refuses an unknown or empty list.
    func selectedCases() throws -> [Case] {
        let names = cases.split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        let known = Case.allCases.map(\.rawValue).joined(separator: ", ")
        var selected: [Case] = []
        for name in names {
            guard let c = Case(rawValue: name) else {
                throw refuse("unknown case '\(name)' in --cases; known: \(known)")
            }
            selected.append(c)
        }
        return selected
    }

    func run() async throws {
        if let only {
            let figures = only == .reference ? Self.measureReference(count: tasks) : try await Self.measurePending(only, count: tasks)
            let json = try JSONEncoder().encode(figures)
            print(String(decoding: json, as: UTF8.self))
            return
        }
        print("shoal bench memory: \(tasks) pending tasks per case, each reading the output of one gate task that has not run")
        print("method: each case in a fresh process (shoal bench memory --case NAME); bytes malloc holds in use (glibc mallinfo2: uordblks + hblkhd) after the tasks are submitted minus before, / tasks; resident-set growth beside it")
        var results: [Case: Figures] = [:]
        for c in try selectedCases() {
            let figures = try Self.runChild(c, count: tasks)
            results[c] = figures
            let unit = c == .reference ? "bytes per element" : "bytes per pending task"
            var line = "  \(c.label): \(format(figures.mallocPerItem, 1)) \(unit) (malloc in use; resident set \(format(figures.residentPerItem, 1)))"
            if c == .intArg || c == .structArg, let base = results[.none] {
                let extra = ((figures.mallocPerItem - base.mallocPerItem) * 10).rounded() / 10
                line += "; \(extra < 0 ? "" : "+")\(format(extra == 0 ? 0 : extra, 1)) over tasks without arguments"
            }
            if c == .reference { line += "; reads 64 if the method is exact" }
            print(line)
            if let submit = figures.submitSeconds, let drain = figures.drainSeconds {
                print("    submitted in \(format(submit * 1000, 1)) ms (\(format(Double(figures.count) / submit / 1e6, 2)) M/s), drained in \(format(drain * 1000, 1)) ms (\(format(Double(figures.count) / drain / 1e6, 2)) M/s)")
            }
        }
    }

    /// This executable, to run a case in a child process.
    static func executable() -> URL {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        if FileManager.default.isExecutableFile(atPath: exe.path) { return exe }
        return URL(fileURLWithPath: CommandLine.arguments[0])
    }

    /// Runs `shoal bench memory --case C --tasks N` in a fresh process and reads its figures.
    static func runChild(_ c: Case, count: Int) throws -> Figures {
        let process = Process()
        process.executableURL = executable()
        process.arguments = ["bench", "memory", "--case", c.rawValue, "--tasks", String(count)]
        let out = Pipe()
        process.standardOutput = out
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw CommandFailure("the child measuring case '\(c.rawValue)' exited with status \(process.terminationStatus)")
        }
        do {
            return try JSONDecoder().decode(Figures.self, from: data)
        } catch {
            throw CommandFailure(
                "the child measuring case '\(c.rawValue)' printed no figures: \(String(decoding: data, as: UTF8.self))")
        }
    }

    static let noop = TaskDefinition<Empty, Void>("bench.memory.noop") { _ in }
    static let withInt = TaskDefinition<Int, Void>("bench.memory.withInt") { _, _ in }
    struct Argument32: Codable, Sendable {
        var a, b, c, d: Int
    }
    static let withStruct = TaskDefinition<Argument32, Void>("bench.memory.withStruct") { _, _ in }

    /// A gate task blocks; `count` tasks reading its output are submitted (so all are pending) and
    /// the memory sampled before and after; then the gate opens and they drain.
    static func measurePending(_ kind: Case, count: Int) async throws -> Figures {
        let gate = DispatchSemaphore(value: 0)
        let clock = ContinuousClock()
        var figures = Figures(case: kind, count: count, mallocBytes: 0, residentBytes: 0)
        var runtime = RuntimeSettings()
        runtime.maxLiveTasks = max(runtime.maxLiveTasks, count + 1)
        try await Shoal.run(RunOptions(runtime: runtime)) { wf in
            let opened = wf.placeholder(Int.self, name: "gate")
            wf.submit(name: "gate", [.out(opened)]) { context in
                gate.wait()
                try context.setOutput(at: 0, 1)
            }
            wf.flush()
            let before = Memory.sample()
            let start = clock.now
            switch kind {
            case .none:
                for _ in 0..<count { wf.submit(Self.noop, .in(opened)) }
            case .reference:
                preconditionFailure("the reference case measures an array, not pending tasks")
            case .intArg:
                for i in 0..<count { wf.submit(Self.withInt, i, .in(opened)) }
            case .structArg:
                for i in 0..<count { wf.submit(Self.withStruct, Argument32(a: i, b: i, c: i, d: i), .in(opened)) }
            }
            wf.flush()  // every submission is in the graph (handed over synchronously)
            let submitted = clock.now
            let after = Memory.sample()
            figures.submitSeconds = (submitted - start).seconds
            figures.mallocBytes = after.mallocLive - before.mallocLive
            figures.residentBytes = after.rss - before.rss
            let drain = clock.now
            gate.signal()
            try await wf.barrier()
            figures.drainSeconds = (clock.now - drain).seconds
        }
        return figures
    }

    struct Element64 {
        var a, b, c, d, e, f, g, h: Int
    }

    /// `count` 64-byte structs in an array reserved up front, measured as the tasks are.
    static func measureReference(count: Int) -> Figures {
        let before = Memory.sample()
        var array: [Element64] = []
        array.reserveCapacity(count)
        for i in 0..<count { array.append(Element64(a: i, b: i, c: i, d: i, e: i, f: i, g: i, h: i)) }
        let after = Memory.sample()
        withExtendedLifetime(array) {}
        return Figures(
            case: .reference, count: count, mallocBytes: after.mallocLive - before.mallocLive,
            residentBytes: after.rss - before.rss)
    }
}
