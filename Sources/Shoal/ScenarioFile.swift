import Foundation
import ShoalCore
import ShoalSimulation
import Yams

/// Why a scenario file was refused, in the style of workflow-file errors.
public typealias ScenarioFileError = YAMLFileError

/// The YAML form of a scenario, in friendly units. Every key is optional but `name`, `peers` and
/// `duration`; a key not listed here is refused.
///
/// ```yaml
/// name: partition-heals
/// peers: 32               # 1 to 100,000
/// duration: 40            # seconds of virtual time, at most 86,400 (one day)
/// seeds: 2                # peers 0..<seeds are the seeds the others join through (1 to peers)
/// joinSpread: 1           # seconds over which the other peers start (0: a join storm)
/// protocolPeriodMs: 200
/// convergeWithin: 15      # seconds after the last fault by which membership must agree
/// slots: 4                # task slots per peer
/// maxHeldBytes: 4294967296 # bytes of workflow values one peer's shell may hold (1 KiB to 1 TiB)
/// network: { latencyMicros: 200, jitterMicros: 50, bandwidthMbps: 10000, drop: 0, duplicate: 0, reorder: 0 }
/// faults:                 # each names one fault; times in seconds, at least one protocol period before the end
///   - { at: 5, split: 2 }                 # partition the peers into 2 halves by id
///   - { at: 6, partition: [[0, 1], [2, 3]] }   # disjoint groups; peers in no group are cut off
///   - { at: 15, heal: true }
///   - { at: 8, crash: 3 }
///   - { at: 20, restart: 3, keepStore: false }  # only a crashed peer restarts
///   - { at: 10, drop: 0.1 }               # probabilities are 0 to 1
///   - { at: 12, duplicate: 0.05 }
/// workflows:              # each names one shape: stencil, independent, adaptive, file, or a
///                         # program shape the loader is given (`ProgramShape`: the examples'
///                         # crossCorrelation: F, the example program's calls with F fragments)
///   - { adaptive: { rounds: 10, maxWidth: 16 }, at: 1 }   # submits round by round, deciding from what it waits for
///   - { file: ../Examples/workflows/shout-twice.yaml, taskMicros: 2000 }   # real bodies, relative to this file
///   - { stencil: { width: 64, steps: 100 }, at: 3, submitter: 0, taskMicros: 10000, bytes: 4096 }
///     # optional: every 7th task fails its first 2 attempts; 1 retry, then the action
///     # (fail, ignore or cancel-successors)
///     failures: { every: 7, attempts: 2, retries: 1, action: ignore }
/// objects: { keys: 200, puts: 600, start: 2, every: 0.05, bytes: 16384, replicas: 3 }
/// ```
///
/// Every range is in `ScenarioLimits`; faults, submissions and puts must fall inside the run.
public enum ScenarioFile {
    static let topLevelKeys = [
        "name", "peers", "duration", "seeds", "joinSpread", "protocolPeriodMs", "convergeWithin", "slots", "maxHeldBytes", "network",
        "faults", "workflows", "objects",
    ]
    static let networkKeys = ["latencyMicros", "jitterMicros", "bandwidthMbps", "drop", "duplicate", "reorder"]
    static let faultKinds = ["crash", "restart", "split", "partition", "heal", "drop", "duplicate"]
    static let faultKeys = ["at"] + faultKinds + ["keepStore"]
    static let builtinShapes = ["stencil", "independent", "file", "adaptive"]
    static let workflowFields = ["at", "submitter", "taskMicros", "bytes", "failures"]
    static let failureKeys = ["every", "attempts", "retries", "action"]
    static let stencilKeys = ["width", "steps"]
    static let adaptiveKeys = ["rounds", "maxWidth"]
    static let objectKeys = ["keys", "puts", "start", "every", "bytes", "replicas"]

    /// Reads and checks the scenario file at `path`; every problem is a `ScenarioFileError`. A
    /// `file:` workflow's registered tasks must be in `registry` (the tasks the simulated peers
    /// run); a workflow may also name one of `shapes` (real programs, recorded).
    public static func load(
        path: String, registry: TaskRegistry = TaskRegistry(), shapes: [ProgramShape] = []
    ) throws(ScenarioFileError) -> Scenario {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ScenarioFileError(file: path, message: "no such file")
        }
        guard !isDirectory.boolValue else {
            throw ScenarioFileError(file: path, message: "is a folder, not a scenario file")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ScenarioFileError(file: path, message: "cannot read the file (permission denied?)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ScenarioFileError(file: path, message: "is not UTF-8 text")
        }
        return try parse(text, file: path, registry: registry, shapes: shapes)
    }

