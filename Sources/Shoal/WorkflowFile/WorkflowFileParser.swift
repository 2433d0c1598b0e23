import Foundation
import Yams

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension WorkflowFile {
    /// Limits applied while parsing, so that a small file cannot expand into unbounded work
    /// (YAML aliases repeat a node without repeating its text; `foreach` repeats a task).
    /// Every limit is checked before anything runs, and a file beyond one is refused with a
    /// `WorkflowFileError` (`.tooLarge`, or `.badForeach` for `maxTasks`) naming the line and field.
    public struct ParseOptions: Sendable, Hashable {
        /// The most task calls the whole file may expand to (after `foreach`).
        public var maxTasks: Int
        /// The most YAML nodes (scalars, lists, mappings, keys) one task's `args` may have after
        /// aliases (`*name`) are expanded.
        public var maxArgumentNodes: Int
        /// The most bytes one task's `args` may take as JSON.
        public var maxArgumentBytes: Int
        /// The deepest nesting of lists and mappings in one task's `args`. (libyaml stops at
        /// 1,000 levels of text, but aliases can nest deeper; JSON decoders stop at 512.)
        public var maxArgumentDepth: Int
        /// The longest exec command after `foreach` substitution, in bytes. Linux refuses a
        /// single argument (the command, passed to `sh -c`) of 128 KiB or more, and the paths
        /// that replace placeholders make the command longer still.
        public var maxCommandBytes: Int
        /// The most bytes the whole file may expand to: inline data, plus for every expanded
        /// task its name, command or `args` JSON, data names and foreach values.
        public var maxExpandedBytes: Int
        /// The largest workflow file `load` reads, in bytes.
        public var maxFileBytes: Int

        public init(
            maxTasks: Int = 1_000_000, maxArgumentNodes: Int = 100_000, maxArgumentBytes: Int = 1 << 20,
            maxArgumentDepth: Int = 100, maxCommandBytes: Int = 64 << 10, maxExpandedBytes: Int = 256 << 20,
            maxFileBytes: Int = 64 << 20
        ) {
            self.maxTasks = maxTasks
            self.maxArgumentNodes = maxArgumentNodes
            self.maxArgumentBytes = maxArgumentBytes
            self.maxArgumentDepth = maxArgumentDepth
            self.maxCommandBytes = maxCommandBytes
            self.maxExpandedBytes = maxExpandedBytes
            self.maxFileBytes = maxFileBytes
        }
    }

    /// Top-level keys of a workflow file.
    public static let topLevelKeys = ["name", "data", "tasks", "outputs"]
    /// Keys of one task entry.
    public static let taskKeys = [
        "name", "exec", "task", "args", "in", "out", "inout", "commutative", "concurrent", "foreach",
        "retries", "onFailure",
    ]

    /// Reads and parses the workflow file at `path`. Relative `data:` files are resolved against
    /// the directory of `path`. Throws `WorkflowFileError` for every problem (first one found).
    /// The workflow file must be a regular file (not a FIFO, device or directory, which would
    /// hang or never end) of at most `options.maxFileBytes` bytes.
    public static func load(path: String, options: ParseOptions = ParseOptions()) throws(WorkflowFileError) -> WorkflowFile {
        func unreadable(_ message: String) -> WorkflowFileError {
            WorkflowFileError(.unreadable, file: path, location: nil, message: message)
        }
        if let problem = DataFileCheck.problem(path) {
            throw unreadable("cannot read the workflow file: it \(problem.message)")
        }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw unreadable("cannot read the workflow file")
        }
        defer { try? handle.close() }
        let bytes: Data
        do {
            bytes = try handle.read(upToCount: min(options.maxFileBytes, Int.max - 1) + 1) ?? Data()
        } catch {
            throw unreadable("cannot read the workflow file: \(error.localizedDescription)")
        }
        guard bytes.count <= options.maxFileBytes else {
            throw WorkflowFileError(
                .tooLarge, file: path, location: nil,
                message: "the workflow file is larger than \(options.maxFileBytes) bytes (maxFileBytes)")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw WorkflowFileError(.yamlSyntax, file: path, location: nil, message: "not a YAML file: the text is not valid UTF-8")
        }
        return try parse(yaml: text, path: path, options: options)
    }

    /// Parses workflow text. `path` names the file in errors and is the base for relative
    /// `data:` files (its directory; the current directory if it has none).
    public static func parse(yaml: String, path: String, options: ParseOptions = ParseOptions()) throws(WorkflowFileError) -> WorkflowFile {
        let base = URL(fileURLWithPath: path).deletingLastPathComponent()
        var parser = WorkflowFileParser(file: path, baseDirectory: base, options: options)
        return try parser.parse(yaml)
    }
}

