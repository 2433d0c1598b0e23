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