    /// Checks `text` (the contents of `file`) and builds its scenario.
    public static func parse(
        _ text: String, file: String, registry: TaskRegistry = TaskRegistry(), shapes: [ProgramShape] = []
    ) throws(ScenarioFileError) -> Scenario {
        try ScenarioFileReader(file: file, registry: registry, programShapes: shapes).scenario(text)
    }
}

/// A scenario workflow shape that is a real program's calls (`Shoal.record`), so a scenario
/// plays the program's own DAG with modelled bodies: `name: N` in a scenario's workflows plays
/// `record(N)`. The examples give `crossCorrelation` (`ExampleTasks.scenarioShapes`).
public struct ProgramShape: Sendable {
    /// Its key in a scenario file.
    public var name: String
    /// What N counts, for messages ("fragments").
    public var unit: String
    /// The N a scenario may ask for.
    public var sizes: ClosedRange<Int>
    /// The program's calls for N.
    public var record: @Sendable (Int) throws -> RecordedShape

    public init(name: String, unit: String, sizes: ClosedRange<Int>, record: @escaping @Sendable (Int) throws -> RecordedShape) {
        self.name = name
        self.unit = unit
        self.sizes = sizes
        self.record = record
    }
}

/// Reads a scenario file node by node, so each error can name its line, column and field.
struct ScenarioFileReader {
    let file: String
    /// The tasks a `file:` workflow may call.
    let registry: TaskRegistry
    /// The recorded programs a workflow may name.
    let programShapes: [ProgramShape]
    var shapeNames: [String] { ScenarioFile.builtinShapes + programShapes.map(\.name) }

    typealias Entry = (key: String, keyNode: Node, value: Node)

    /// A mapping's entries, its keys checked against those allowed.
    struct Fields {
        var node: Node
        var field: String?
        var entries: [Entry]

        func has(_ key: String) -> Bool { entries.contains { $0.key == key } }
        /// The value of `key`; nil when absent or written as null (`key:` alone, `~`).
        func value(_ key: String) -> Node? {
            guard let v = entries.first(where: { $0.key == key })?.value, !YAMLDiagnostics.isNull(v) else {
                return nil
            }
            return v
        }
        func path(_ key: String) -> String { field.map { "\($0).\(key)" } ?? key }
    }

    // MARK: Errors and node helpers

    func fail(_ node: Node?, _ field: String?, _ message: String) -> ScenarioFileError {
        ScenarioFileError(file: file, at: node, field: field, message: message)
    }

    /// A number for a message: whole numbers without a fraction, others as written by `%g`.
    static func show(_ x: Double) -> String {
        if x.isFinite && x == x.rounded() && abs(x) < 1e15 { return String(Int64(x)) }
        return String(format: "%g", x)
    }

    func fields(_ node: Node, _ field: String?, allowed: [String], what: String) throws(ScenarioFileError) -> Fields {
        guard case .mapping(let mapping) = node else {
            throw fail(node, field, "expected \(what) (a mapping of keys to values), found \(YAMLDiagnostics.shown(node))")
        }
        var entries: [Entry] = []
        for (k, v) in mapping {
            guard case .scalar(let s) = k else {
                throw fail(k, field, "expected a key, found \(YAMLDiagnostics.shown(k))")
            }
            let key = s.string
            guard allowed.contains(key) else {
                let hint = YAMLDiagnostics.closest(to: key, in: allowed).map { " (did you mean '\($0)'?)" } ?? ""
                let path = field.map { "\($0).\(key)" } ?? key
                throw fail(
                    k, path, "unknown key '\(key)'\(hint); the keys allowed in \(what) are \(allowed.joined(separator: ", "))")
            }
            entries.append((key, k, v))
        }
        return Fields(node: node, field: field, entries: entries)
    }

    func require(_ f: Fields, _ key: String, what: String) throws(ScenarioFileError) -> Node {
        guard let entry = f.entries.first(where: { $0.key == key }) else {
            throw fail(f.node, f.path(key), "missing '\(key)' (\(what))")
        }
        return entry.value
    }

    func string(_ node: Node, _ field: String) throws(ScenarioFileError) -> String {
        guard case .scalar(let s) = node, !YAMLDiagnostics.isNull(node), !s.string.isEmpty else {
            throw fail(node, field, "expected text, found \(YAMLDiagnostics.shown(node))")
        }
        return s.string
    }