/// Foreach values: an integer range (kept lazy) or an explicit list.
private enum ForeachValues {
    case range(lower: Int, count: Int)
    case list([String])

    var count: Int {
        switch self {
        case .range(_, let count): count
        case .list(let values): values.count
        }
    }

    subscript(i: Int) -> String {
        switch self {
        case .range(let lower, _): String(lower + i)
        case .list(let values): values[i]
        }
    }
}

private struct WorkflowFileParser {
    let file: String
    let baseDirectory: URL
    let options: ParseOptions
    /// The source lines, to point at a placeholder inside a command.
    var sourceLines: [Substring] = []
    typealias ParseOptions = WorkflowFile.ParseOptions

    /// Where each datum of each task came from, for data-flow errors.
    private var accessOrigins: [[String: (field: String, location: SourceLocation)]] = []
    /// Bytes the file has expanded to so far (see `ParseOptions.maxExpandedBytes`).
    private var expandedBytes = 0

    init(file: String, baseDirectory: URL, options: ParseOptions) {
        self.file = file
        self.baseDirectory = baseDirectory
        self.options = options
    }

    // MARK: Errors and node helpers

    func error(
        _ kind: WorkflowFileError.Kind, _ location: SourceLocation?, task: String? = nil, field: String? = nil,
        _ message: String
    ) -> WorkflowFileError {
        WorkflowFileError(kind, file: file, location: location, task: task, field: field, message: message)
    }

    func loc(_ node: Node) -> SourceLocation {
        node.mark.map { SourceLocation(line: $0.line, column: $0.column) } ?? SourceLocation(line: 1, column: 1)
    }

    static func describe(_ node: Node) -> String {
        switch node {
        case .scalar: "a scalar"
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias"
        }
    }

    /// The pairs of a mapping node whose keys are all strings.
    func pairs(_ node: Node, task: String?, field: String?, what: String) throws(WorkflowFileError) -> [(key: String, keyNode: Node, value: Node)] {
        guard case .mapping(let mapping) = node else {
            throw error(.wrongType, loc(node), task: task, field: field, "expected \(what), found \(Self.describe(node))")
        }
        var result: [(key: String, keyNode: Node, value: Node)] = []
        for (k, v) in mapping {
            guard case .scalar(let s) = k else {
                throw error(.wrongType, loc(k), task: task, field: field, "expected a text key, found \(Self.describe(k))")
            }
            result.append((s.string, k, v))
        }
        return result
    }

    func checkKeys(_ pairs: [(key: String, keyNode: Node, value: Node)], known: [String], task: String?, what: String) throws(WorkflowFileError) {
        for p in pairs where !known.contains(p.key) {
            let hint = WorkflowNames.closest(to: p.key, in: known).map { " (did you mean '\($0)'?)" } ?? ""
            throw error(.unknownKey, loc(p.keyNode), task: task, field: p.key, "unknown \(what) key '\(p.key)'\(hint)")
        }
    }

    func string(_ node: Node, task: String?, field: String) throws(WorkflowFileError) -> String {
        guard case .scalar(let s) = node else {
            throw error(.wrongType, loc(node), task: task, field: field, "expected text, found \(Self.describe(node))")
        }
        if YAMLDiagnostics.isNull(node) {
            throw error(.wrongType, loc(node), task: task, field: field, "expected text, found nothing")
        }
        return s.string
    }

    /// A list of names; a single scalar is taken as a one-element list.
    func names(_ node: Node, task: String?, field: String) throws(WorkflowFileError) -> [(String, Node)] {
        switch node {
        case .scalar: return [(try string(node, task: task, field: field), node)]
        case .sequence(let seq):
            var result: [(String, Node)] = []
            for item in seq { result.append((try string(item, task: task, field: field), item)) }
            return result
        default:
            throw error(.wrongType, loc(node), task: task, field: field, "expected a list of names, found \(Self.describe(node))")
        }
    }

