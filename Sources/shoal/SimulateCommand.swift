import ArgumentParser
import Foundation
import Shoal
import ShoalCore
import ShoalExamples
import ShoalSimulation
import Yams

#if canImport(Glibc)
    import Glibc
#endif

/// `shoal simulate SCENARIO`: a whole cluster in virtual time, deterministic from a seed.
struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Simulate a cluster in virtual time from a scenario file, deterministically from a seed.",
        discussion: """
            Peers run the real protocol machines over a simulated network (latency, bandwidth, loss, \
            duplication, reordering, partitions) with scheduled or --swarm faults. Prints a report; exits 1 \
            with the seed and the command that replays it when an invariant is violated, 2 on a bad scenario \
            or option (checked before anything runs).
            """)

    @Argument(help: "The scenario (YAML), e.g. Simulations/join-storm.yaml.") var scenario: String
    @Option(help: "Seed of everything random in the run (0 to 18446744073709551615).") var seed: UInt64 = 1
    @Flag(help: "Draw the faults themselves from the seed (crashes, restarts, a partition, loss and duplication bursts).")
    var swarm = false
    @Option(help: "Write the timeline as Chrome trace-event JSON (open in Perfetto); one seed only.") var trace: String?
    @Option(
        help: "Run this many consecutive seeds from --seed and summarise (swarm testing); past the largest seed they wrap to 0.")
    var seeds = 1
    @Option(help: "Write each file workflow's outputs to DIR/<workflow name>/<output>, as `shoal run` writes them; one seed only.")
    var outputDir: String?
    @Option(
        help: ArgumentHelp(
            "Time each real body of the file workflows and write FILE: per workflow and task label, the microseconds of its first successful run; one seed only.",
            valueName: "file"))
    var recordCosts: String?
    @Option(
        help: ArgumentHelp(
            "Give each task of a file workflow the cost FILE (written by --record-costs) records for its label, instead of taskMicros.",
            valueName: "file"))
    var costs: String?

    func validate() throws {
        guard seeds >= 1 else { throw refuse("--seeds must be at least 1, got \(seeds)") }
        if trace != nil && seeds != 1 {
            throw refuse("--trace records one run; it cannot be combined with --seeds \(seeds)")
        }
        if outputDir != nil && seeds != 1 {
            throw refuse("--output-dir writes one run's outputs; it cannot be combined with --seeds \(seeds)")
        }
        if recordCosts != nil && seeds != 1 {
            throw refuse("--record-costs times one run; it cannot be combined with --seeds \(seeds)")
        }
    }

    func run() async throws {
        var loaded: Scenario
        do {
            loaded = try ScenarioFile.load(path: scenario, registry: ExampleTasks.registry, shapes: ExampleTasks.scenarioShapes)
        } catch {
            throw refuse("\(error)")
        }
        let programs = loaded.workflows.indices.filter { loaded.workflows[$0].program != nil }
        if let costs { try apply(costs, to: &loaded, programs: programs) }
        if recordCosts != nil && programs.isEmpty {
            throw refuse("--record-costs times the bodies of file workflows; scenario \(scenario) has none")
        }
        // Every check that makes nothing first, then the files the run writes (so bad input
        // leaves no empty file behind), before the run.
        if let outputDir {
            do {
                try WorkflowRunner.checkFolder(outputDir, role: "output folder (--output-dir)")
            } catch {
                throw refuse("\(error)")
            }
        }
        if let trace, let problem = Self.cannotWrite(trace) { throw refuse("--trace \(trace): \(problem)") }
        if let recordCosts, let problem = Self.cannotWrite(recordCosts) {
            throw refuse("--record-costs \(recordCosts): \(problem)")
        }
        // File workflows: their bodies run on real bytes, and the local engine's run of each is
        // the reference their cluster runs are checked against.
        var runner: CallRunner?
        if !programs.isEmpty {
            let work = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("shoal-simulate-\(getpid())")
            defer { WorkflowRunner.removeFolder(work) }
            for w in programs {
                let program = loaded.workflows[w].program!
                let file = try WorkflowFile.load(path: program.source)
                var referenced = program
                try await referenced.recordLocalRun(of: file, registry: ExampleTasks.registry, workDirectory: work)
                loaded.workflows[w].shape = .program(referenced)
            }
            runner = try CallRunner(registry: ExampleTasks.registry)
            if recordCosts != nil { runner?.timings = CallTimings() }
        }
        var failures: [UInt64] = []
        let clock = ContinuousClock()
        let started = clock.now
        var events = 0
        for k in 0..<UInt64(seeds) {
            let s = seed &+ k  // wraps past UInt64.max, as the help says
            var sc = loaded
            if swarm {
                var g = SeededGenerator(seed: s ^ 0x5357_4152_4D00_0000)
                let ids = (0..<sc.peers).map { PeerID(raw: UInt64($0)) }
                sc.faults = FaultPlan.swarm(peers: ids, duration: sc.duration, generator: &g, intensity: 1)
            }
            var simulation = ClusterSimulation(scenario: sc, seed: s, recordTrace: trace != nil, runner: runner)
            let report = simulation.run()
            events += report.events
            if seeds == 1 {
                print(Simulate.describe(report))
                if let recordCosts, let timings = runner?.timings {
                    try write(timings.costs, of: simulation.scenario, programs: programs, seed: s, to: recordCosts)
                }
                if let outputDir { try writeOutputs(of: simulation, programs: programs, to: outputDir) }
                if let trace, let json = simulation.traceJSON {
                    do {
                        // Not atomically: `validate` checked this very file can be written, not
                        // that a temporary file can be made beside it.
                        try json.write(toFile: trace, atomically: false, encoding: .utf8)
                    } catch {
                        printError("error: cannot write the trace to \(trace): \(Self.reason(error))")
                        throw ExitCode(1)
                    }
                    print("trace: \(trace)")
                }
            }
            if !report.passed {
                failures.append(s)
                if seeds > 1 { print("seed \(s): " + report.violations.joined(separator: "; ")) }
            }
        }
        let wall = clock.now - started
        let seconds = wall.seconds
        if seeds > 1 {
            print("\(seeds) seeds, \(seeds - failures.count) passed, \(failures.count) failed; \(events) events in \(String(format: "%.2f", seconds)) s (\(Int(Double(events) / max(seconds, 1e-9))) events/s)")
        } else {
            print(String(format: "wall time %.2f s, %d events/s", seconds, Int(Double(events) / max(seconds, 1e-9))))
        }
        if let first = failures.first {
            printError("invariant violated with seed \(first); replay: shoal simulate \(scenario) --seed \(first)\(swarm ? " --swarm" : "")")
            throw ExitCode(1)
        }
    }

    /// Reads the costs file at `path` (refused, exit 2, if it is malformed) and gives each file
    /// workflow of `scenario` the costs it records under its name; says how many tasks they cover,
    /// and warns of costs that match no task (a typo, or a workflow edited since it was timed).
    func apply(_ path: String, to scenario: inout Scenario, programs: [Int]) throws {
        let table: TaskCosts
        do {
            table = try TaskCosts.load(path: path)
        } catch {
            throw refuse("\(error)")
        }
        guard !programs.isEmpty else {
            throw refuse("--costs \(path) gives the costs of file workflows' tasks; scenario \(self.scenario) has none")
        }
        var covered: [String] = []
        var names: Set<String> = []
        for w in programs {
            var program = scenario.workflows[w].program!
            let name = program.spec.name
            let labels = Set(program.spec.tasks.map(\.label))
            let recorded = table.workflows[name] ?? [:]
            program.costs = recorded.filter { labels.contains($0.key) }
            scenario.workflows[w].shape = .program(program)
            guard names.insert(name).inserted else { continue }
            covered.append("\(program.costs!.count) of \(labels.count) tasks of \(name)")
            let unknown = recorded.keys.filter { !labels.contains($0) }.sorted()
            if !unknown.isEmpty {
                printError("warning: \(path): workflow '\(name)' has no task \(Self.some(unknown)); ignored")
            }
        }
        let unknown = table.workflows.keys.filter { !names.contains($0) }.sorted()
        if !unknown.isEmpty {
            printError("warning: \(path): the scenario has no file workflow \(Self.some(unknown)); ignored")
        }
        print("costs from \(path): " + covered.joined(separator: ", ") + "; the others take their taskMicros")
    }

    /// Up to five quoted names, then how many more.
    static func some(_ names: [String]) -> String {
        let shown = names.prefix(5).map { "'\($0)'" }.joined(separator: ", ")
        return names.count > 5 ? "\(shown) and \(names.count - 5) more" : shown
    }

    /// Writes the costs `timings` measured to `path` (checked writable before the run) and says
    /// how many tasks they cover.
    func write(_ costs: TaskCosts, of scenario: Scenario, programs: [Int], seed: UInt64, to path: String) throws {
        let header = [
            "Task costs recorded by shoal simulate \(self.scenario) --seed \(seed)\(swarm ? " --swarm" : "") --record-costs:",
            "microseconds of each task's first successful run (or of its first attempt, if none succeeded),",
            "by workflow name and task label. Replay: shoal simulate SCENARIO --costs \(path)",
        ]
        do {
            // Not atomically: the file was checked writable before the run (`cannotWrite`).
            try costs.yaml(header: header).write(toFile: path, atomically: false, encoding: .utf8)
        } catch {
            printError("error: cannot write the costs to \(path): \(Self.reason(error))")
            throw ExitCode(1)
        }
        var tasks: [String: Int] = [:]
        for w in programs {
            let spec = scenario.workflows[w].program!.spec
            tasks[spec.name] = spec.tasks.count
        }
        let total = tasks.values.reduce(0, +)
        let timed = costs.entryCount
        print("costs: \(path) (\(timed) of \(total) tasks timed\(timed < total ? "; the others did not run" : ""))")
    }

    /// Writes each completed file workflow's outputs to `dir/<workflow name>/<output>`, as
    /// `shoal run --output-dir` writes them; says which were not written, and why.
    func writeOutputs(of simulation: ClusterSimulation, programs: [Int], to dir: String) throws {
        for w in programs {
            let name = simulation.scenario.workflows[w].program!.spec.name
            let folder = URL(fileURLWithPath: dir).appendingPathComponent(name, isDirectory: true)
            let outputs = simulation.outputs(ofWorkflow: w)
            guard !outputs.isEmpty else {
                print("outputs of \(name): not written (it did not complete)")
                continue
            }
            do {
                try WorkflowRunner.makeFolder(folder.path, role: "output folder (--output-dir)")
                for (output, bytes) in outputs {
                    guard let bytes else {
                        print("output \(name)/\(output): not written (it has no value, or no live peer holds it)")
                        continue
                    }
                    try WorkflowOutputs.write(bytes, to: folder.appendingPathComponent(output).path, name: output)
                }
                print("outputs of \(name): \(folder.path)")
            } catch {
                printError("error: \(error)")
                throw ExitCode(1)
            }
        }
    }

    /// Why `path` cannot be written (opened for writing, created if missing), or nil if it can.
    /// A file this creates is left in place, empty, for the run to fill.
    static func cannotWrite(_ path: String) -> String? {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            return "is a folder; give a file name"
        }
        let fd = open(path, O_WRONLY | O_CREAT, 0o644)
        guard fd >= 0 else {
            let code = errno
            let parent = (path as NSString).deletingLastPathComponent
            if code == ENOENT {
                return "cannot create the file: the folder '\(parent.isEmpty ? "." : parent)' does not exist"
            }
            return "cannot write the file: \(String(cString: strerror(code)))"
        }
        close(fd)
        return nil
    }

    /// A Foundation error in plain words (its POSIX reason where there is one).
    static func reason(_ error: any Error) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return ns.localizedDescription
    }

    static func describe(_ r: SimulationReport) -> String {
        var lines = [
            "scenario \(r.scenario), seed \(r.seed): \(r.peers) peers, \(String(format: "%.1f", r.virtualSeconds)) s of virtual time, \(r.events) events",
            "messages: \(r.network.sent) sent, \(r.network.delivered) delivered, \(r.network.dropped) dropped, \(r.network.duplicated) duplicated, \(r.network.partitioned) cut by partitions; \(r.network.bytesSent) bytes",
            "membership: \(r.statusChanges) status changes; "
                + (r.convergedAfterSeconds.map { String(format: "converged %.2f s after the last fault or join", $0) } ?? "did not converge"),
            "faults injected: \(r.faultsInjected.count)",
        ]
        lines += r.faultsInjected.prefix(20).map { "  \($0)" }
        for w in r.workflows {
            var line = "workflow \(w.name) (\(w.tasks) tasks): \(w.status.rawValue)"
            if let m = w.makespanSeconds { line += String(format: ", makespan %.3f s", m) }
            if let ok = w.resultsMatch { line += ok ? ", results equal the reference run's" : ", RESULTS DIFFER from the reference run's" }
            if let reason = w.reason { line += " (\(reason))" }
            if w.owners.count > 1 { line += ", owners " + w.owners.map { "p\($0)" }.joined(separator: " then ") }
            lines.append(line)
        }
        if !r.workflows.isEmpty {
            let k = r.work
            let t = r.tasksPerPeer
            let perPeer = t.count == 3 ? "least \(t[0]), median \(t[1]), most \(t[2])" : "-"
            lines.append("tasks: \(k.tasksRun) run (per peer: \(perPeer)), \(k.resultsApplied) results applied, \(k.duplicateResults) duplicates discarded, \(k.tasksRecomputed) recomputed from lineage, \(k.tasksRequeued) re-queued")
            lines.append("steals: \(r.steal.stealsTried) tried, \(r.steal.stealsGranted) granted, \(r.steal.tasksStolen) tasks stolen, \(r.steal.timeouts) timed out")
            lines.append("data: \(k.fetches) fetches, \(k.bytesFetched) bytes moved, \(k.corruptTransfers) corrupt transfers caught; \(k.takeovers) owner takeovers")
            if r.corruptPayloads + r.missingPayloads > 0 {
                lines.append("payloads: \(r.corruptPayloads) received with bytes that do not match their digest, \(r.missingPayloads) without their bytes (each dropped, and fetched or sent again)")
            }
            if k.workflowsEndedElsewhere + k.tasksDroppedAfterEnd > 0 {
                lines.append("ended workflows: \(k.workflowsEndedElsewhere) stopped by a second owner when the first ended them, \(k.tasksDroppedAfterEnd) granted or fetching tasks dropped")
            }
        }
        if let o = r.objects {
            lines.append("objects: \(o.putsIssued) puts, \(o.putsAcknowledged) acknowledged, \(o.putsFailed) failed; \(o.objectsFound) of \(o.objectsAcknowledged) acknowledged objects held by a live peer at the end; \(o.transfers) re-replications (\(o.bytesTransferred) bytes), \(o.corruptTransfers) corrupt transfers caught; at most \(o.mostPeersDown) peers down at once")
        }
        // What the machines' bounds refused (printed only when something was: a sound run refuses nothing).
        let dropped = r.membership.messagesDropped + r.steal.messagesDropped + r.work.messagesDropped + r.placement.messagesDropped
        let refused = r.membership.updatesIgnored + r.membership.membersRefused + r.work.recordsRefused + r.work.grantsRefused + r.placement.objectsRefused
        if dropped + refused > 0 {
            lines.append("bounds: \(dropped) messages dropped as out of range (membership \(r.membership.messagesDropped), steal \(r.steal.messagesDropped), work \(r.work.messagesDropped), placement \(r.placement.messagesDropped)); \(r.membership.updatesIgnored) member updates ignored, \(r.membership.membersRefused) members, \(r.work.recordsRefused) backup records, \(r.work.grantsRefused) granted tasks and \(r.placement.objectsRefused) objects refused")
        }
        lines.append("invariants checked: " + r.invariantsChecked.joined(separator: "; "))
        lines.append(r.passed ? "result: all invariants hold" : "result: VIOLATED: " + r.violations.joined(separator: "; "))
        return lines.joined(separator: "\n")
    }
}

