import Foundation
import Shoal
import ShoalTestSupport
import Testing

/// Calibrated costs: `shoal simulate --record-costs FILE` times each real body once, and
/// `shoal simulate --costs FILE` replays those costs as the tasks' virtual run times.
@Suite("shoal simulate --record-costs and --costs")
struct SimulateCostsTests {
    private static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    private static func repoFile(_ path: String) -> String { repository.appendingPathComponent(path).path }
    private static let scenario = repoFile("Simulations/file-workflows.yaml")
    /// The workflow files `Simulations/file-workflows.yaml` runs.
    private static let workflowFiles = ["Examples/workflows/shout-twice.yaml", "Simulations/workflows/letter-census.yaml"]

    /// A report without its wall-time line, the one line a replay may change.
    private static func report(_ stdout: String) -> [Substring] {
        stdout.split(separator: "\n").filter { !$0.hasPrefix("wall time") }
    }

    /// The report's workflow lines (name, status, makespan).
    private static func workflowLines(_ stdout: String) -> [Substring] {
        stdout.split(separator: "\n").filter { $0.hasPrefix("workflow ") }
    }

    @Test func recordedCostsNameEveryTaskAndReplayTheSameRunTwice() throws {
        let dir = try ScratchDirectory("simulate-costs")
        defer { dir.remove() }
        let costs = dir.appending("costs.yaml").path
        let recorded = try ChildProcess.shoal(["simulate", Self.scenario, "--seed", "1", "--record-costs", costs])
        #expect(recorded.status == 0, "stdout: \(recorded.stdout) stderr: \(recorded.stderr)")
        #expect(recorded.stdout.contains("costs: \(costs) ("), "\(recorded.stdout)")
        // Timing the bodies does not change the run: it still advances by taskMicros.
        let plain = try ChildProcess.shoal(["simulate", Self.scenario, "--seed", "1"])
        #expect(plain.status == 0, "stdout: \(plain.stdout) stderr: \(plain.stderr)")
        #expect(Self.report(recorded.stdout).filter { !$0.hasPrefix("costs: ") } == Self.report(plain.stdout))

        let table = try TaskCosts.load(path: costs)
        var coverage: [String] = []
        for file in Self.workflowFiles {
            let workflow = try WorkflowFile.load(path: Self.repoFile(file))
            let labels = Set(workflow.tasks.map(\.name))
            let timed = try #require(table.workflows[workflow.name], "no costs for \(workflow.name) in \(table)")
            #expect(Set(timed.keys) == labels, "\(workflow.name)")
            #expect(timed.values.allSatisfy { $0 > 0 }, "\(workflow.name): \(timed)")
            coverage.append("\(labels.count) of \(labels.count) tasks of \(workflow.name)")
        }
        #expect(table.workflows.count == Self.workflowFiles.count, "\(table.workflows.keys.sorted())")

        let replay = ["simulate", Self.scenario, "--seed", "1", "--costs", costs]
        let first = try ChildProcess.shoal(replay)
        let second = try ChildProcess.shoal(replay)
        #expect(first.status == 0, "stdout: \(first.stdout) stderr: \(first.stderr)")
        #expect(second.status == 0, "stdout: \(second.stdout) stderr: \(second.stderr)")
        #expect(first.stderr.isEmpty, "\(first.stderr)")
        #expect(first.stdout.hasPrefix("costs from \(costs): " + coverage.joined(separator: ", ")), "\(first.stdout)")
        #expect(Self.report(first.stdout) == Self.report(second.stdout))

        let withCosts = Self.workflowLines(first.stdout), withTaskMicros = Self.workflowLines(plain.stdout)
        #expect(withCosts.count == 2 && withTaskMicros.count == 2, "\(first.stdout)\n\(plain.stdout)")
        #expect(withCosts.allSatisfy { $0.contains("completed, makespan") }, "\(withCosts)")
        for (a, b) in zip(withCosts, withTaskMicros) { #expect(a != b, "the costs did not change the makespan: \(a)") }
    }

    /// A malformed or unreadable costs file is refused before the run: exit 2, one message naming
    /// the file (and the line, column and field where there is one), no report, no file written.
    @Test(arguments: [
        ("workflows:\n  shout-twice:\n    shout: -5\n", ":3:12: field 'workflows.shout-twice.shout': must be 0 to 86400000000 µs"),
        ("workflows:\n  shout-twice: { shout: 86400000001 }\n", ":2:25: field 'workflows.shout-twice.shout': must be 0 to"),
        ("workflows:\n  shout-twice: { shout: 2.5 }\n", ":2:25: field 'workflows.shout-twice.shout': expected a whole number"),
        ("workflows:\n  shout-twice: { shout: \"12\" }\n", ":2:25: field 'workflows.shout-twice.shout': expected a whole number"),
        ("workflows:\n  shout-twice: [shout]\n", ":2:16: field 'workflows.shout-twice': expected a mapping of task labels"),
        ("workflow: {}\n", ":1:1: field 'workflow': unknown key 'workflow' (did you mean 'workflows'?)"),
        ("workflows: { a: { x: 1, x: 2 } }\n", ":1:"),
        ("workflows: [\n", ":2:1: YAML syntax error"),
        ("", ": the file is empty"),
        ("NOFILE", ": no such file"),
    ])
    func aMalformedCostsFileIsRefusedBeforeTheRun(_ text: String, _ message: String) throws {
        let dir = try ScratchDirectory("simulate-bad-costs")
        defer { dir.remove() }
        let costs = dir.appending("costs.yaml").path
        if text != "NOFILE" { try text.write(toFile: costs, atomically: true, encoding: .utf8) }
        let record = dir.appending("recorded.yaml").path
        let r = try ChildProcess.shoal(["simulate", Self.scenario, "--costs", costs, "--record-costs", record])
        #expect(r.status == 2, "stdout: \(r.stdout) stderr: \(r.stderr)")
        #expect(r.stdout.isEmpty, "the simulation ran: \(r.stdout)")
        #expect(r.stderr.hasPrefix("error: \(costs)\(message)"), "stderr: \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: record), "a refused run left a costs file")
    }

    @Test(arguments: [
        (["--record-costs", "COSTS", "--seeds", "2"], "error: --record-costs times one run; it cannot be combined with --seeds 2"),
        (["--record-costs", "/nonexistent-folder/costs.yaml"], "error: --record-costs /nonexistent-folder/costs.yaml: cannot create the file"),
    ])
    func recordingOptionsAreCheckedBeforeTheRun(_ options: [String], _ message: String) throws {
        let dir = try ScratchDirectory("simulate-costs-options")
        defer { dir.remove() }
        let args = options.map { $0 == "COSTS" ? dir.appending("costs.yaml").path : $0 }
        let r = try ChildProcess.shoal(["simulate", Self.scenario] + args)
        #expect(r.status == 2, "stdout: \(r.stdout) stderr: \(r.stderr)")
        #expect(r.stdout.isEmpty, "the simulation ran: \(r.stdout)")
        #expect(r.stderr.hasPrefix(message), "stderr: \(r.stderr)")
    }

    @Test func aScenarioWithoutFileWorkflowsRefusesBothOptions() throws {
        let dir = try ScratchDirectory("simulate-costs-none")
        defer { dir.remove() }
        let scenario = dir.appending("small.yaml").path
        try "name: small\npeers: 4\nduration: 10\n".write(toFile: scenario, atomically: true, encoding: .utf8)
        let costs = dir.appending("costs.yaml").path
        try "workflows: {}\n".write(toFile: costs, atomically: true, encoding: .utf8)
        for option in ["--costs", "--record-costs"] {
            let r = try ChildProcess.shoal(["simulate", scenario, option, costs])
            #expect(r.status == 2, "\(option): stdout: \(r.stdout) stderr: \(r.stderr)")
            #expect(r.stderr.contains("has none"), "\(option): \(r.stderr)")
        }
    }

    // MARK: In process

    /// What `--record-costs` writes reads back as it was, whatever the labels look like.
    @Test func theCostsFileRoundTrips() throws {
        let costs = TaskCosts(workflows: [
            "shout-twice": ["shout": 1, "twice": TaskCosts.maxMicros],
            "odd names: ü": ["true": 3, "12": 4, "null": 5, "a: b": 6, "- x": 7, "#hash": 8, String(repeating: "l", count: 200): 9],
            "empty": [:],
        ])
        let text = costs.yaml(header: ["a header line", "and another"])
        #expect(text.hasPrefix("# a header line\n# and another\nworkflows:\n"), "\(text)")
        #expect(try TaskCosts.parse(text, file: "costs.yaml") == costs, "\(text)")
        #expect(try TaskCosts.parse(TaskCosts().yaml(), file: "costs.yaml") == TaskCosts())
    }

    @Test func aCostsFileNamesAtMostAsManyWorkflowsAsAScenarioHas() throws {
        let most = TaskCosts.maxWorkflows
        let text = "workflows:\n" + (0...most).map { "  w\($0): {}\n" }.joined()
        #expect {
            try TaskCosts.parse(text, file: "many.yaml")
        } throws: { error in
            "\(error)".hasPrefix("many.yaml:2:3: field 'workflows': at most \(most) workflows, got \(most + 1)")
        }
    }

    /// A task's recorded cost is that of its first successful run, or of its first attempt while
    /// none has succeeded.
    @Test func timingsKeepTheFirstSuccessfulRun() {
        var t = CallTimings()
        t.record(workflow: "w", label: "a", micros: 100, succeeded: false)
        t.record(workflow: "w", label: "a", micros: 200, succeeded: false)
        t.record(workflow: "w", label: "b", micros: 0, succeeded: false)
        #expect(t.costs.workflows == ["w": ["a": 100, "b": 1]])
        t.record(workflow: "w", label: "a", micros: 300, succeeded: true)
        t.record(workflow: "w", label: "a", micros: 400, succeeded: true)
        t.record(workflow: "w", label: "a", micros: 500, succeeded: false)
        t.record(workflow: "v", label: "a", micros: .max, succeeded: true)
        #expect(t.costs.workflows == ["w": ["a": 300, "b": 1], "v": ["a": TaskCosts.maxMicros]])
        #expect(CallTimings.micros(.nanoseconds(1_001)) == 2 && CallTimings.micros(.seconds(2)) == 2_000_000)
    }
}
