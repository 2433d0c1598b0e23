import Foundation
import Shoal
import ShoalCore
import ShoalExamples
import ShoalSimulation
import ShoalTestSupport
import Testing

@testable import shoal

/// A scenario file that must be refused: where, which field, and words the message must contain.
struct BadScenario: Sendable, CustomTestStringConvertible {
    var yaml: String
    var line: Int
    var column: Int
    var field: String?
    var mentions: [String]
    var testDescription: String { "\(field ?? "-"): \(mentions.first ?? "")" }

    init(_ yaml: String, _ line: Int, _ column: Int, _ field: String?, _ mentions: String...) {
        self.yaml = yaml
        self.line = line
        self.column = column
        self.field = field
        self.mentions = mentions
    }
}

/// The first three lines of most bad scenarios: 4 peers for 20 s of virtual time.
private let base = "name: t\npeers: 4\nduration: 20\n"

/// Scenario files are checked before anything runs: every key, name, count and range, with the
/// line, column and field of the problem, like workflow-file errors.
@Suite("Scenario files: bad input is refused before the run")
struct ScenarioValidationTests {
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    // MARK: Through the parser

    /// The reproductions of issue 8, then the class: every key a scenario accepts, out of range.
    static let bad: [BadScenario] = [
        // The issue's reproductions.
        BadScenario(base + "faults:\n  - { at: 5, partition: [[0, 1], [1, 2]] }\n", 5, 35, "faults[0].partition[1][0]",
            "peer 1 is in two groups", "must be disjoint"),
        BadScenario("name: t\npeers: 4\nduration: 1e10\n", 3, 11, "duration", "at most 86400 s", "got 10000000000"),
        BadScenario(base + "faults:\n  - { at: 5, drop: 1.5 }\n", 5, 20, "faults[0].drop", "1.5 is not a probability (0 to 1)"),
        BadScenario(base + "faults:\n  - { at: 25, crash: 1 }\n", 5, 11, "faults[0].at",
            "the fault at 25 s is after the end of the run (duration 20 s)"),
        BadScenario(base + "faults:\n  - { at: 1, crash: 0 }\n  - { at: 2, crash: 1 }\n  - { at: 3, crash: 999 }\n", 7, 21,
            "faults[2].crash", "peer 999 does not exist (the scenario has 4 peers, 0..3)"),
        BadScenario(base + "network: { latencyMicros: -100 }\n", 4, 27, "network.latencyMicros", "must be 0 to 60000000 µs",
            "got -100"),
        BadScenario(base + "foo: 3\n", 4, 1, "foo", "unknown key 'foo'",
            "the keys allowed in a scenario are name, peers, duration, seeds, joinSpread"),

        // Unknown keys at every level, with a suggestion when one is close.
        BadScenario(base + "netwrok: {}\n", 4, 1, "netwrok", "unknown key 'netwrok' (did you mean 'network'?)"),
        BadScenario(base + "network: { latncyMicros: 5 }\n", 4, 12, "network.latncyMicros",
            "did you mean 'latencyMicros'?", "latencyMicros, jitterMicros, bandwidthMbps, drop, duplicate, reorder"),
        BadScenario(base + "faults:\n  - { at: 5, crash: 1 }\n  - { at: 6, restart: 1, keepstore: true }\n", 6, 26,
            "faults[1].keepstore", "did you mean 'keepStore'?"),
        BadScenario(base + "workflows:\n  - { independent: 4, submiter: 1 }\n", 5, 23, "workflows[0].submiter",
            "did you mean 'submitter'?"),
        BadScenario(base + "workflows:\n  - { stencil: { width: 2, step: 3 } }\n", 5, 28, "workflows[0].stencil.step",
            "did you mean 'steps'?"),
        BadScenario(base + "objects: { keys: 1, puts: 1, replica: 3 }\n", 4, 30, "objects.replica", "did you mean 'replicas'?"),

        // Required keys, types, the file's shape.
        BadScenario("peers: 4\nduration: 20\n", 1, 1, "name", "missing 'name'"),
        BadScenario("name: t\nduration: 20\n", 1, 1, "peers", "missing 'peers'"),
        BadScenario("name: t\npeers: 4\n", 1, 1, "duration", "missing 'duration'"),
        BadScenario("name: \"\"\npeers: 4\nduration: 20\n", 1, 7, "name", "expected text"),
        BadScenario("name: t\npeers: many\nduration: 20\n", 2, 8, "peers", "expected a whole number, found 'many'"),
        BadScenario("name: t\npeers: 4.5\nduration: 20\n", 2, 8, "peers", "expected a whole number, found '4.5'"),
        BadScenario("name: t\npeers: \"4\"\nduration: 20\n", 2, 8, "peers", "expected a whole number, found \"4\" (in quotes, so text)"),
        BadScenario("name: t\npeers: 99999999999999999999\nduration: 20\n", 2, 8, "peers", "99999999999999999999 is too large a number"),
        BadScenario("name: t\npeers: 4\nduration: \"20\"\n", 3, 11, "duration", "expected a number, found \"20\" (in quotes, so text)"),
        BadScenario("- name: t\n", 1, 1, nil, "expected a scenario (a mapping of keys to values), found a list"),
        BadScenario("name: t\npeers: 4\nduration: 20\npeers: 5\n", 2, 1, nil, "duplicate key 'peers'"),
        BadScenario("name: t\npeers: [4\n", 3, 1, nil, "YAML syntax error"),

        // Top-level numbers.
        BadScenario("name: t\npeers: 0\nduration: 20\n", 2, 8, "peers", "must be 1 to 100000", "got 0"),
        BadScenario("name: t\npeers: 100001\nduration: 20\n", 2, 8, "peers", "must be 1 to 100000"),
        BadScenario("name: t\npeers: 4\nduration: 0\n", 3, 11, "duration", "must be more than 0"),
        BadScenario("name: t\npeers: 4\nduration: -5\n", 3, 11, "duration", "must be more than 0", "got -5"),
        BadScenario("name: t\npeers: 4\nduration: .inf\n", 3, 11, "duration", "expected a finite number"),
        BadScenario("name: t\npeers: 4\nduration: .nan\n", 3, 11, "duration", "expected a finite number"),
        BadScenario("name: t\npeers: 4\nduration: 0.1\n", 3, 11, "duration", "shorter than one protocol period (200 ms)"),
        BadScenario(base + "protocolPeriodMs: 0\n", 4, 19, "protocolPeriodMs", "must be 1 to 60000 ms"),
        BadScenario(base + "protocolPeriodMs: 30000\n", 3, 11, "duration", "shorter than one protocol period (30000 ms)"),
        BadScenario(base + "seeds: 0\n", 4, 8, "seeds", "must be 1 to 4 (the number of peers)"),
        BadScenario(base + "seeds: 5\n", 4, 8, "seeds", "must be 1 to 4 (the number of peers)", "got 5"),
        BadScenario(base + "joinSpread: -1\n", 4, 13, "joinSpread", "must be 0 to 19.8 s"),
        BadScenario(base + "joinSpread: 20\n", 4, 13, "joinSpread", "before the end of the run"),
        BadScenario(base + "convergeWithin: -1\n", 4, 17, "convergeWithin", "must be 0 to 86400 s"),
        BadScenario(base + "slots: 0\n", 4, 8, "slots", "must be 1 to 4096"),
        BadScenario(base + "slots: 5000\n", 4, 8, "slots", "must be 1 to 4096"),

        // The network.
        BadScenario(base + "network: 5\n", 4, 10, "network", "expected 'network' (a mapping of keys to values), found '5'"),
        BadScenario(base + "network: { jitterMicros: 60000001 }\n", 4, 26, "network.jitterMicros", "must be 0 to 60000000 µs"),
        BadScenario(base + "network: { bandwidthMbps: -1 }\n", 4, 27, "network.bandwidthMbps", "must be 0 (unlimited)"),
        BadScenario(base + "network: { bandwidthMbps: 100000000000 }\n", 4, 27, "network.bandwidthMbps",
            "to 1000000000 Mbit/s"),
        BadScenario(base + "network: { drop: -0.1 }\n", 4, 18, "network.drop", "-0.1 is not a probability"),
        BadScenario(base + "network: { duplicate: 2 }\n", 4, 23, "network.duplicate", "2 is not a probability"),
        BadScenario(base + "network: { reorder: 1.01 }\n", 4, 21, "network.reorder", "1.01 is not a probability"),

        // Faults.
        BadScenario(base + "faults: { at: 1 }\n", 4, 9, "faults", "expected a list of faults, found a mapping"),
        BadScenario(base + "faults:\n  - { crash: 1 }\n", 5, 5, "faults[0].at", "missing 'at'"),
        BadScenario(base + "faults:\n  - { at: -1, crash: 1 }\n", 5, 11, "faults[0].at", "0 or more seconds"),
        BadScenario(base + "faults:\n  - { at: 19.9, crash: 1 }\n", 5, 11, "faults[0].at",
            "leaves less than one protocol period (200 ms) before the end of the run"),
        BadScenario(base + "faults:\n  - { at: 5 }\n", 5, 5, "faults[0]", "this one names none"),
        BadScenario(base + "faults:\n  - { at: 5, crash: 1, drop: 0.1 }\n", 5, 5, "faults[0]",
            "this one names 'crash' and 'drop'", "one entry per fault"),
        BadScenario(base + "faults:\n  - { at: 5, crash: 1, keepStore: true }\n", 5, 24, "faults[0].keepStore",
            "'keepStore' goes with 'restart' only"),
        BadScenario(base + "faults:\n  - { at: 5, restart: 2 }\n", 5, 23, "faults[0].restart",
            "peer 2 is not down at 5 s", "only a crashed peer restarts"),
        BadScenario(base + "faults:\n  - { at: 5, crash: 2 }\n  - { at: 6, crash: 2 }\n", 6, 21, "faults[1].crash",
            "peer 2 is already down at 6 s (it crashed at 5 s"),
        BadScenario(base + "joinSpread: 10\nfaults:\n  - { at: 1, crash: 3 }\n", 6, 21, "faults[0].crash",
            "peer 3 has not started yet at 1 s", "it starts at 7.5 s"),
        BadScenario(base + "faults:\n  - { at: 5, restart: -1 }\n", 5, 23, "faults[0].restart", "peer -1 does not exist"),
        BadScenario(base + "faults:\n  - { at: 5, crash: 1 }\n  - { at: 9, restart: 1, keepStore: maybe }\n", 6, 37,
            "faults[1].keepStore", "expected true or false, found 'maybe'"),
        BadScenario(base + "faults:\n  - { at: 5, split: 1 }\n", 5, 21, "faults[0].split", "must be 2 to 4 groups"),
        BadScenario(base + "faults:\n  - { at: 5, split: 5 }\n", 5, 21, "faults[0].split", "must be 2 to 4 groups", "got 5"),
        BadScenario("name: t\npeers: 1\nduration: 20\nfaults:\n  - { at: 5, split: 2 }\n", 5, 21, "faults[0].split",
            "a split needs at least 2 peers"),
        BadScenario(base + "faults:\n  - { at: 5, partition: [[0, 7]] }\n", 5, 30, "faults[0].partition[0][1]",
            "peer 7 does not exist"),
        BadScenario(base + "faults:\n  - { at: 5, partition: [[0, 0]] }\n", 5, 30, "faults[0].partition[0][1]",
            "peer 0 is listed twice in group 0"),
        BadScenario(base + "faults:\n  - { at: 5, partition: [0, 1] }\n", 5, 26, "faults[0].partition[0]",
            "expected a list of peers, found '0'"),
        BadScenario(base + "faults:\n  - { at: 5, partition: 3 }\n", 5, 25, "faults[0].partition", "expected a list of groups"),
        BadScenario(base + "faults:\n  - { at: 5, heal: false }\n", 5, 20, "faults[0].heal", "'heal: false' is no fault"),
        BadScenario(base + "faults:\n  - { at: 5, duplicate: -0.5 }\n", 5, 25, "faults[0].duplicate", "-0.5 is not a probability"),

        BadScenario(base + "maxHeldBytes: 100\n", 4, 15, "maxHeldBytes", "must be 1024 to 1099511627776 bytes"),

        // Workflows.
        BadScenario(base + "workflows:\n  - { at: 1 }\n", 5, 5, "workflows[0]", "this one names none"),
        BadScenario(base + "workflows:\n  - { independent: 2, crossCorrelation: 2 }\n", 5, 5, "workflows[0]",
            "this one names 'independent' and 'crossCorrelation'"),
        BadScenario(base + "workflows:\n  - { stencil: { width: 0, steps: 3 } }\n", 5, 25, "workflows[0].stencil.width",
            "must be 1 to 10000000 points"),
        BadScenario(base + "workflows:\n  - { stencil: { width: 4 } }\n", 5, 16, "workflows[0].stencil.steps",
            "missing 'steps'"),
        BadScenario(base + "workflows:\n  - { stencil: { width: 10000, steps: 10000 } }\n", 5, 16, "workflows[0].stencil",
            "10000 × 10000 is 100000000 tasks; at most 10000000"),
        BadScenario(base + "workflows:\n  - { independent: 0 }\n", 5, 20, "workflows[0].independent", "must be 1 to 10000000"),
        BadScenario(base + "workflows:\n  - { crossCorrelation: 0 }\n", 5, 25, "workflows[0].crossCorrelation",
            "must be 1 to 100000 fragments"),
        BadScenario(base + "workflows:\n  - { independent: 6000000 }\n  - { independent: 6000000 }\n", 6, 5, "workflows[1]",
            "12000000 tasks", "at most 10000000 in all"),
        BadScenario(base + "workflows:\n  - { independent: 4, submitter: 4 }\n", 5, 34, "workflows[0].submitter",
            "peer 4 does not exist (the scenario has 4 peers, 0..3)"),
        BadScenario(base + "workflows:\n  - { independent: 4, at: 20 }\n", 5, 27, "workflows[0].at",
            "before the end of the run (duration 20 s)"),
        BadScenario(base + "workflows:\n  - { independent: 4, at: -1 }\n", 5, 27, "workflows[0].at", "0 or more"),
        BadScenario(base + "workflows:\n  - { independent: 4, taskMicros: -1 }\n", 5, 35, "workflows[0].taskMicros",
            "must be 0 to 86400000000 µs"),
        BadScenario(base + "workflows:\n  - { independent: 4, bytes: 2147483648 }\n", 5, 30, "workflows[0].bytes",
            "must be 0 to 1073741824 bytes"),

        // Persistent objects.
        BadScenario(base + "objects: { puts: 1 }\n", 4, 10, "objects.keys", "missing 'keys'"),
        BadScenario(base + "objects: { keys: 0, puts: 1 }\n", 4, 18, "objects.keys", "must be 1 to 1000000000"),
        BadScenario(base + "objects: { keys: 1, puts: -1 }\n", 4, 27, "objects.puts", "must be 0 to 10000000"),
        BadScenario(base + "objects: { keys: 1, puts: 1, replicas: 0 }\n", 4, 40, "objects.replicas", "must be 1 to 16"),
        BadScenario(base + "objects: { keys: 1, puts: 1, replicas: 17 }\n", 4, 40, "objects.replicas", "must be 1 to 16"),
        BadScenario(base + "objects: { keys: 1, puts: 1, every: -1 }\n", 4, 37, "objects.every", "must be 0 to 20 s"),
        BadScenario(base + "objects: { keys: 1, puts: 1, start: 30 }\n", 4, 37, "objects.start", "must be 0 to 20 s"),
        BadScenario(base + "objects: { keys: 1, puts: 1000, every: 0.05 }\n", 4, 27, "objects.puts",
            "the last of 1000 puts", "would be at 50.95 s, after the end of the run (duration 20 s)"),
        BadScenario(base + "objects: { keys: 1, puts: 1, bytes: 2147483648 }\n", 4, 37, "objects.bytes",
            "must be 0 to 1073741824 bytes"),
    ]

