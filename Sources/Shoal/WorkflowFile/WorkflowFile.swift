import Foundation

/// A parsed, validated and expanded workflow file (see the design, "Workflow files").
///
/// Build one with `WorkflowFile.load(path:)` or `WorkflowFile.parse(yaml:path:)`. The result
/// is static: `foreach` has been expanded, placeholders have been turned into `accesses`, and
/// data flow has been checked (every read datum is defined by `data:` or an earlier task, every
/// output is defined). Registered task names are checked separately, against a registry, by
/// `validate(knownTasks:)`.
public struct WorkflowFile: Sendable, Hashable {
    /// The initial value of a datum.
    public enum InitialData: Sendable, Hashable {
        /// Inline text from the file, as UTF-8 bytes.
        case inline([UInt8])
        /// A file to read, as an absolute path with symbolic links resolved (relative paths in
        /// the workflow file are resolved against the workflow file's directory). At parse time
        /// and at `validate` it was a regular file that could be opened for reading.
        case file(path: String)
    }

    /// One entry of `data:` (or an implicit empty accumulator; see `isImplicit`).
    public struct InitialDatum: Sendable, Hashable {
        /// The datum's name.
        public var name: String
        /// Its first version's value.
        public var value: InitialData
        /// Where it is declared; for implicit data, the task that first used it.
        public var location: SourceLocation
        /// True when the datum is not in `data:` but is first used by a `commutative` or
        /// `concurrent` access: such accumulators (e.g. `echo {i} >> {commutative:log}`) start
        /// as an empty file, `.inline([])`.
        public var isImplicit: Bool

        public init(name: String, value: InitialData, location: SourceLocation, isImplicit: Bool = false) {
            self.name = name
            self.value = value
            self.location = location
            self.isImplicit = isImplicit
        }
    }

    /// An entry of `outputs:`.
    public struct Output: Sendable, Hashable {
        /// The datum written to `DIR/<name>` at the end of the run.
        public var name: String
        public var location: SourceLocation
    }

    /// The workflow's `name`.
    public var name: String
    /// Where `name:` is in the file (nil for a workflow built in code).
    public var nameLocation: SourceLocation?
    /// The workflow file's path, as given to the parser (used in error messages).
    public var path: String
    /// Initial data, in declaration order, then implicit accumulators in order of first use.
    public var data: [InitialDatum]
    /// Expanded task calls, in submission order.
    public var tasks: [TaskCall]
    /// Data to write out at the end, in declaration order.
    public var outputs: [Output]

    public init(
        name: String, path: String, data: [InitialDatum], tasks: [TaskCall], outputs: [Output],
        nameLocation: SourceLocation? = nil
    ) {
        self.name = name
        self.nameLocation = nameLocation
        self.path = path
        self.data = data
        self.tasks = tasks
        self.outputs = outputs
    }

    /// The most `retries` a task may have. A task that needs more is not expected to succeed;
    /// the engine counts attempts in a `UInt16` (`FailurePolicy.retries`).
    public static let maxRetries = 100
    /// The longest workflow `name`, in UTF-8 bytes. A run is recorded under the store key
    /// `<name>/<start time>-<pid>-<run>` (`RunRecords`): at most 56 bytes after the name, and a
    /// store key is at most `ShardRecord.maxKeyLength` (511) bytes, so 255 leaves room.
    public static let maxWorkflowNameBytes = 255
    /// The longest datum or task name, in bytes: names become file names (see `WorkflowNames`).
    public static let maxNameBytes = WorkflowNames.maxNameBytes