    func int(_ node: Node, _ field: String) throws(ScenarioFileError) -> Int {
        guard case .scalar(let s) = node, !YAMLDiagnostics.isNull(node), let v = Int.construct(from: s) else {
            if case .scalar(let s) = node, s.style == .plain,
                s.string.drop(while: { $0 == "-" || $0 == "+" }).allSatisfy({ $0.isASCII && ($0.isNumber || $0 == "_") }),
                s.string.contains(where: \.isNumber)
            {
                throw fail(node, field, "\(s.string) is too large a number")
            }
            throw fail(node, field, "expected a whole number, found \(YAMLDiagnostics.shown(node))")
        }
        return v
    }

    /// A whole number in `range`; `rule` says the range in words ("must be 1 to 16").
    func int(_ node: Node, _ field: String, _ range: ClosedRange<Int>, _ rule: String) throws(ScenarioFileError) -> Int {
        let v = try int(node, field)
        guard range.contains(v) else { throw fail(node, field, "\(rule), got \(v)") }
        return v
    }

    func number(_ node: Node, _ field: String) throws(ScenarioFileError) -> Double {
        guard case .scalar(let s) = node, !YAMLDiagnostics.isNull(node), let v = Double.construct(from: s) else {
            throw fail(node, field, "expected a number, found \(YAMLDiagnostics.shown(node))")
        }
        guard v.isFinite else { throw fail(node, field, "expected a finite number, found \(YAMLDiagnostics.shown(node))") }
        return v
    }

    /// A finite number in `range`; `rule` says the range in words.
    func number(_ node: Node, _ field: String, _ range: ClosedRange<Double>, _ rule: String) throws(ScenarioFileError)
        -> Double
    {
        let v = try number(node, field)
        guard range.contains(v) else { throw fail(node, field, "\(rule), got \(Self.show(v))") }
        return v
    }

    func probability(_ node: Node, _ field: String) throws(ScenarioFileError) -> Double {
        let v = try number(node, field)
        guard v >= 0 && v <= 1 else { throw fail(node, field, "\(Self.show(v)) is not a probability (0 to 1)") }
        return v
    }

    func bool(_ node: Node, _ field: String) throws(ScenarioFileError) -> Bool {
        guard case .scalar(let s) = node, let v = Bool.construct(from: s) else {
            throw fail(node, field, "expected true or false, found \(YAMLDiagnostics.shown(node))")
        }
        return v
    }

    func list(_ node: Node, _ field: String, what: String) throws(ScenarioFileError) -> [Node] {
        guard case .sequence(let items) = node else {
            throw fail(node, field, "expected a list of \(what), found \(YAMLDiagnostics.shown(node))")
        }
        return Array(items)
    }

    static func peersPhrase(_ peers: Int) -> String {
        peers == 1 ? "the scenario has 1 peer, 0" : "the scenario has \(peers) peers, 0..\(peers - 1)"
    }

    func peer(_ node: Node, _ field: String, peers: Int) throws(ScenarioFileError) -> Int {
        let v = try int(node, field)
        guard v >= 0 && v < peers else {
            throw fail(node, field, "peer \(v) does not exist (\(Self.peersPhrase(peers)))")
        }
        return v
    }

    // MARK: The scenario