    func checkName(_ name: String, _ node: Node, task: String?, field: String, what: String) throws(WorkflowFileError) {
        guard let problem = WorkflowNames.problem(name) else { return }
        if name.allSatisfy(WorkflowNames.isNameCharacter) {
            throw error(.invalidName, loc(node), task: task, field: field, "invalid \(what) name '\(WorkflowNames.shown(name))': it \(problem)")
        }
        var hint = ""
        if name.contains("{") { hint = "; is the '{...}' a foreach variable of this task?" }
        throw error(
            .invalidName, loc(node), task: task, field: field,
            "invalid \(what) name '\(WorkflowNames.shown(name))' (names use letters, digits, '_', '.', '-')\(hint)")
    }

    /// Adds `bytes` to the file's expanded size; throws `.tooLarge` past `maxExpandedBytes`.
    mutating func spend(_ bytes: Int, _ location: SourceLocation, task: String?, field: String) throws(WorkflowFileError) {
        expandedBytes += bytes
        guard expandedBytes > options.maxExpandedBytes else { return }
        throw error(
            .tooLarge, location, task: task, field: field,
            "the file expands to more than \(options.maxExpandedBytes) bytes of data, task names, commands and arguments here (maxExpandedBytes); put large values in data files")
    }

    // MARK: Top level

    mutating func parse(_ yaml: String) throws(WorkflowFileError) -> WorkflowFile {
        guard yaml.utf8.count <= options.maxFileBytes else {
            throw error(.tooLarge, nil, "the workflow file is larger than \(options.maxFileBytes) bytes (maxFileBytes)")
        }
        sourceLines = yaml.split(separator: "\n", omittingEmptySubsequences: false)
        let composed: Node?
        do {
            composed = try YAMLDiagnostics.compose(yaml)
        } catch {
            throw self.error(.yamlSyntax, error.line.map { SourceLocation(line: $0, column: error.column ?? 1) }, error.message)
        }
        guard let root = composed else {
            throw error(.wrongType, nil, "the file is empty; expected a mapping with 'name' and 'tasks'")
        }
        guard case .mapping = root else {
            throw error(.wrongType, loc(root), "the top level must be a mapping with 'name' and 'tasks', found \(Self.describe(root))")
        }
        let top = try pairs(root, task: nil, field: nil, what: "a mapping")
        try checkKeys(top, known: WorkflowFile.topLevelKeys, task: nil, what: "top-level")
        func value(_ key: String) -> Node? { top.first { $0.key == key }?.value }

        guard let nameNode = value("name") else {
            throw error(.missingField, loc(root), field: "name", "missing workflow 'name'")
        }
        let name = try string(nameNode, task: nil, field: "name")
        if let problem = WorkflowFile.workflowNameProblem(name) {
            throw error(.invalidName, loc(nameNode), field: "name", "the workflow name \(problem)")
        }

        var data: [WorkflowFile.InitialDatum] = []
        if let dataNode = value("data") {
            data = try parseData(dataNode)
        }

        guard let tasksNode = value("tasks") else {
            throw error(.missingField, loc(root), field: "tasks", "missing 'tasks'")
        }
        guard case .sequence(let taskItems) = tasksNode else {
            if YAMLDiagnostics.isNull(tasksNode) {
                throw error(.wrongType, loc(tasksNode), field: "tasks", "'tasks' is empty; expected a list of tasks")
            }
            throw error(.wrongType, loc(tasksNode), field: "tasks", "expected a list of tasks, found \(Self.describe(tasksNode))")
        }
        var tasks: [TaskCall] = []
        var firstLine: [String: SourceLocation] = [:]
        for item in taskItems {
            try parseTask(item, into: &tasks, names: &firstLine)
        }

        // Data flow: every read must see a definition (data: or an earlier write).
        var defined = Set(data.map(\.name))
        for (index, call) in tasks.enumerated() {
            for access in call.accesses {
                if access.direction.reads && !defined.contains(access.datum) {
                    if access.direction == .commutative || access.direction == .concurrent {
                        data.append(WorkflowFile.InitialDatum(
                            name: access.datum, value: .inline([]), location: call.location, isImplicit: true))
                    } else {
                        let origin = accessOrigins[index][access.datum]
                        throw error(
                            .undefinedDatum, origin?.location ?? call.location, task: call.name, field: origin?.field,
                            "undefined datum '\(access.datum)': it is read (\(access.direction)) but not in 'data:' and no earlier task writes it")
                    }
                }
                defined.insert(access.datum)
            }
        }

        var outputs: [WorkflowFile.Output] = []
        if let outputsNode = value("outputs") {
            var seen = Set<String>()
            for (output, node) in try names(outputsNode, task: nil, field: "outputs") {
                try checkName(output, node, task: nil, field: "outputs", what: "output")
                guard defined.contains(output) else {
                    throw error(
                        .undefinedOutput, loc(node), field: "outputs",
                        "output '\(output)' is never defined: it is not in 'data:' and no task writes it")
                }
                guard seen.insert(output).inserted else {
                    throw error(.invalidValue, loc(node), field: "outputs", "output '\(output)' is listed twice")
                }
                outputs.append(WorkflowFile.Output(name: output, location: loc(node)))
            }
        }
        return WorkflowFile(name: name, path: file, data: data, tasks: tasks, outputs: outputs, nameLocation: loc(nameNode))
    }

