import Yams

/// What the YAML readers (workflow files here, scenario files in the `shoal` command) say about a
/// file they refuse, in one place so both say it alike.
public enum YAMLDiagnostics {
    /// Why a text is not YAML: where (when Yams knows) and what, in words.
    public struct Problem: Error, Sendable {
        public var line: Int?
        public var column: Int?
        public var message: String
    }

    /// A plain scalar that YAML reads as null (empty, `~`, `null`).
    public static func isNull(_ node: Node) -> Bool {
        guard case .scalar(let s) = node, s.style == .plain || s.style == .any else { return false }
        // Yams's null pattern (`Resolver.default`: `~`, `null`, `Null`, `NULL` or nothing), matched
        // here without its regular expression: this runs for every scalar a workflow file's
        // parser reads, once per expanded task, and the regex was most of a big foreach's parse.
        switch s.string {
        case "", "~", "null", "Null", "NULL": return true
        default: return false
        }
    }

    /// A node as an error message shows what was found: a plain scalar as written, a quoted one
    /// marked as text, null as "nothing", the others by their kind.
    public static func shown(_ node: Node) -> String {
        switch node {
        case .scalar(let s):
            isNull(node)
                ? "nothing" : s.style == .plain || s.style == .any ? "'\(s.string)'" : "\"\(s.string)\" (in quotes, so text)"
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias"
        }
    }

    /// The YAML node tree of `text` (nil for an empty document), or the problem in words.
    public static func compose(_ text: String) throws(Problem) -> Node? {
        do {
            return try Yams.compose(yaml: text)
        } catch let e as YamlError {
            let (line, column, message) = describe(e)
            throw Problem(line: line, column: column, message: message)
        } catch {
            throw Problem(line: nil, column: nil, message: "not a YAML file: \(error)")
        }
    }

    /// Where Yams located a problem (line and column when it knows them) and the problem in
    /// words, for an error in the `file:line:column: message` style.
    public static func describe(_ e: YamlError) -> (line: Int?, column: Int?, message: String) {
        func withContext(_ problem: String, _ context: YamlError.Context?) -> String {
            guard let context else { return problem }
            return "\(problem) (\(context.text) at line \(context.mark.line), column \(context.mark.column))"
        }
        switch e {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            return (mark.line, mark.column, "YAML syntax error: \(withContext(problem, context))")
        case .duplicatedKeysInMapping(let duplicates, let context):
            let keys = duplicates.map { "'\($0)'" }.joined(separator: ", ")
            return (context.mark.line, context.mark.column, "duplicate key\(duplicates.count > 1 ? "s" : "") \(keys) in a mapping")
        case .reader(let problem, _, _, _):
            return (nil, nil, "not a YAML file: \(problem)")
        default:
            return (nil, nil, "not a YAML file: \(e)")
        }
    }

    /// The closest of `candidates` to `word` (Levenshtein distance, ignoring case), if it is close
    /// enough to suggest ("did you mean 'latencyMicros'?").
    public static func closest(to word: String, in candidates: [String]) -> String? {
        var best: (String, Int)?
        for c in candidates {
            let d = distance(word.lowercased(), c.lowercased())
            if best == nil || d < best!.1 { best = (c, d) }
        }
        guard let (c, d) = best else { return nil }
        return d <= max(2, c.count / 3) ? c : nil
    }

    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count)
        var cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            cur[0] = i
            for j in 1...b.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }
}

/// Why a YAML input file other than a workflow file (a scenario, a costs file) was refused:
/// `FILE:LINE:COLUMN: field 'faults[2].crash': peer 999 does not exist (the scenario has 4 peers, 0..3)`.
public struct YAMLFileError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The file as the caller named it.
    public var file: String
    /// 1-based line and column of the node concerned (of the key, for an unknown key), when known.
    public var line: Int?
    public var column: Int?
    /// The field's path in the file, e.g. `faults[2].crash`, when the problem is in one.
    public var field: String?
    /// What is wrong, without the position prefix.
    public var message: String

    public init(file: String, line: Int? = nil, column: Int? = nil, field: String? = nil, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        self.message = message
    }

    /// Where `node` is in `file` (its line and column, when it has a mark).
    public init(file: String, at node: Node?, field: String?, message: String) {
        self.init(file: file, line: node?.mark?.line, column: node?.mark?.column, field: field, message: message)
    }

    public var description: String {
        var s = file
        if let line, let column { s += ":\(line):\(column)" }
        s += ": "
        if let field { s += "field '\(field)': " }
        return s + message
    }
}