    func scenario(_ text: String) throws(ScenarioFileError) -> Scenario {
        let composed: Node?
        do {
            composed = try YAMLDiagnostics.compose(text)
        } catch {
            throw ScenarioFileError(file: file, line: error.line, column: error.column, message: error.message)
        }
        guard let root = composed else {
            throw ScenarioFileError(file: file, message: "the file is empty; a scenario has at least 'name', 'peers' and 'duration'")
        }
        let top = try fields(root, nil, allowed: ScenarioFile.topLevelKeys, what: "a scenario")

        let name = try string(try require(top, "name", what: "the scenario's name"), "name")
        let peers = try int(
            try require(top, "peers", what: "how many peers"), "peers", 1...ScenarioLimits.maxPeers,
            "must be 1 to \(ScenarioLimits.maxPeers) (the simulator's limit)")
        let durationNode = try require(top, "duration", what: "seconds of virtual time")
        let maxDuration = ScenarioLimits.maxDurationSeconds
        let duration = try number(durationNode, "duration")
        guard duration > 0 && duration <= maxDuration else {
            throw fail(
                durationNode, "duration",
                "must be more than 0 and at most \(Self.show(maxDuration)) s (one day of virtual time), got \(Self.show(duration))")
        }
        let durationNs = Int64(duration * 1e9)
        let periodMs = try top.value("protocolPeriodMs").map { (n) throws(ScenarioFileError) in
            Int64(
                try int(
                    n, "protocolPeriodMs", 1...Int(ScenarioLimits.maxProtocolPeriodMs),
                    "must be 1 to \(ScenarioLimits.maxProtocolPeriodMs) ms"))
        } ?? 200
        let periodNs = periodMs * 1_000_000
        // The simulator checks membership once a protocol period after the last start or fault; a
        // run shorter than that could only report that it never converged.
        guard periodNs <= durationNs else {
            throw fail(
                durationNode, "duration",
                "\(Self.show(duration)) s is shorter than one protocol period (\(periodMs) ms): membership, checked once a period, could never be checked")
        }
        let seedCount = try top.value("seeds").map { (n) throws(ScenarioFileError) in
            try int(n, "seeds", 1...peers, "must be 1 to \(peers) (the number of peers)")
        } ?? 1
        let lastStartLimit = Double(durationNs - periodNs) / 1e9
        let joinSpread = try top.value("joinSpread").map { (n) throws(ScenarioFileError) in
            try number(
                n, "joinSpread", 0...lastStartLimit,
                "must be 0 to \(Self.show(lastStartLimit)) s, so every peer starts at least one protocol period (\(periodMs) ms) before the end of the run (duration \(Self.show(duration)) s)")
        } ?? 0
        let convergeWithin = try top.value("convergeWithin").map { (n) throws(ScenarioFileError) in
            try number(n, "convergeWithin", 0...maxDuration, "must be 0 to \(Self.show(maxDuration)) s")
        } ?? 10
        let slots = try top.value("slots").map { (n) throws(ScenarioFileError) in
            try int(n, "slots", 1...ScenarioLimits.maxSlots, "must be 1 to \(ScenarioLimits.maxSlots) task slots per peer")
        } ?? 4
        let maxHeldBytes = try top.value("maxHeldBytes").map { (n) throws(ScenarioFileError) -> UInt64 in
            let range = ScenarioLimits.heldBytes
            return UInt64(
                try int(
                    n, "maxHeldBytes", Int(range.lowerBound)...Int(range.upperBound),
                    "must be \(range.lowerBound) to \(range.upperBound) bytes"))
        } ?? (1 << 32)

        let network = try top.value("network").map { (n) throws(ScenarioFileError) in try self.network(n) } ?? NetworkSettings()

        // When each peer starts, as `ClusterSimulation.run` schedules it.
        let spreadNs = Int64(joinSpread * 1e9)
        func startNs(_ i: Int) -> Int64 { peers > 1 && i >= seedCount ? spreadNs * Int64(i) / Int64(peers) : 0 }

        var plan: [ScheduledFault] = []
        var faultNodes: [(node: Node, field: String)] = []
        if let n = top.value("faults") {
            for (i, item) in try list(n, "faults", what: "faults").enumerated() {
                let field = "faults[\(i)]"
                let f = try fields(item, field, allowed: ScenarioFile.faultKeys, what: "a fault")
                let atNode = try require(f, "at", what: "when the fault happens, in seconds")
                let at = try number(atNode, f.path("at"))
                guard at >= 0 else { throw fail(atNode, f.path("at"), "a fault's time is 0 or more seconds, got \(Self.show(at))") }
                guard at <= duration else {
                    throw fail(
                        atNode, f.path("at"),
                        "the fault at \(Self.show(at)) s is after the end of the run (duration \(Self.show(duration)) s)")
                }
                let atNs = Int64(at * 1e9)
                guard atNs <= durationNs - periodNs else {
                    throw fail(
                        atNode, f.path("at"),
                        "the fault at \(Self.show(at)) s leaves less than one protocol period (\(periodMs) ms) before the end of the run (duration \(Self.show(duration)) s), so membership could not be checked after it")
                }
                let kinds = ScenarioFile.faultKinds.filter(f.has)
                guard kinds.count == 1 else {
                    let named = kinds.isEmpty ? "none" : kinds.map { "'\($0)'" }.joined(separator: " and ")
                    throw fail(
                        item, field,
                        "a fault names one of \(ScenarioFile.faultKinds.joined(separator: ", ")); this one names \(named)"
                            + (kinds.count > 1 ? " (write one entry per fault)" : ""))
                }
                let kind = kinds[0]
                if let keep = f.entries.first(where: { $0.key == "keepStore" }), kind != "restart" {
                    throw fail(keep.keyNode, f.path("keepStore"), "'keepStore' goes with 'restart' only, not with '\(kind)'")
                }
                let valueNode = f.entries.first { $0.key == kind }!.value
                let valueField = f.path(kind)
                let fault: Fault
                switch kind {
                case "crash":
                    fault = .crash(peer: PeerID(raw: UInt64(try peer(valueNode, valueField, peers: peers))))
                case "restart":
                    let p = try peer(valueNode, valueField, peers: peers)
                    let keep = try f.value("keepStore").map { (n) throws(ScenarioFileError) in
                        try bool(n, f.path("keepStore"))
                    } ?? true
                    fault = .restart(peer: PeerID(raw: UInt64(p)), keepStore: keep)
                case "split":
                    let k = try int(valueNode, valueField)
                    guard peers >= 2 else {
                        throw fail(valueNode, valueField, "a split needs at least 2 peers (\(Self.peersPhrase(peers)))")
                    }
                    guard k >= 2 && k <= peers else {
                        throw fail(valueNode, valueField, "must be 2 to \(peers) groups (the number of peers), got \(k)")
                    }
                    var groups = [[PeerID]](repeating: [], count: k)
                    for p in 0..<peers { groups[p * k / peers].append(PeerID(raw: UInt64(p))) }
                    fault = .partition(groups: groups)
                case "partition":
                    var groupOf: [Int: Int] = [:]
                    var groups: [[PeerID]] = []
                    for (g, groupNode) in try list(valueNode, valueField, what: "groups (lists of peers), e.g. [[0, 1], [2, 3]]")
                        .enumerated()
                    {
                        let groupField = "\(valueField)[\(g)]"
                        var group: [PeerID] = []
                        for (m, memberNode) in try list(groupNode, groupField, what: "peers").enumerated() {
                            let memberField = "\(groupField)[\(m)]"
                            let p = try peer(memberNode, memberField, peers: peers)
                            if let other = groupOf[p] {
                                throw fail(
                                    memberNode, memberField,
                                    other == g
                                        ? "peer \(p) is listed twice in group \(g)"
                                        : "peer \(p) is in two groups (\(valueField)[\(other)] and \(groupField)); the groups of a partition must be disjoint")
                            }
                            groupOf[p] = g
                            group.append(PeerID(raw: UInt64(p)))
                        }
                        groups.append(group)
                    }
                    fault = .partition(groups: groups)
                case "heal":
                    guard try bool(valueNode, valueField) else {
                        throw fail(valueNode, valueField, "'heal: false' is no fault; write 'heal: true' or remove the entry")
                    }
                    fault = .heal
                case "drop":
                    fault = .setDrop(probability: try probability(valueNode, valueField))
                default:  // "duplicate"
                    fault = .setDuplicate(probability: try probability(valueNode, valueField))
                }
                plan.append(ScheduledFault(at: Interval(nanoseconds: atNs), fault: fault))
                faultNodes.append((valueNode, valueField))
            }
        }
        try checkCrashesAndRestarts(plan, faultNodes, startNs: startNs, spread: joinSpread)

        var flows: [ScenarioWorkflow] = []
        if let n = top.value("workflows") {
            let items = try list(n, "workflows", what: "workflows")
            guard items.count <= ScenarioLimits.maxWorkflows else {
                throw fail(n, "workflows", "at most \(ScenarioLimits.maxWorkflows) workflows, got \(items.count)")
            }
            var totalTasks = 0
            for (i, item) in items.enumerated() {
                let (workflow, tasks) = try self.workflow(item, "workflows[\(i)]", peers: peers, duration: duration)
                totalTasks += tasks
                guard totalTasks <= ScenarioLimits.maxTasks else {
                    throw fail(
                        item, "workflows[\(i)]",
                        "the workflows have \(totalTasks) tasks up to this one; at most \(ScenarioLimits.maxTasks) in all")
                }
                flows.append(workflow)
            }
        }
        let objects = try top.value("objects").map { (n) throws(ScenarioFileError) in
            try self.objects(n, duration: duration)
        }
        return Scenario(
            name: name, peers: peers, durationSeconds: duration, seeds: seedCount, joinSpreadSeconds: joinSpread,
            network: network, protocolPeriodMs: periodMs, faults: FaultPlan(plan), convergeWithinSeconds: convergeWithin,
            workflows: flows, slots: slots, objects: objects, maxHeldBytes: maxHeldBytes)
    }