    // MARK: data

    mutating func parseData(_ node: Node) throws(WorkflowFileError) -> [WorkflowFile.InitialDatum] {
        if YAMLDiagnostics.isNull(node) { return [] }
        var result: [WorkflowFile.InitialDatum] = []
        for p in try pairs(node, task: nil, field: "data", what: "a mapping of data names to values") {
            try checkName(p.key, p.keyNode, task: nil, field: "data", what: "datum")
            let field = "data.\(p.key)"
            switch p.value {
            case .scalar(let s):
                if YAMLDiagnostics.isNull(p.value) {
                    throw error(.wrongType, loc(p.value), field: field, "expected inline text or { file: path }, found nothing")
                }
                try spend(p.key.utf8.count + s.string.utf8.count, loc(p.keyNode), task: nil, field: field)
                result.append(.init(name: p.key, value: .inline(Array(s.string.utf8)), location: loc(p.keyNode)))
            case .mapping:
                let inner = try pairs(p.value, task: nil, field: field, what: "{ file: path }")
                try checkKeys(inner, known: ["file"], task: nil, what: "data")
                guard let fileNode = inner.first(where: { $0.key == "file" })?.value else {
                    throw error(.missingField, loc(p.value), field: field, "expected { file: path }")
                }
                let relative = try string(fileNode, task: nil, field: "\(field).file")
                let url = relative.hasPrefix("/")
                    ? URL(fileURLWithPath: relative)
                    : URL(fileURLWithPath: relative, relativeTo: baseDirectory)
                let standardized = url.standardizedFileURL.path
                if let problem = DataFileCheck.problem(relative.utf8.contains(0) ? relative : standardized) {
                    throw error(problem.kind, loc(fileNode), field: "\(field).file", "data file '\(relative)' \(problem.message)")
                }
                // The run copies the file; a copy of a symbolic link would be the link itself.
                let resolved = DataFileCheck.realPath(standardized) ?? standardized
                try spend(p.key.utf8.count + resolved.utf8.count, loc(p.keyNode), task: nil, field: field)
                result.append(.init(name: p.key, value: .file(path: resolved), location: loc(p.keyNode)))
            default:
                throw error(.wrongType, loc(p.value), field: field, "expected inline text or { file: path }, found \(Self.describe(p.value))")
            }
        }
        return result
    }

    // MARK: tasks

