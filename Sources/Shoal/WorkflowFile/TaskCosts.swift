import Foundation
import ShoalSimulation
import Yams

/// Measured costs of task bodies, for predicting a workflow's makespan on N simulated peers:
/// per workflow (by name), per task label, the microseconds its body took.
///
/// `shoal simulate SCENARIO --record-costs FILE` times each real body call of the scenario's file
/// workflows (`CallRunner.timings`) and writes FILE; `shoal simulate SCENARIO --costs FILE` gives
/// each task of a file workflow the recorded cost for its label as its virtual run time
/// (`ProgramWorkflow.costs`). The file is YAML, keys sorted, comments ignored:
///
/// ```yaml
/// # task costs recorded by shoal simulate ... --record-costs (microseconds of each task's first
/// # successful run, or of its first attempt if it never succeeded)
/// workflows:
///   letter-census:
///     census: 1834
///     count-0: 2210
///   shout-twice:
///     shout: 2731
///     twice: 1902
/// ```
///
/// Every count and size is bounded (`maxFileBytes`, `maxEntries`, micros at most
/// `ScenarioLimits.maxTaskMicros`), so a hostile file is refused before it costs much.
public struct TaskCosts: Sendable, Hashable {
    /// By workflow name, then task label: microseconds.
    public var workflows: [String: [String: Int64]]

    public init(workflows: [String: [String: Int64]] = [:]) { self.workflows = workflows }

    /// The largest costs file read, in bytes (64 MiB).
    public static let maxFileBytes = 64 << 20
    /// The most entries (tasks, over all workflows) a costs file may have.
    public static let maxEntries = 1_000_000
    /// The most workflows a costs file may name (as a scenario may have).
    public static let maxWorkflows = ScenarioLimits.maxWorkflows
    /// The largest cost of one task, in microseconds (one day, as `taskMicros`).
    public static let maxMicros = ScenarioLimits.maxTaskMicros

    /// Tasks over all workflows.
    public var entryCount: Int { workflows.values.reduce(0) { $0 + $1.count } }

    /// The file's text: `header` lines as comments, then the costs, keys sorted (so two
    /// recordings of the same workflows differ only in their numbers).
    public func yaml(header: [String] = []) -> String {
        func key(_ s: String) -> Node { .scalar(s.represented()) }
        let tree = Node.mapping(
            Node.Mapping([
                (
                    key("workflows"),
                    Node.mapping(
                        Node.Mapping(
                            workflows.keys.sorted().map { name in
                                let tasks = workflows[name]!
                                return (
                                    key(name),
                                    Node.mapping(
                                        Node.Mapping(
                                            tasks.keys.sorted().map { label in
                                                (key(label), Node(String(tasks[label]!), Tag(.int)))
                                            }))
                                )
                            }))
                )
            ]))
        // Serialising a tree of strings and whole numbers cannot fail.
        let body = (try? Yams.serialize(node: tree, width: -1, allowUnicode: true)) ?? "workflows: {}\n"
        return header.map { "# \($0)\n" }.joined() + body
    }