    func network(_ node: Node) throws(ScenarioFileError) -> NetworkSettings {
        let n = try fields(node, "network", allowed: ScenarioFile.networkKeys, what: "'network'")
        var net = NetworkSettings()
        let maxLatency = Int(ScenarioLimits.maxLatencyMicros)
        if let v = n.value("latencyMicros") {
            net.latency = .microseconds(
                Int64(try int(v, n.path("latencyMicros"), 0...maxLatency, "must be 0 to \(maxLatency) µs (one minute)")))
        }
        if let v = n.value("jitterMicros") {
            net.jitter = .microseconds(
                Int64(try int(v, n.path("jitterMicros"), 0...maxLatency, "must be 0 to \(maxLatency) µs (one minute)")))
        }
        if let v = n.value("bandwidthMbps") {
            let maxBandwidth = Int(ScenarioLimits.maxBandwidthMbps)
            let mbps = try int(
                v, n.path("bandwidthMbps"), 0...maxBandwidth, "must be 0 (unlimited) to \(maxBandwidth) Mbit/s")
            net.bandwidthBytesPerSecond = Int64(mbps) * 125_000
        }
        if let v = n.value("drop") { net.dropProbability = try probability(v, n.path("drop")) }
        if let v = n.value("duplicate") { net.duplicateProbability = try probability(v, n.path("duplicate")) }
        if let v = n.value("reorder") { net.reorderProbability = try probability(v, n.path("reorder")) }
        return net
    }

