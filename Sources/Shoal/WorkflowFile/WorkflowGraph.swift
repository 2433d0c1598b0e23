extension WorkflowFile {
    /// The task graph of this workflow as the runtime will build it: every edge is a
    /// read-after-write dependence, labelled with the datum version (`loud@v2`). Computed by
    /// feeding the calls to the real `DataflowGraph` machine without running anything.
    public func dependenceGraph() -> (tasks: [String], edges: [DependenceEdge]) {
        var graph = DataflowGraph(settings: SchedulerSettings(slots: 1, maxLiveTasks: .max))
        var directives: [Directive] = []
        var ids: [String: DatumID] = [:]
        func id(_ name: String) -> DatumID {
            if let d = ids[name] { return d }
            let d = DatumID(raw: UInt32(ids.count))
            ids[name] = d
            return d
        }
        // Versions are never released while their writer is pending, and nothing runs here; an
        // initial version may be released once superseded, so its slot can be reused.
        var writers: [VersionID: [String]] = [:]
        var number: [VersionID: Int] = [:]
        var counts: [String: Int] = [:]
        func forgetReleased() {
            for case .releaseVersion(let v) in directives {
                writers[v] = nil
                number[v] = nil
            }
            directives.removeAll()
        }
        for datum in data {
            let v = graph.define(id(datum.name), into: &directives)
            forgetReleased()
            counts[datum.name] = 1
            number[v] = 1
        }
        var edges: [DependenceEdge] = []
        for call in tasks {
            let t = graph.submit(call.accesses.map { (id($0.datum), $0.direction) }, into: &directives)
            forgetReleased()
            for (access, resolved) in zip(call.accesses, graph.accesses(of: t)) {
                if let r = resolved.read, let ws = writers[r] {
                    let label = "\(access.datum)@v\(number[r] ?? 0)"
                    for w in ws where w != call.name { edges.append(DependenceEdge(from: w, to: call.name, label: label)) }
                }
                if let w = resolved.written {
                    if number[w] == nil {
                        counts[access.datum, default: 0] += 1
                        number[w] = counts[access.datum]
                    }
                    writers[w, default: []].append(call.name)
                }
            }
        }
        return (tasks.map(\.name), edges)
    }

    /// The task graph in Graphviz DOT (COMPSs `-g`).
    public func dot() -> String {
        let g = dependenceGraph()
        return DotRenderer.render(name: name, tasks: g.tasks, edges: g.edges)
    }
}