    mutating func parseTask(_ item: Node, into tasks: inout [TaskCall], names: inout [String: SourceLocation]) throws(WorkflowFileError) {
        let fields = try pairs(item, task: nil, field: "tasks", what: "a task mapping")
        func value(_ key: String) -> Node? { fields.first { $0.key == key }?.value }
        guard let nameNode = value("name") else {
            throw error(.missingField, loc(item), field: "name", "task has no 'name'")
        }
        let nameTemplate = try string(nameNode, task: nil, field: "name")
        let task: String? = nameTemplate
        try checkKeys(fields, known: WorkflowFile.taskKeys, task: task, what: "task")

        let directionKeys = Direction.allCases.map(\.description)
        let execNode = value("exec"), taskNode = value("task")
        switch (execNode, taskNode) {
        case (nil, nil):
            throw error(.taskKind, loc(item), task: task, field: "exec", "task has neither 'exec' nor 'task'; give one of them")
        case (.some, .some(let t)):
            throw error(.taskKind, loc(t), task: task, field: "task", "task has both 'exec' and 'task'; give only one of them")
        case (.some, nil):
            for key in ["args"] + directionKeys {
                if let p = fields.first(where: { $0.key == key }) {
                    throw error(
                        .taskKind, loc(p.keyNode), task: task, field: key,
                        "'\(key)' is only for registered tasks ('task:'); exec tasks name their data with placeholders such as {in:x}")
                }
            }
        case (nil, .some):
            break
        }

        var retries = 0
        if let node = value("retries") {
            guard case .scalar(let s) = node, let n = Int(s.string), n >= 0 else {
                throw error(
                    .invalidValue, loc(node), task: task, field: "retries",
                    "'retries' must be an integer from 0 to \(WorkflowFile.maxRetries)")
            }
            guard n <= WorkflowFile.maxRetries else {
                throw error(
                    .invalidValue, loc(node), task: task, field: "retries",
                    "'retries' is \(n); at most \(WorkflowFile.maxRetries) retries are allowed")
            }
            retries = n
        }
        var onFailure = FailureAction.fail
        if let node = value("onFailure") {
            let text = try string(node, task: task, field: "onFailure")
            guard let policy = FailureAction(name: text) else {
                let known = FailureAction.allCases.map(\.description)
                let hint = WorkflowNames.closest(to: text, in: known).map { " (did you mean '\($0)'?)" } ?? ""
                throw error(
                    .invalidValue, loc(node), task: task, field: "onFailure",
                    "unknown failure policy '\(text)'\(hint); expected \(known.joined(separator: ", "))")
            }
            onFailure = policy
        }

        // foreach
        var variables: [(name: String, values: ForeachValues)] = []
        var expansion = 1
        if let node = value("foreach") {
            for p in try pairs(node, task: task, field: "foreach", what: "a mapping of variables to ranges or lists") {
                guard WorkflowNames.isIdentifier(Substring(p.key)) else {
                    throw error(
                        .invalidName, loc(p.keyNode), task: task, field: "foreach",
                        "invalid foreach variable name '\(WorkflowNames.shown(p.key))' (variables use letters, digits and '_', not first a digit)")
                }
                guard p.key.count <= WorkflowNames.maxVariableLength else {
                    throw error(
                        .invalidName, loc(p.keyNode), task: task, field: "foreach",
                        "foreach variable name '\(WorkflowNames.shown(p.key))' is \(p.key.count) characters long; variables are at most \(WorkflowNames.maxVariableLength)")
                }
                let values = try foreachValues(p.value, variable: p.key, task: task)
                variables.append((p.key, values))
                let (product, overflow) = expansion.multipliedReportingOverflow(by: values.count)
                expansion = overflow ? Int.max : product
            }
        }
        if expansion > options.maxTasks - tasks.count {
            throw error(
                .badForeach, loc(value("foreach") ?? item), task: task, field: "foreach",
                "task expands to \(expansion == Int.max ? "too many" : String(expansion)) calls; with the \(tasks.count) before it that exceeds maxTasks (\(options.maxTasks))")
        }

        // Expand.
        let accessKeys = fields.filter { directionKeys.contains($0.key) }
        for index in 0..<expansion {
            var bindings: [ForeachBinding] = []
            var dict: [String: String] = [:]
            var rest = index
            for v in variables.reversed() {
                let value = v.values[rest % v.values.count]
                rest /= v.values.count
                bindings.append(ForeachBinding(variable: v.name, value: value))
                dict[v.name] = value
            }
            bindings.reverse()

            let expandedName = dict.isEmpty ? nameTemplate : substituteForeachVariables(nameTemplate, dict, limit: WorkflowNames.maxNameBytes)
            guard let name = expandedName else {
                throw error(
                    .invalidName, loc(nameNode), task: WorkflowNames.shown(nameTemplate), field: "name",
                    "the task name expands to more than \(WorkflowNames.maxNameBytes) bytes; names are at most \(WorkflowNames.maxNameBytes) bytes, as they become file names")
            }
            try checkName(name, nameNode, task: name, field: "name", what: "task")
            var size = name.utf8.count + bindings.reduce(0) { $0 + $1.value.utf8.count }
            if let first = names[name] {
                throw error(
                    .duplicateTask, loc(nameNode), task: name, field: "name",
                    "duplicate task name '\(name)' (first defined at line \(first.line))")
            }
            names[name] = loc(nameNode)

            var origins: [String: (field: String, location: SourceLocation)] = [:]
            let kind: TaskCall.Kind
            let accesses: [DataAccess]
            if let execNode {
                guard let text = substituteForeachVariables(
                    try string(execNode, task: name, field: "exec"), dict, limit: options.maxCommandBytes)
                else {
                    throw error(
                        .tooLarge, loc(execNode), task: name, field: "exec",
                        "the command is longer than \(options.maxCommandBytes) bytes (maxCommandBytes); put a long script in a data file and run it with 'sh {in:script}'")
                }
                size += text.utf8.count
                let template: CommandTemplate
                do {
                    template = try CommandTemplate(parsing: text)
                } catch {
                    let k: WorkflowFileError.Kind = error.kind == .directionConflict ? .directionConflict : .placeholderSyntax
                    var at = loc(execNode)
                    if k == .placeholderSyntax { at = locate(text, offset: error.offset, in: execNode) }
                    throw self.error(k, at, task: name, field: "exec", error.message)
                }
                kind = .exec(command: template)
                accesses = template.accesses
                for a in accesses { origins[a.datum] = ("exec", loc(execNode)) }
            } else {
                let taskName = try string(taskNode!, task: name, field: "task")
                var argsJSON = Array("{}".utf8)
                if let args = fields.first(where: { $0.key == "args" }) {
                    let argsNode = args.value
                    var json = ArgumentsJSON(bindings: dict, task: name, root: loc(args.keyNode))
                    try appendJSON(argsNode, depth: 0, to: &json)
                    argsJSON = json.out
                }
                size += argsJSON.count
                kind = .registered(task: taskName, argsJSON: argsJSON)
                var merged: [DataAccess] = []
                var index: [String: Int] = [:]
                for p in accessKeys {
                    let direction = Direction(name: p.key)!
                    for (raw, node) in try self.names(p.value, task: name, field: p.key) {
                        let expandedDatum = dict.isEmpty ? raw : substituteForeachVariables(raw, dict, limit: WorkflowNames.maxNameBytes)
                        guard let datum = expandedDatum else {
                            throw error(
                                .invalidName, loc(node), task: name, field: p.key,
                                "the datum name '\(WorkflowNames.shown(raw))' expands to more than \(WorkflowNames.maxNameBytes) bytes; names are at most \(WorkflowNames.maxNameBytes) bytes, as they become file names")
                        }
                        try checkName(datum, node, task: name, field: p.key, what: "datum")
                        if let at = index[datum] {
                            guard let m = CommandTemplate.merge(merged[at].direction, direction) else {
                                throw error(
                                    .directionConflict, loc(node), task: name, field: p.key,
                                    "datum '\(datum)' is used as both '\(merged[at].direction)' and '\(direction)'")
                            }
                            merged[at].direction = m
                        } else {
                            index[datum] = merged.count
                            merged.append(DataAccess(datum: datum, direction: direction))
                            origins[datum] = (p.key, loc(node))
                        }
                    }
                }
                accesses = merged
            }
            size += accesses.reduce(0) { $0 + $1.datum.utf8.count }
            try spend(size, loc(item), task: name, field: value("foreach") != nil ? "foreach" : "tasks")
            tasks.append(TaskCall(
                name: name, location: loc(item), kind: kind, accesses: accesses, retries: retries,
                onFailure: onFailure, bindings: bindings))
            accessOrigins.append(origins)
        }
    }