    /// A crash hits a peer that is up, a restart one that a crash took down: otherwise the
    /// simulator would ignore the fault (or start a peer before its time), silently.
    func checkCrashesAndRestarts(
        _ plan: [ScheduledFault], _ nodes: [(node: Node, field: String)], startNs: (Int) -> Int64, spread: Double
    ) throws(ScenarioFileError) {
        // In the order the simulator applies them: by time, then as written.
        let order = plan.indices.sorted { plan[$0].at != plan[$1].at ? plan[$0].at < plan[$1].at : $0 < $1 }
        var crashedAt: [Int: Interval] = [:]
        for i in order {
            let at = plan[i].at
            switch plan[i].fault {
            case .crash(let peer):
                let p = Int(peer.raw)
                if let earlier = crashedAt[p] {
                    throw fail(
                        nodes[i].node, nodes[i].field,
                        "peer \(p) is already down at \(Self.show(at.seconds)) s (it crashed at \(Self.show(earlier.seconds)) s and has not restarted)")
                }
                if at.nanoseconds < startNs(p) {
                    throw fail(
                        nodes[i].node, nodes[i].field,
                        "peer \(p) has not started yet at \(Self.show(at.seconds)) s (with joinSpread \(Self.show(spread)) s it starts at \(Self.show(Double(startNs(p)) / 1e9)) s)")
                }
                crashedAt[p] = at
            case .restart(let peer, _):
                let p = Int(peer.raw)
                guard crashedAt.removeValue(forKey: p) != nil else {
                    throw fail(
                        nodes[i].node, nodes[i].field,
                        "peer \(p) is not down at \(Self.show(at.seconds)) s: no earlier fault crashes it, and only a crashed peer restarts")
                }
            case .partition, .heal, .setDrop, .setDuplicate:
                break
            }
        }
    }