    /// Reads and checks the costs file at `path`; every problem is a `TaskCostsError` naming it.
    public static func load(path: String) throws(TaskCostsError) -> TaskCosts {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TaskCostsError(file: path, message: "no such file")
        }
        guard !isDirectory.boolValue else { throw TaskCostsError(file: path, message: "is a folder, not a costs file") }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
        guard size <= maxFileBytes else {
            throw TaskCostsError(file: path, message: "is \(size) bytes; a costs file is at most \(maxFileBytes) bytes")
        }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw TaskCostsError(file: path, message: "cannot read the file (permission denied?)")
        }
        defer { try? handle.close() }
        // Read at most one byte past the limit: the file may have grown since it was measured.
        let data = (try? handle.read(upToCount: maxFileBytes + 1)) ?? Data()
        guard data.count <= maxFileBytes else {
            throw TaskCostsError(
                file: path, message: "is more than \(maxFileBytes) bytes; a costs file is at most that")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw TaskCostsError(file: path, message: "is not UTF-8 text")
        }
        return try parse(text, file: path)
    }

    /// Checks `text` (the contents of `file`) and builds its costs.
    public static func parse(_ text: String, file: String) throws(TaskCostsError) -> TaskCosts {
        func fail(_ node: Node?, _ field: String?, _ message: String) -> TaskCostsError {
            TaskCostsError(file: file, at: node, field: field, message: message)
        }
        let isNull = YAMLDiagnostics.isNull, describe = YAMLDiagnostics.shown
        func mapping(_ node: Node, _ field: String?, _ what: String) throws(TaskCostsError) -> Node.Mapping {
            guard case .mapping(let m) = node else {
                throw fail(node, field, "expected \(what), found \(describe(node))")
            }
            return m
        }
        func name(_ node: Node, _ field: String?, _ what: String, maxBytes: Int) throws(TaskCostsError) -> String {
            guard case .scalar(let s) = node, !isNull(node), !s.string.isEmpty else {
                throw fail(node, field, "expected \(what), found \(describe(node))")
            }
            guard s.string.utf8.count <= maxBytes else {
                throw fail(node, field, "\(what) is \(s.string.utf8.count) bytes long; at most \(maxBytes)")
            }
            return s.string
        }

        let composed: Node?
        do {
            composed = try YAMLDiagnostics.compose(text)
        } catch {
            throw TaskCostsError(file: file, line: error.line, column: error.column, message: error.message)
        }
        guard let root = composed else {
            throw TaskCostsError(file: file, message: "the file is empty; a costs file has 'workflows'")
        }
        let top = try mapping(root, nil, "a costs file (a mapping with the key 'workflows')")
        var workflowsNode: Node?
        for (k, v) in top {
            let key = try name(k, nil, "a key", maxBytes: 64)
            guard key == "workflows" else {
                let hint = YAMLDiagnostics.closest(to: key, in: ["workflows"]).map { " (did you mean '\($0)'?)" } ?? ""
                throw fail(k, key, "unknown key '\(key)'\(hint); a costs file has the one key 'workflows'")
            }
            workflowsNode = v
        }
        guard let workflowsNode else {
            throw fail(root, "workflows", "missing 'workflows' (the costs, by workflow name)")
        }
        let named = try mapping(
            workflowsNode, "workflows",
            "a mapping of workflow names to their tasks' costs (e.g. 'shout-twice: { shout: 2500 }')")
        guard named.count <= maxWorkflows else {
            throw fail(workflowsNode, "workflows", "at most \(maxWorkflows) workflows, got \(named.count)")
        }
        var costs = TaskCosts()
        var entries = 0
        for (k, v) in named {
            let workflow = try name(k, "workflows", "a workflow name", maxBytes: WorkflowFile.maxWorkflowNameBytes)
            let field = "workflows.\(workflow)"
            let tasks = try mapping(v, field, "a mapping of task labels to microseconds (e.g. 'shout: 2500')")
            entries += tasks.count
            guard entries <= maxEntries else {
                throw fail(
                    v, field, "the costs have \(entries) tasks up to this workflow; at most \(maxEntries) in all")
            }
            var table: [String: Int64] = [:]
            for (lk, lv) in tasks {
                let label = try name(lk, field, "a task label", maxBytes: WorkflowFile.maxNameBytes)
                let at = "\(field).\(label)"
                let rule = "must be 0 to \(maxMicros) µs (one day)"
                guard case .scalar(let s) = lv, s.style == .plain || s.style == .any, !isNull(lv) else {
                    throw fail(lv, at, "expected a whole number of microseconds, found \(describe(lv))")
                }
                guard let micros = Int64(s.string.replacingOccurrences(of: "_", with: "")) else {
                    let digits = s.string.drop { $0 == "-" || $0 == "+" }
                    let tooLarge = !digits.isEmpty && digits.allSatisfy { $0.isASCII && ($0.isNumber || $0 == "_") }
                    let notWhole = "expected a whole number of microseconds, found \(describe(lv))"
                    throw fail(lv, at, tooLarge ? "\(rule), got \(s.string)" : notWhole)
                }
                guard micros >= 0 && micros <= maxMicros else { throw fail(lv, at, "\(rule), got \(micros)") }
                table[label] = micros
            }
            costs.workflows[workflow] = table
        }
        return costs
    }
}

/// Why a costs file was refused, in the style of workflow-file and scenario errors:
/// `FILE:LINE:COLUMN: field 'workflows.shout-twice.shout': must be 0 to 86400000000 µs (one day), got -5`.
public typealias TaskCostsError = YAMLFileError

/// Times real body calls (`CallRunner.timings`), for `shoal simulate --record-costs`: per
/// workflow and task label, the microseconds of the task's first successful run, or of its first
/// attempt while none has succeeded. A shell's record: the machines never read a clock.
public struct CallTimings: Sendable, Hashable {
    /// What has been measured so far.
    public private(set) var costs = TaskCosts()
    /// The tasks, by workflow, whose recorded cost is of a successful run.
    private var succeeded: [String: Set<String>] = [:]

    public init() {}

    /// Records one run of `label` of `workflow` that took `micros` (clamped to 1 ...
    /// `TaskCosts.maxMicros`, so a recorded cost is positive and can be read back).
    public mutating func record(workflow: String, label: String, micros: Int64, succeeded ok: Bool) {
        let micros = min(max(micros, 1), TaskCosts.maxMicros)
        let done = succeeded[workflow]?.contains(label) ?? false
        guard !done else { return }
        if costs.workflows[workflow]?[label] == nil || ok {
            costs.workflows[workflow, default: [:]][label] = micros
        }
        if ok { succeeded[workflow, default: []].insert(label) }
    }

    /// `elapsed` in whole microseconds, rounded up.
    public static func micros(_ elapsed: Duration) -> Int64 {
        let (seconds, attoseconds) = elapsed.components
        let (whole, rest) = attoseconds.quotientAndRemainder(dividingBy: 1_000_000_000_000)
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000)
        guard !overflow else { return seconds < 0 ? 0 : Int64.max }
        return scaled &+ whole &+ (rest > 0 ? 1 : 0)
    }
}