    /// The position of the placeholder at `offset` of `text` (the command of `node`), when the
    /// same characters can be found on the node's source line; else the node's position.
    func locate(_ text: String, offset: Int, in node: Node) -> SourceLocation {
        let start = loc(node)
        let chars = Array(text)
        guard offset < chars.count, start.line >= 1, start.line <= sourceLines.count else { return start }
        var end = offset + 1
        while end < chars.count, end - offset < 16, chars[end] != "}", chars[end] != " " { end += 1 }
        let needle = String(chars[offset..<end])
        let line = sourceLines[start.line - 1]
        let scalars = Array(line.unicodeScalars)
        let from = min(max(start.column - 1, 0), scalars.count)
        let rest = String(String.UnicodeScalarView(scalars[from...]))
        guard let r = rest.range(of: needle) else { return start }
        return SourceLocation(line: start.line, column: from + rest.unicodeScalars.distance(from: rest.startIndex, to: r.lowerBound) + 1)
    }

    func foreachValues(_ node: Node, variable: String, task: String?) throws(WorkflowFileError) -> ForeachValues {
        let field = "foreach"
        let usage = "expected \"a..<b\", \"a...b\" or a list [x, y]"
        switch node {
        case .sequence(let seq):
            var values: [String] = []
            for item in seq { values.append(try string(item, task: task, field: field)) }
            guard !values.isEmpty else {
                throw error(.badForeach, loc(node), task: task, field: field, "foreach variable '\(variable)' has an empty list")
            }
            return .list(values)
        case .scalar(let s):
            let text = s.string.trimmingCharacters(in: .whitespaces)
            for (op, closed) in [("..<", false), ("...", true)] {
                guard let r = text.range(of: op) else { continue }
                let lo = text[..<r.lowerBound].trimmingCharacters(in: .whitespaces)
                let hi = text[r.upperBound...].trimmingCharacters(in: .whitespaces)
                guard let a = Int(lo), let b = Int(hi) else { break }
                let (span, overflow) = b.subtractingReportingOverflow(a)
                let count = overflow ? Int.max : (closed ? (span == Int.max ? Int.max : span + 1) : span)
                guard count > 0 else {
                    throw error(
                        .badForeach, loc(node), task: task, field: field,
                        "foreach range '\(s.string)' for variable '\(variable)' is empty")
                }
                return .range(lower: a, count: count)
            }
            throw error(
                .badForeach, loc(node), task: task, field: field,
                "bad foreach range '\(s.string)' for variable '\(variable)'; \(usage)")
        default:
            throw error(.badForeach, loc(node), task: task, field: field, "bad foreach value for variable '\(variable)'; \(usage)")
        }
    }