    /// One workflow entry and its task count.
    func workflow(_ node: Node, _ field: String, peers: Int, duration: Double) throws(ScenarioFileError) -> (
        ScenarioWorkflow, Int
    ) {
        let w = try fields(node, field, allowed: shapeNames + ScenarioFile.workflowFields, what: "a workflow")
        let shapes = shapeNames.filter(w.has)
        guard shapes.count == 1 else {
            let named = shapes.isEmpty ? "none" : shapes.map { "'\($0)'" }.joined(separator: " and ")
            throw fail(
                node, field,
                "a workflow names one shape, \(shapeNames.joined(separator: ", ")); this one names \(named)")
        }
        let maxTasks = ScenarioLimits.maxTasks
        let shapeNode = w.entries.first { $0.key == shapes[0] }!.value
        let shapeField = w.path(shapes[0])
        let shape: ScenarioWorkflow.Shape
        let tasks: Int
        switch shapes[0] {
        case "stencil":
            let s = try fields(shapeNode, shapeField, allowed: ScenarioFile.stencilKeys, what: "a stencil")
            let width = try int(
                try require(s, "width", what: "points per step"), s.path("width"), 1...maxTasks,
                "must be 1 to \(maxTasks) points")
            let steps = try int(
                try require(s, "steps", what: "how many steps"), s.path("steps"), 1...maxTasks,
                "must be 1 to \(maxTasks) steps")
            tasks = width * steps  // at most 10^14: no overflow
            guard tasks <= maxTasks else {
                throw fail(shapeNode, shapeField, "\(width) × \(steps) is \(tasks) tasks; at most \(maxTasks)")
            }
            shape = .stencil(width: width, steps: steps)
        case "independent":
            tasks = try int(shapeNode, shapeField, 1...maxTasks, "must be 1 to \(maxTasks) tasks")
            shape = .independent(count: tasks)
        case "adaptive":
            let a = try fields(shapeNode, shapeField, allowed: ScenarioFile.adaptiveKeys, what: "an adaptive program")
            let rounds = try int(
                try require(a, "rounds", what: "how many rounds"), a.path("rounds"), 1...10_000, "must be 1 to 10,000 rounds")
            let maxWidth = try int(
                try require(a, "maxWidth", what: "the widest round"), a.path("maxWidth"), 1...10_000,
                "must be 1 to 10,000 tasks per round")
            tasks = rounds * (2 * maxWidth + 2)  // at most: a round has 2 per datum, a fold and an extra
            guard tasks <= maxTasks else {
                throw fail(shapeNode, shapeField, "up to \(tasks) tasks; at most \(maxTasks)")
            }
            guard !w.has("failures") else {
                throw fail(shapeNode, shapeField, "an adaptive program has no modelled failures")
            }
            shape = .adaptive(rounds: rounds, maxWidth: maxWidth)
        case "file":
            let program = try self.program(shapeNode, shapeField)
            tasks = program.spec.tasks.count
            guard tasks <= maxTasks else { throw fail(shapeNode, shapeField, "\(tasks) tasks; at most \(maxTasks)") }
            guard !w.has("failures") else {
                throw fail(
                    shapeNode, shapeField,
                    "a file workflow's tasks fail as their bodies do (and with their retries and onFailure); 'failures' models failures of a shape")
            }
            shape = .program(program)
        default:  // a recorded program
            let program = programShapes.first { $0.name == shapes[0] }!
            let sizes = program.sizes
            let size = try int(
                shapeNode, shapeField, sizes, "must be \(sizes.lowerBound) to \(sizes.upperBound) \(program.unit)")
            let recorded: RecordedShape
            do { recorded = try program.record(size) } catch {
                throw fail(shapeNode, shapeField, "the program '\(program.name)' with \(size) \(program.unit) cannot run: \(error)")
            }
            tasks = recorded.calls.count
            guard tasks <= maxTasks else {
                throw fail(shapeNode, shapeField, "\(tasks) tasks with \(size) \(program.unit); at most \(maxTasks)")
            }
            shape = .recorded(recorded)
        }
        let at = try w.value("at").map { (n) throws(ScenarioFileError) in
            let at = try number(n, w.path("at"))
            guard at >= 0 && at < duration else {
                throw fail(
                    n, w.path("at"),
                    "the workflow is submitted at \(Self.show(at)) s; it must be 0 or more and before the end of the run (duration \(Self.show(duration)) s)")
            }
            return at
        } ?? 0
        let submitter = try w.value("submitter").map { (n) throws(ScenarioFileError) in
            try peer(n, w.path("submitter"), peers: peers)
        } ?? 0
        let maxMicros = Int(ScenarioLimits.maxTaskMicros)
        let taskMicros = try w.value("taskMicros").map { (n) throws(ScenarioFileError) in
            Int64(try int(n, w.path("taskMicros"), 0...maxMicros, "must be 0 to \(maxMicros) µs (one day)"))
        } ?? 1_000
        let bytes = try w.value("bytes").map { (n) throws(ScenarioFileError) in try valueBytes(n, w.path("bytes")) } ?? 1_024
        let failures = try w.value("failures").map { (n) throws(ScenarioFileError) in
            try self.failures(n, w.path("failures"))
        }
        return (
            ScenarioWorkflow(
                shape: shape, atSeconds: at, submitter: submitter, taskMicros: taskMicros, bytes: bytes,
                failures: failures),
            tasks
        )
    }