    @Test(arguments: bad)
    func aBadScenarioIsRefusedWithItsLineAndField(_ bad: BadScenario) throws {
        let error = #expect(throws: ScenarioFileError.self) {
            try ScenarioFile.parse(bad.yaml, file: "bad.yaml", shapes: ExampleTasks.scenarioShapes)
        }
        guard let error else { return }
        #expect(error.line == bad.line && error.column == bad.column, "\(error)")
        #expect(error.field == bad.field, "\(error)")
        let prefix = "bad.yaml:\(bad.line):\(bad.column): " + (bad.field.map { "field '\($0)': " } ?? "")
        #expect(error.description.hasPrefix(prefix), "\(error)")
        for text in bad.mentions {
            #expect(error.description.contains(text), "missing \(text.debugDescription) in: \(error)")
        }
    }

    @Test func anEmptyOrMissingFileIsRefusedInPlainWords() throws {
        let empty = #expect(throws: ScenarioFileError.self) { try ScenarioFile.parse("", file: "e.yaml") }
        #expect(empty?.description == "e.yaml: the file is empty; a scenario has at least 'name', 'peers' and 'duration'")
        let missing = #expect(throws: ScenarioFileError.self) { try ScenarioFile.load(path: "/nonexistent/s.yaml") }
        #expect(missing?.description == "/nonexistent/s.yaml: no such file")
        let folder = #expect(throws: ScenarioFileError.self) { try ScenarioFile.load(path: "/tmp") }
        #expect(folder?.description == "/tmp: is a folder, not a scenario file")
    }

    /// Every scenario in Simulations/ is valid under these rules.
    @Test func everyScenarioOfTheRepositoryIsAccepted() throws {
        let folder = Self.repository.appendingPathComponent("Simulations")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(files.count >= 10)
        for file in files {
            #expect(throws: Never.self, "\(file)") { _ = try ScenarioFile.load(path: folder.appendingPathComponent(file).path, registry: ExampleTasks.registry, shapes: ExampleTasks.scenarioShapes) }
        }
    }

    /// A program shape is the program's own calls, recorded from the example (not written again),
    /// and a scenario read without the examples' shapes does not know its name.
    @Test func theCrossCorrelationShapeIsTheExampleProgramsCalls() throws {
        let shape = try CrossCorrelationWorkflow.scenarioShape.record(3)
        #expect(shape.calls.map(\.task) == ["generateSpikeTrains"] + (0..<3).flatMap { _ in ["ccSurrogateRange", "gather"] })
        // Datum 0 is the trains (the generating task's result), 1 and 2 the matrices, then one
        // result per fragment.
        #expect(shape.dataCount == 6)
        #expect(shape.calls[0].accesses == [.init(0, .out)])
        for f in 0..<3 {
            #expect(shape.calls[1 + 2 * f].accesses == [.init(0, .in), .init(3 + f, .out)])
            #expect(shape.calls[2 + 2 * f].accesses == [.init(3 + f, .in), .init(1, .commutative), .init(2, .commutative)])
        }
        let spec = shape.spec(cost: .milliseconds(4), bytes: 100)
        #expect(spec.tasks.map(\.cost) == [.milliseconds(20)] + (0..<3).flatMap { _ in [Interval.milliseconds(4), .milliseconds(1)] })
        #expect(spec.tasks.map(\.outputBytes) == [400] + (0..<3).flatMap { _ in [UInt64(100), 400] })
        #expect(spec.initialBytes == 400)

        let unknown = #expect(throws: ScenarioFileError.self) {
            try ScenarioFile.parse(base + "workflows:\n  - { crossCorrelation: 2 }\n", file: "s.yaml")
        }
        #expect(unknown?.description.contains("'crossCorrelation'") == true, "\(unknown.map { "\($0)" } ?? "")")
    }

    /// What the file says is what the simulator gets (the values the old decoder produced).
    @Test func aValidScenarioGivesTheSameScenarioAsBefore() throws {
        let s = try ScenarioFile.parse(
            """
            name: all-keys
            peers: 8
            duration: 30
            seeds: 2
            joinSpread: 1.5
            protocolPeriodMs: 100
            convergeWithin: 12
            slots: 2
            network: { latencyMicros: 300, jitterMicros: 40, bandwidthMbps: 100, drop: 0.01, duplicate: 0.02, reorder: 0.03 }
            faults:
              - { at: 9, restart: 3, keepStore: false }
              - { at: 5, crash: 3 }
              - { at: 6, split: 3 }
              - { at: 7, partition: [[0, 1], [2]] }
              - { at: 8, heal: true }
              - { at: 10, drop: 0.2 }
              - { at: 11, duplicate: 0.1 }
            workflows:
              - { stencil: { width: 4, steps: 5 }, at: 2, submitter: 1, taskMicros: 500, bytes: 64 }
              - { independent: 3 }
              - { crossCorrelation: 2, at: 3 }
            objects: { keys: 10, puts: 20, start: 2, every: 0.5, bytes: 128, replicas: 2 }
            """, file: "ok.yaml", shapes: ExampleTasks.scenarioShapes)
        var network = NetworkSettings()
        network.latency = .microseconds(300)
        network.jitter = .microseconds(40)
        network.bandwidthBytesPerSecond = 12_500_000
        network.dropProbability = 0.01
        network.duplicateProbability = 0.02
        network.reorderProbability = 0.03
        func peers(_ ids: Int...) -> [PeerID] { ids.map { PeerID(raw: UInt64($0)) } }
        let expected = Scenario(
            name: "all-keys", peers: 8, durationSeconds: 30, seeds: 2, joinSpreadSeconds: 1.5, network: network,
            protocolPeriodMs: 100,
            faults: FaultPlan([
                ScheduledFault(at: .seconds(9), fault: .restart(peer: PeerID(raw: 3), keepStore: false)),
                ScheduledFault(at: .seconds(5), fault: .crash(peer: PeerID(raw: 3))),
                ScheduledFault(at: .seconds(6), fault: .partition(groups: [peers(0, 1, 2), peers(3, 4, 5), peers(6, 7)])),
                ScheduledFault(at: .seconds(7), fault: .partition(groups: [peers(0, 1), peers(2)])),
                ScheduledFault(at: .seconds(8), fault: .heal),
                ScheduledFault(at: .seconds(10), fault: .setDrop(probability: 0.2)),
                ScheduledFault(at: .seconds(11), fault: .setDuplicate(probability: 0.1)),
            ]),
            convergeWithinSeconds: 12,
            workflows: [
                ScenarioWorkflow(shape: .stencil(width: 4, steps: 5), atSeconds: 2, submitter: 1, taskMicros: 500, bytes: 64),
                ScenarioWorkflow(shape: .independent(count: 3)),
                ScenarioWorkflow(shape: .recorded(try CrossCorrelationWorkflow.scenarioShape.record(2)), atSeconds: 3),
            ],
            slots: 2,
            objects: ObjectWorkload(keys: 10, puts: 20, startSeconds: 2, everySeconds: 0.5, bytes: 128, replicas: 2))
        #expect(s == expected)
    }

    // MARK: Through the real binary

    private func write(_ yaml: String, in dir: ScratchDirectory) throws -> String {
        let path = dir.appending("scenario.yaml").path
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A refused `--output-dir` leaves no trace file behind: every check that makes nothing runs
    /// before the trace file is created.
    @Test func aRefusedOutputFolderLeavesNoTraceFile() throws {
        let dir = try ScratchDirectory("scenario-output")
        defer { dir.remove() }
        let file = dir.appending("a-file").path
        FileManager.default.createFile(atPath: file, contents: Data())
        let trace = dir.appending("trace.json").path
        let r = try ChildProcess.shoal([
            "simulate", "Simulations/file-workflows.yaml", "--trace", trace, "--output-dir", file + "/out",
        ])
        #expect(r.status == 2 && r.stderr.contains("--output-dir"), "stderr: \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: trace), "a refused --output-dir left a trace file")
    }

    /// The issue's reproductions, run by `shoal simulate`: exit 2 and one `error: FILE:LINE:COLUMN:
    /// field '…': …` line, before any simulation (nothing on standard output).
    @Test(arguments: Array(bad.prefix(7)))
    func shoalSimulateRefusesTheIssuesReproductions(_ bad: BadScenario) throws {
        let dir = try ScratchDirectory("scenario-bad")
        defer { dir.remove() }
        let path = try write(bad.yaml, in: dir)
        let trace = dir.appending("trace.json").path
        let r = try ChildProcess.shoal(["simulate", path, "--seed", "1", "--trace", trace])
        #expect(r.status == 2, "stdout: \(r.stdout) stderr: \(r.stderr)")
        #expect(r.stdout.isEmpty, "the simulation ran: \(r.stdout)")
        #expect(!FileManager.default.fileExists(atPath: trace), "a refused scenario left a trace file")
        #expect(
            r.stderr.hasPrefix("error: \(path):\(bad.line):\(bad.column): field '\(bad.field!)': "), "stderr: \(r.stderr)")
        for text in bad.mentions {
            #expect(r.stderr.contains(text), "missing \(text.debugDescription) in: \(r.stderr)")
        }
    }

    @Test func theLargestSeedRunsAndConsecutiveSeedsWrap() throws {
        let dir = try ScratchDirectory("scenario-seed")
        defer { dir.remove() }
        let path = try write("name: small\npeers: 4\nduration: 10\njoinSpread: 1\n", in: dir)
        let trace = dir.appending("trace.json").path
        let one = try ChildProcess.shoal(["simulate", path, "--seed", "18446744073709551615", "--trace", trace])
        #expect(one.status == 0, "stdout: \(one.stdout) stderr: \(one.stderr)")
        #expect(one.stdout.contains("seed 18446744073709551615:"), "\(one.stdout)")
        // The trace path, checked (and created) before the run, gets the trace after it.
        #expect(try String(contentsOfFile: trace, encoding: .utf8).hasPrefix("{\"traceEvents\":["))
        let three = try ChildProcess.shoal(["simulate", path, "--seed", "18446744073709551614", "--seeds", "3", "--swarm"])
        #expect(three.status == 0, "stdout: \(three.stdout) stderr: \(three.stderr)")
        #expect(three.stdout.contains("3 seeds, 3 passed, 0 failed"), "\(three.stdout)")
    }

    /// `shoal simulate` options are checked before the run: exit 2, a plain message, no report.
    @Test(arguments: [
        (["--trace", "/nonexistent-folder/trace.json"], "error: --trace /nonexistent-folder/trace.json: cannot create the file: the folder '/nonexistent-folder' does not exist"),
        (["--trace", "/tmp"], "error: --trace /tmp: is a folder"),
        (["--seeds", "0"], "error: --seeds must be at least 1, got 0"),
        (["--seeds=-3"], "error: --seeds must be at least 1, got -3"),
        (["--trace", "TRACE", "--seeds", "2"], "error: --trace records one run; it cannot be combined with --seeds 2"),
    ])
    func shoalSimulateRefusesBadOptionsBeforeTheRun(_ options: [String], _ message: String) throws {
        let dir = try ScratchDirectory("scenario-options")
        defer { dir.remove() }
        let path = try write("name: small\npeers: 4\nduration: 10\n", in: dir)
        let args = options.map { $0 == "TRACE" ? dir.appending("t.json").path : $0 }
        let r = try ChildProcess.shoal(["simulate", path] + args)
        #expect(r.status == 2, "stdout: \(r.stdout) stderr: \(r.stderr)")
        #expect(r.stdout.isEmpty, "the simulation ran: \(r.stdout)")
        #expect(r.stderr.hasPrefix(message), "stderr: \(r.stderr)")
    }

    /// `shoal bench *` options: a count of 0, a negative or infinite number, an unknown name or a
    /// bad path is refused before any work, with exit 2.
    @Test(arguments: [
        (["bench", "trivial", "--tasks", "0"], "error: --tasks must be 1 to"),
        (["bench", "trivial", "--runs", "0"], "error: --runs must be at least 1, got 0"),
        (["bench", "trivial", "--workers", "0"], "error: --workers must be 1 to"),
        (["bench", "stencil", "--width", "0"], "error: --width must be 1 to"),
        (["bench", "stencil", "--steps=-1"], "error: --steps must be 1 to"),
        (["bench", "stencil", "--width", "1000000000", "--steps", "1000000000"], "error: --width × --steps is"),
        (["bench", "stencil", "--iterations=-1"], "error: --iterations must be 0 or more"),
        (["bench", "stencil", "--threshold", "0"], "error: --threshold must be more than 0 and at most 1"),
        (["bench", "stencil", "--threshold", "1.5"], "error: --threshold must be more than 0 and at most 1"),
        (["bench", "stencil", "--threshold", "nan"], "error: --threshold must be more than 0 and at most 1"),
        (["bench", "stencil", "--repeats", "0"], "error: --repeats must be at least 1"),
        (["bench", "stencil", "--pattern", "stencil1d"], "error: unknown --pattern 'stencil1d'; known: trivial, stencil_1d, no_comm"),
        (["bench", "memory", "--tasks", "0"], "error: --tasks must be 1 to 100000000, got 0"),
        (["bench", "store", "--values", "0"], "error: --values must be 1 to"),
        (["bench", "store", "--batch", "0"], "error: --batch must be at least 1"),
        (["bench", "store", "--value-bytes=-1"], "error: --value-bytes must be 0 to"),
        (["bench", "store", "--data-dir", "/etc/hostname"], "error: the data folder (--data-dir) '/etc/hostname' is a regular file"),
        (["bench", "store", "--data-dir", "/etc/hostname/x"], "error: the data folder (--data-dir) '/etc/hostname/x' cannot be made"),
        (["bench", "simulator", "--peers", "0"], "error: --peers must be 1 to 100000, got 0"),
        (["bench", "simulator", "--peers", "1000000"], "error: --peers must be 1 to 100000"),
        (["bench", "simulator", "--seconds", "inf"], "error: --seconds must be at least 0.2"),
        (["bench", "simulator", "--seconds", "0.1"], "error: --seconds must be at least 0.2"),
        (["bench", "simulator", "--join-spread=-1"], "error: --join-spread must be 0 or more"),
        (["bench", "simulator", "--seed-peers", "0"], "error: --seed-peers must be at least 1"),
        (["bench", "simulator", "--runs", "0"], "error: --runs must be at least 1"),
    ])
    func benchOptionsAreCheckedBeforeAnyWork(_ arguments: [String], _ message: String) throws {
        let r = try ChildProcess.shoal(arguments, timeoutSeconds: 30)
        #expect(r.status == 2, "stdout: \(r.stdout) stderr: \(r.stderr)")
        #expect(r.stdout.isEmpty, "work started: \(r.stdout)")
        #expect(r.stderr.hasPrefix(message), "stderr: \(r.stderr)")
    }
}