    // MARK: args → JSON

    /// The state of one task's `args` conversion: its output and what it has used of the limits.
    struct ArgumentsJSON {
        var bindings: [String: String]
        var task: String
        /// Where the `args` key is, for the limit errors.
        var root: SourceLocation
        var out: [UInt8] = []
        var nodes = 0
    }

    /// Appends `node` as JSON. Aliases were expanded by the composer, so a node may be reached
    /// many times; every visit counts against `maxArgumentNodes`, so a few lines of nested aliases
    /// (`&a [*b, *b, …]`) are refused instead of being walked for ever.
    func appendJSON(_ node: Node, depth: Int, to json: inout ArgumentsJSON) throws(WorkflowFileError) {
        json.nodes += 1
        if json.nodes > options.maxArgumentNodes {
            throw error(
                .tooLarge, json.root, task: json.task, field: "args",
                "'args' has more than \(options.maxArgumentNodes) YAML nodes (maxArgumentNodes) once aliases (*name) are expanded; put large inputs in data files")
        }
        if depth >= options.maxArgumentDepth, Self.isCollection(node) {
            throw error(
                .tooLarge, loc(node), task: json.task, field: "args",
                "'args' nests lists and mappings more than \(options.maxArgumentDepth) levels deep (maxArgumentDepth)")
        }
        try appendJSONValue(node, depth: depth, to: &json)
        if json.out.count > options.maxArgumentBytes {
            throw error(
                .tooLarge, json.root, task: json.task, field: "args",
                "'args' is more than \(options.maxArgumentBytes) bytes as JSON (maxArgumentBytes); put large inputs in data files")
        }
    }

    static func isCollection(_ node: Node) -> Bool {
        switch node {
        case .sequence, .mapping: true
        case .scalar, .alias: false
        }
    }