    /// Why `name` cannot be a workflow name (a phrase after "the workflow name"), or nil.
    /// A workflow name is any text of 1 to `maxWorkflowNameBytes` UTF-8 bytes without control
    /// characters (it is printed on one line) and without `/` (it is the first component of
    /// the run record's key, so `a/b` would read as runs of workflow `a`).
    static func workflowNameProblem(_ name: String) -> String? {
        if name.isEmpty { return "is empty" }
        if name.utf8.count > maxWorkflowNameBytes {
            return "is \(name.utf8.count) bytes long; it is at most \(maxWorkflowNameBytes) bytes, as runs are recorded under the store key '<name>/<start time>-<pid>-<run>' and a store key is at most \(ShardRecord.maxKeyLength) bytes"
        }
        if name.contains("/") {
            return "'\(name)' contains '/'; runs are recorded under the store key '<name>/<start time>-<pid>-<run>', so a '/' would mix its runs with another workflow's"
        }
        if name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            return "contains a control character (such as a newline or NUL)"
        }
        return nil
    }

    /// Checks the workflow just before a run: the names, retries and data files the parser
    /// checks (again, because a `WorkflowFile` can be built in code and files change between a
    /// load and a run), and that every registered task (`task:`) is in `knownTasks`.
    ///
    /// Throws `WorkflowFileError` at the first problem: `.invalidName`, `.invalidValue`,
    /// `.missingDataFile` or `.badDataFile` as the parser would, or `.unknownTask` at the first
    /// unknown task's line, naming the closest known task if there is one.
    public func validate(knownTasks: Set<String>) throws(WorkflowFileError) {
        func fail(_ kind: WorkflowFileError.Kind, _ location: SourceLocation?, task: String? = nil, field: String, _ message: String) -> WorkflowFileError {
            WorkflowFileError(kind, file: path, location: location, task: task, field: field, message: message)
        }
        if let problem = Self.workflowNameProblem(name) {
            throw fail(.invalidName, nameLocation, field: "name", "the workflow name \(problem)")
        }
        for datum in data {
            if let problem = WorkflowNames.problem(datum.name) {
                throw fail(.invalidName, datum.location, field: "data", "invalid datum name '\(WorkflowNames.shown(datum.name))': it \(problem)")
            }
            if case .file(let source) = datum.value, let problem = DataFileCheck.problem(source) {
                throw fail(problem.kind, datum.location, field: "data.\(datum.name).file", "data file \(problem.message)")
            }
        }
        for call in tasks {
            if let problem = WorkflowNames.problem(call.name) {
                throw fail(.invalidName, call.location, task: call.name, field: "name", "invalid task name '\(WorkflowNames.shown(call.name))': it \(problem)")
            }
            if call.retries < 0 || call.retries > Self.maxRetries {
                throw fail(.invalidValue, call.location, task: call.name, field: "retries", "'retries' is \(call.retries); it must be 0 to \(Self.maxRetries)")
            }
            for access in call.accesses {
                if let problem = WorkflowNames.problem(access.datum) {
                    let field: String
                    if case .exec = call.kind { field = "exec" } else { field = access.direction.description }
                    throw fail(.invalidName, call.location, task: call.name, field: field, "invalid datum name '\(WorkflowNames.shown(access.datum))': it \(problem)")
                }
            }
        }
        for output in outputs {
            if let problem = WorkflowNames.problem(output.name) {
                throw fail(.invalidName, output.location, field: "outputs", "invalid output name '\(WorkflowNames.shown(output.name))': it \(problem)")
            }
        }
        for call in tasks {
            guard case .registered(let task, _) = call.kind, !knownTasks.contains(task) else { continue }
            let hint = WorkflowNames.closest(to: task, in: knownTasks.sorted()).map { " (did you mean '\($0)'?)" } ?? ""
            throw WorkflowFileError(
                .unknownTask, file: path, location: call.location, task: call.name, field: "task",
                message: "unknown registered task '\(task)'\(hint)")
        }
    }

    /// A human-readable, deterministic summary: name, data, tasks with their accesses, outputs.
    public var summary: String {
        var lines: [String] = []
        lines.append("workflow '\(name)' (\(path)): \(data.count) data, \(tasks.count) tasks, \(outputs.count) outputs")
        if !data.isEmpty {
            lines.append("data:")
            for d in data {
                let value: String
                switch d.value {
                case .inline(let bytes): value = d.isImplicit ? "implicit, empty" : "inline, \(bytes.count) bytes"
                case .file(let p): value = "file \(p)"
                }
                lines.append("  \(d.name): \(value)")
            }
        }
        lines.append("tasks:")
        for t in tasks {
            let kind: String
            switch t.kind {
            case .exec(let command): kind = "exec \"\(command)\""
            case .registered(let task, _): kind = "task \(task)"
            }
            var line = "  \(t.name) (line \(t.location.line)): \(kind)"
            if !t.accesses.isEmpty { line += " [" + t.accesses.map(\.description).joined(separator: ", ") + "]" }
            if t.retries > 0 { line += " retries=\(t.retries)" }
            if t.onFailure != .fail { line += " onFailure=\(t.onFailure.rawValue)" }
            lines.append(line)
        }
        if !outputs.isEmpty {
            lines.append("outputs: " + outputs.map(\.name).joined(separator: ", "))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// One task call of a workflow file, after `foreach` expansion.
public struct TaskCall: Sendable, Hashable {
    /// What the task runs.
    public enum Kind: Sendable, Hashable {
        /// A shell command run with `/bin/sh -c` in a scratch folder (see `ExecRunner`).
        case exec(command: CommandTemplate)
        /// A registered Swift task; `argsJSON` is the `args:` node as UTF-8 JSON (`{}` when
        /// absent), so `JSONDecoder().decode(Args.self, from: Data(argsJSON))` decodes it.
        case registered(task: String, argsJSON: [UInt8])
    }

    /// The expanded name (foreach variables substituted), unique in the workflow.
    public var name: String
    /// Where the task's entry starts in the workflow file (the `- ` item).
    public var location: SourceLocation
    /// What the task runs.
    public var kind: Kind
    /// The data accessed, one entry per datum, in order of first appearance.
    public var accesses: [DataAccess]
    /// How many times to retry after a failure (0 = run once).
    public var retries: Int
    /// What to do after the last failed attempt.
    public var onFailure: FailureAction
    /// The foreach bindings that produced this call, in declaration order (empty without foreach).
    public var bindings: [ForeachBinding]

    public init(
        name: String, location: SourceLocation, kind: Kind, accesses: [DataAccess], retries: Int = 0,
        onFailure: FailureAction = .fail, bindings: [ForeachBinding] = []
    ) {
        self.name = name
        self.location = location
        self.kind = kind
        self.accesses = accesses
        self.retries = retries
        self.onFailure = onFailure
        self.bindings = bindings
    }
}

/// One foreach variable's value for one expanded task.
public struct ForeachBinding: Sendable, Hashable {
    public var variable: String
    public var value: String
    public init(variable: String, value: String) {
        self.variable = variable
        self.value = value
    }
}