    /// `file: PATH` of a workflow: a workflow file, relative to the scenario file's folder, whose
    /// registered tasks are the ones `shoal run` knows.
    func program(_ node: Node, _ field: String) throws(ScenarioFileError) -> ProgramWorkflow {
        let given = try string(node, field)
        let base = URL(fileURLWithPath: file).deletingLastPathComponent()
        let path = given.hasPrefix("/") ? given : base.appendingPathComponent(given).standardizedFileURL.path
        do {
            let workflow = try WorkflowFile.load(path: path)
            try workflow.validate(knownTasks: Set(registry.names))
            return try ProgramWorkflow(file: workflow)
        } catch {
            throw fail(node, field, "the workflow file does not load: \(error)")
        }
    }

    /// `failures: { every: N, attempts: K, retries: R, action: A }` of a workflow.
    func failures(_ node: Node, _ field: String) throws(ScenarioFileError) -> ScenarioWorkflow.Failures {
        let f = try fields(node, field, allowed: ScenarioFile.failureKeys, what: "'failures'")
        let maxTasks = ScenarioLimits.maxTasks
        let every = try int(
            try require(f, "every", what: "which tasks fail"), f.path("every"), 1...maxTasks, "must be 1 to \(maxTasks)")
        let maxRetries = Int(ScenarioLimits.maxRetries)
        let attempts = try f.value("attempts").map { (n) throws(ScenarioFileError) in
            try int(n, f.path("attempts"), 0...Int(UInt16.max), "must be 0 to \(UInt16.max)")
        } ?? 1
        let retries = try f.value("retries").map { (n) throws(ScenarioFileError) in
            try int(n, f.path("retries"), 0...maxRetries, "must be 0 to \(maxRetries)")
        } ?? 0
        let action = try f.value("action").map { (n) throws(ScenarioFileError) in
            let name = try string(n, f.path("action"))
            guard let action = FailureAction(name: name) else {
                throw fail(
                    n, f.path("action"),
                    "must be one of \(FailureAction.allCases.map(\.description).joined(separator: ", ")), got '\(name)'")
            }
            return action
        } ?? .fail
        return ScenarioWorkflow.Failures(
            every: every, attempts: UInt16(attempts), policy: FailurePolicy(retries: UInt16(retries), action: action))
    }

    func valueBytes(_ node: Node, _ field: String) throws(ScenarioFileError) -> UInt64 {
        let most = Int(ScenarioLimits.maxValueBytes)
        return UInt64(try int(node, field, 0...most, "must be 0 to \(most) bytes (1 GiB)"))
    }

    func objects(_ node: Node, duration: Double) throws(ScenarioFileError) -> ObjectWorkload {
        let o = try fields(node, "objects", allowed: ScenarioFile.objectKeys, what: "'objects'")
        let keys = try int(
            try require(o, "keys", what: "how many distinct keys"), o.path("keys"), 1...ScenarioLimits.maxKeys,
            "must be 1 to \(ScenarioLimits.maxKeys)")
        let putsNode = try require(o, "puts", what: "how many puts")
        let puts = try int(putsNode, o.path("puts"), 0...ScenarioLimits.maxPuts, "must be 0 to \(ScenarioLimits.maxPuts)")
        let within = "must be 0 to \(Self.show(duration)) s (the duration)"
        let start = try o.value("start").map { (n) throws(ScenarioFileError) in
            try number(n, o.path("start"), 0...duration, within)
        } ?? 1
        let every = try o.value("every").map { (n) throws(ScenarioFileError) in
            try number(n, o.path("every"), 0...duration, within)
        } ?? 0.05
        let bytes = try o.value("bytes").map { (n) throws(ScenarioFileError) in try valueBytes(n, o.path("bytes")) } ?? 4_096
        let replicas = try o.value("replicas").map { (n) throws(ScenarioFileError) in
            try int(n, o.path("replicas"), 1...ScenarioLimits.maxReplicas, "must be 1 to \(ScenarioLimits.maxReplicas)")
        } ?? 3
        let workload = ObjectWorkload(
            keys: keys, puts: puts, startSeconds: start, everySeconds: every, bytes: bytes, replicas: replicas)
        if puts > 0 && workload.lastPut > duration {
            throw fail(
                putsNode, o.path("puts"),
                "the last of \(puts) puts, one every \(Self.show(every)) s from \(Self.show(start)) s, would be at \(Self.show(workload.lastPut)) s, after the end of the run (duration \(Self.show(duration)) s)")
        }
        return workload
    }
}
