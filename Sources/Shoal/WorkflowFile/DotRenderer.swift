/// A data dependence between two tasks: `to` reads the version `label` (e.g. `loud@v1`) that
/// `from` wrote.
public struct DependenceEdge: Sendable, Hashable {
    public var from: String
    public var to: String
    public var label: String

    public init(from: String, to: String, label: String) {
        self.from = from
        self.to = to
        self.label = label
    }
}

/// Renders a task graph as Graphviz DOT, in the style of COMPSs' `-g` graphs: one node per task,
/// one edge per data dependence labelled with the data version.
///
/// Output is deterministic: nodes in the order given (tasks that appear only in edges follow,
/// sorted by name); edges sorted by the position of `from`, then of `to`, then by label;
/// duplicate edges are dropped. Identifiers and labels are always double-quoted and escaped.
public enum DotRenderer {
    /// The DOT text for graph `name`, ending with a newline.
    public static func render(name: String, tasks: [String], edges: [DependenceEdge]) -> String {
        var position: [String: Int] = [:]
        var nodes: [String] = []
        for t in tasks where position[t] == nil {
            position[t] = nodes.count
            nodes.append(t)
        }
        let extra = Set(edges.flatMap { [$0.from, $0.to] }).filter { position[$0] == nil }.sorted()
        for t in extra {
            position[t] = nodes.count
            nodes.append(t)
        }
        let sortedEdges = Set(edges).sorted {
            (position[$0.from]!, position[$0.to]!, $0.label) < (position[$1.from]!, position[$1.to]!, $1.label)
        }
        var out = "digraph \(quote(name)) {\n"
        out += "  rankdir=TB;\n"
        out += "  node [shape=circle, style=filled, fillcolor=\"#4f81bd\", fontcolor=white];\n"
        out += "  edge [fontsize=10];\n"
        for n in nodes {
            out += "  \(quote(n));\n"
        }
        for e in sortedEdges {
            out += "  \(quote(e.from)) -> \(quote(e.to)) [label=\(quote(e.label))];\n"
        }
        out += "}\n"
        return out
    }

    /// `s` as a DOT double-quoted string.
    static func quote(_ s: String) -> String {
        var q = "\""
        for c in s {
            switch c {
            case "\"": q += "\\\""
            case "\\": q += "\\\\"
            case "\n": q += "\\n"
            default: q.append(c)
            }
        }
        return q + "\""
    }
}