    private func appendJSONValue(_ node: Node, depth: Int, to json: inout ArgumentsJSON) throws(WorkflowFileError) {
        let task = json.task
        switch node {
        case .scalar(let s):
            var text = s.string
            var tag = Resolver.default.resolveTag(of: node)
            if !json.bindings.isEmpty {
                let room = options.maxArgumentBytes - json.out.count
                guard let substituted = substituteForeachVariables(text, json.bindings, limit: max(room, 0)) else {
                    throw error(
                        .tooLarge, loc(node), task: task, field: "args",
                        "'args' is more than \(options.maxArgumentBytes) bytes as JSON (maxArgumentBytes) once foreach variables are substituted")
                }
                if substituted != text {
                    text = substituted
                    if s.style == .plain || s.style == .any {
                        tag = Resolver.default.resolveTag(of: Node(text))
                    }
                }
            }
            let scalar = Node.Scalar(text)
            switch tag {
            case .null:
                json.out += Array("null".utf8)
            case .bool:
                guard let b = Bool.construct(from: scalar) else { fallthrough }
                json.out += Array((b ? "true" : "false").utf8)
            case .int:
                if let i = Int.construct(from: scalar) {
                    json.out += Array(String(i).utf8)
                } else if let d = Double.construct(from: scalar), d.isFinite {
                    json.out += Array("\(d)".utf8)
                } else {
                    appendJSONString(text, to: &json.out)
                }
            case .float:
                guard let d = Double.construct(from: scalar) else {
                    appendJSONString(text, to: &json.out)
                    return
                }
                guard d.isFinite else {
                    throw error(.invalidValue, loc(node), task: task, field: "args", "'\(text)' has no JSON representation")
                }
                json.out += Array((d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) + ".0" : "\(d)").utf8)
            default:
                appendJSONString(text, to: &json.out)
            }
        case .sequence(let seq):
            json.out.append(UInt8(ascii: "["))
            for (i, item) in seq.enumerated() {
                if i > 0 { json.out.append(UInt8(ascii: ",")) }
                try appendJSON(item, depth: depth + 1, to: &json)
            }
            json.out.append(UInt8(ascii: "]"))
        case .mapping:
            json.out.append(UInt8(ascii: "{"))
            for (i, p) in try pairs(node, task: task, field: "args", what: "a mapping").enumerated() {
                if i > 0 { json.out.append(UInt8(ascii: ",")) }
                json.nodes += 1  // the key
                appendJSONString(p.key, to: &json.out)
                json.out.append(UInt8(ascii: ":"))
                try appendJSON(p.value, depth: depth + 1, to: &json)
            }
            json.out.append(UInt8(ascii: "}"))
        case .alias:
            throw error(.wrongType, loc(node), task: task, field: "args", "YAML aliases are not supported in 'args'")
        }
    }

    func appendJSONString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += Array("\\\"".utf8)
            case "\\": out += Array("\\\\".utf8)
            case "\n": out += Array("\\n".utf8)
            case "\r": out += Array("\\r".utf8)
            case "\t": out += Array("\\t".utf8)
            default:
                if u.value < 0x20 {
                    let hex = String(u.value, radix: 16)
                    out += Array(("\\u" + String(repeating: "0", count: 4 - hex.count) + hex).utf8)
                } else {
                    out += Array(String(u).utf8)
                }
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// Checks that a path names a regular file that can be opened for reading, without blocking:
/// a FIFO would hang the run's copy, a device such as `/dev/zero` would never end (or end
/// empty), and a directory is not data. Symbolic links are followed, so a link to a regular file
/// is accepted and a link to any of those is not.
enum DataFileCheck {
    struct Problem {
        var kind: WorkflowFileError.Kind
        /// A phrase after "data file 'x' ", e.g. "is a FIFO (named pipe), not a regular file (/p)".
        var message: String
    }

    /// Nil when `path` is a regular file this process can open for reading.
    static func problem(_ path: String) -> Problem? {
        if path.utf8.contains(0) { return Problem(kind: .badDataFile, message: "contains a NUL character") }
        var st = stat()
        guard stat(path, &st) == 0 else {
            let e = errno
            if e == ENOENT || e == ENOTDIR {
                if isSymbolicLink(path) {
                    return Problem(kind: .missingDataFile, message: "is a symbolic link to a file that does not exist (\(path))")
                }
                return Problem(kind: .missingDataFile, message: "does not exist (looked for \(path))")
            }
            return Problem(kind: .badDataFile, message: "cannot be read: \(String(cString: strerror(e))) (\(path))")
        }
        let type = st.st_mode & S_IFMT
        guard type == S_IFREG else {
            let via = isSymbolicLink(path) ? "a symbolic link to " : ""
            return Problem(kind: .badDataFile, message: "is \(via)\(FileKind(mode: st.st_mode)), not a regular file (\(path))")
        }
        // O_NONBLOCK: if the file was swapped for a FIFO since the stat, the open does not wait.
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            return Problem(kind: .badDataFile, message: "cannot be read: \(String(cString: strerror(errno))) (\(path))")
        }
        defer { close(fd) }
        var opened = stat()
        guard fstat(fd, &opened) == 0, opened.st_mode & S_IFMT == S_IFREG else {
            return Problem(kind: .badDataFile, message: "changed while it was checked and is no longer a regular file (\(path))")
        }
        return nil
    }

    /// `path` with every symbolic link resolved (realpath), or nil if that fails.
    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func isSymbolicLink(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFLNK
    }
}
