import Foundation
import Yams

extension WorkflowFile {
    /// Limits applied while parsing.
    public struct ParseOptions: Sendable, Hashable {
        /// The most task calls the whole file may expand to (after `foreach`).
        public var maxTasks: Int

        public init(maxTasks: Int = 1_000_000) {
            self.maxTasks = maxTasks
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
    public static func load(path: String, options: ParseOptions = ParseOptions()) throws(WorkflowFileError) -> WorkflowFile {
        guard let bytes = FileManager.default.contents(atPath: path) else {
            throw WorkflowFileError(.unreadable, file: path, location: nil, message: "cannot read the workflow file")
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

    /// A plain scalar that YAML reads as null (empty, `~`, `null`).
    static func isNull(_ node: Node) -> Bool {
        guard case .scalar(let s) = node, s.style == .plain || s.style == .any else { return false }
        return Resolver.default.resolveTag(of: node) == .null
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
        if Self.isNull(node) {
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
        guard WorkflowNames.isValid(name) else {
            var hint = ""
            if name.contains("{") { hint = "; is the '{...}' a foreach variable of this task?" }
            throw error(
                .invalidName, loc(node), task: task, field: field,
                "invalid \(what) name '\(name)' (names use letters, digits, '_', '.', '-')\(hint)")
        }
    }

    // MARK: Top level

    mutating func parse(_ yaml: String) throws(WorkflowFileError) -> WorkflowFile {
        sourceLines = yaml.split(separator: "\n", omittingEmptySubsequences: false)
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: yaml) else {
                throw error(.wrongType, nil, "the file is empty; expected a mapping with 'name' and 'tasks'")
            }
            root = node
        } catch let e as WorkflowFileError {
            throw e
        } catch let e as YamlError {
            throw yamlError(e)
        } catch {
            throw self.error(.yamlSyntax, nil, "not a YAML file: \(error)")
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

        var data: [WorkflowFile.InitialDatum] = []
        if let dataNode = value("data") {
            data = try parseData(dataNode)
        }

        guard let tasksNode = value("tasks") else {
            throw error(.missingField, loc(root), field: "tasks", "missing 'tasks'")
        }
        guard case .sequence(let taskItems) = tasksNode else {
            if Self.isNull(tasksNode) {
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
        return WorkflowFile(name: name, path: file, data: data, tasks: tasks, outputs: outputs)
    }

    func yamlError(_ e: YamlError) -> WorkflowFileError {
        func at(_ mark: Mark) -> SourceLocation { SourceLocation(line: mark.line, column: mark.column) }
        func withContext(_ problem: String, _ context: YamlError.Context?) -> String {
            guard let context else { return problem }
            return "\(problem) (\(context.text) at line \(context.mark.line), column \(context.mark.column))"
        }
        switch e {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            return error(.yamlSyntax, at(mark), "YAML syntax error: \(withContext(problem, context))")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return error(
                .yamlSyntax, at(context.mark),
                "duplicate key\(duplicates.count > 1 ? "s" : "") " + duplicates.map { "'\($0)'" }.joined(separator: ", ") + " in a mapping")
        case .reader(let problem, _, _, _):
            return error(.yamlSyntax, nil, "not a YAML file: \(problem)")
        default:
            return error(.yamlSyntax, nil, "not a YAML file: \(e)")
        }
    }

    // MARK: data

    func parseData(_ node: Node) throws(WorkflowFileError) -> [WorkflowFile.InitialDatum] {
        if Self.isNull(node) { return [] }
        var result: [WorkflowFile.InitialDatum] = []
        for p in try pairs(node, task: nil, field: "data", what: "a mapping of data names to values") {
            try checkName(p.key, p.keyNode, task: nil, field: "data", what: "datum")
            let field = "data.\(p.key)"
            switch p.value {
            case .scalar(let s):
                if Self.isNull(p.value) {
                    throw error(.wrongType, loc(p.value), field: field, "expected inline text or { file: path }, found nothing")
                }
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
                let resolved = url.standardizedFileURL.path
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: resolved, isDirectory: &isDirectory), !isDirectory.boolValue else {
                    throw error(
                        .missingDataFile, loc(fileNode), field: "\(field).file",
                        "data file '\(relative)' does not exist (looked for \(resolved))")
                }
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
                throw error(.invalidValue, loc(node), task: task, field: "retries", "'retries' must be a non-negative integer")
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
                    throw error(.invalidName, loc(p.keyNode), task: task, field: "foreach", "invalid foreach variable name '\(p.key)'")
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

            let name = substituteForeachVariables(nameTemplate, dict)
            try checkName(name, nameNode, task: name, field: "name", what: "task")
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
                let text = substituteForeachVariables(try string(execNode, task: name, field: "exec"), dict)
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
                if let argsNode = value("args") {
                    argsJSON = []
                    try appendJSON(argsNode, bindings: dict, task: name, to: &argsJSON)
                }
                kind = .registered(task: taskName, argsJSON: argsJSON)
                var merged: [DataAccess] = []
                for p in accessKeys {
                    let direction = Direction(name: p.key)!
                    for (raw, node) in try self.names(p.value, task: name, field: p.key) {
                        let datum = substituteForeachVariables(raw, dict)
                        try checkName(datum, node, task: name, field: p.key, what: "datum")
                        if let at = merged.firstIndex(where: { $0.datum == datum }) {
                            guard let m = CommandTemplate.merge(merged[at].direction, direction) else {
                                throw error(
                                    .directionConflict, loc(node), task: name, field: p.key,
                                    "datum '\(datum)' is used as both '\(merged[at].direction)' and '\(direction)'")
                            }
                            merged[at].direction = m
                        } else {
                            merged.append(DataAccess(datum: datum, direction: direction))
                            origins[datum] = (p.key, loc(node))
                        }
                    }
                }
                accesses = merged
            }
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

    func appendJSON(_ node: Node, bindings: [String: String], task: String, to out: inout [UInt8]) throws(WorkflowFileError) {
        switch node {
        case .scalar(let s):
            var text = s.string
            var tag = Resolver.default.resolveTag(of: node)
            if !bindings.isEmpty {
                let substituted = substituteForeachVariables(text, bindings)
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
                out += Array("null".utf8)
            case .bool:
                guard let b = Bool.construct(from: scalar) else { fallthrough }
                out += Array((b ? "true" : "false").utf8)
            case .int:
                if let i = Int.construct(from: scalar) {
                    out += Array(String(i).utf8)
                } else if let d = Double.construct(from: scalar), d.isFinite {
                    out += Array("\(d)".utf8)
                } else {
                    appendJSONString(text, to: &out)
                }
            case .float:
                guard let d = Double.construct(from: scalar) else {
                    appendJSONString(text, to: &out)
                    return
                }
                guard d.isFinite else {
                    throw error(.invalidValue, loc(node), task: task, field: "args", "'\(text)' has no JSON representation")
                }
                out += Array((d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) + ".0" : "\(d)").utf8)
            default:
                appendJSONString(text, to: &out)
            }
        case .sequence(let seq):
            out.append(UInt8(ascii: "["))
            for (i, item) in seq.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                try appendJSON(item, bindings: bindings, task: task, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .mapping:
            out.append(UInt8(ascii: "{"))
            for (i, p) in try pairs(node, task: task, field: "args", what: "a mapping").enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                appendJSONString(p.key, to: &out)
                out.append(UInt8(ascii: ":"))
                try appendJSON(p.value, bindings: bindings, task: task, to: &out)
            }
            out.append(UInt8(ascii: "}"))
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
