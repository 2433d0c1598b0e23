import ShoalCore

/// The catalogue keys of the scenario shapes' modelled bodies, derived from their names like any
/// other key (`CatalogueKey`).
public enum ModelledKeys {
    public static let point = CatalogueKey.modelled("point")
    public static let generate = CatalogueKey.modelled("cross-correlation.generate")
    public static let fragment = CatalogueKey.modelled("cross-correlation.fragment")
    public static let gather = CatalogueKey.modelled("cross-correlation.gather")
    /// What every simulated peer can run of them.
    public static let all = [point, generate, fragment, gather]
}

/// Workflow shapes for scenarios and benchmarks.
extension WorkflowSpec {
    /// Task Bench `stencil_1d`: `width` points over `steps` steps; point x of step s reads points
    /// x-1, x, x+1 of step s-1. Each point is a datum written once per step.
    public static func stencil(width: Int, steps: Int, cost: Interval, bytes: UInt64 = 64) -> WorkflowSpec {
        var tasks: [WorkflowTaskSpec] = []
        tasks.reserveCapacity(width * steps)
        // Two data per point (even and odd steps) so a step reads the previous one's values.
        for s in 0..<steps {
            let (from, to) = s % 2 == 0 ? (0, width) : (width, 0)
            for x in 0..<width {
                var accesses: [WorkflowTaskSpec.Access] = []
                for n in max(0, x - 1)...min(width - 1, x + 1) { accesses.append(.init(from + n, .in)) }
                accesses.append(.init(to + x, .out))
                tasks.append(WorkflowTaskSpec(catalogueKey: ModelledKeys.point, cost: cost, accesses: accesses, outputBytes: bytes))
            }
        }
        return WorkflowSpec(name: "stencil \(width)x\(steps)", dataCount: 2 * width, initialBytes: bytes, tasks: tasks)
    }

    /// `count` independent tasks, each writing its own datum.
    public static func independent(count: Int, cost: Interval, bytes: UInt64 = 8) -> WorkflowSpec {
        let tasks = (0..<count).map {
            WorkflowTaskSpec(catalogueKey: ModelledKeys.point, cost: cost, accesses: [.init($0, .out)], outputBytes: bytes)
        }
        return WorkflowSpec(name: "independent \(count)", dataCount: count, initialBytes: bytes, tasks: tasks)
    }

    /// The shape of the cross-correlation example (`shoal demo`): one task generates the spike
    /// trains; `fragments` tasks each correlate a block of pairs from them; each fragment is
    /// gathered into the two result matrices (`commutative`: one group each, members in any order).
    public static func crossCorrelation(
        fragments: Int, generateCost: Interval, fragmentCost: Interval, gatherCost: Interval,
        trainsBytes: UInt64 = 4 << 20, fragmentBytes: UInt64 = 1 << 20, matrixBytes: UInt64 = 4 << 20
    ) -> WorkflowSpec {
        // Data: 0 trains, 1 ccOriginal, 2 ccSurrogates, 3... one result per fragment.
        var tasks = [
            WorkflowTaskSpec(catalogueKey: ModelledKeys.generate, cost: generateCost, accesses: [.init(0, .out)], outputBytes: trainsBytes)
        ]
        for f in 0..<fragments {
            tasks.append(
                WorkflowTaskSpec(
                    catalogueKey: ModelledKeys.fragment, cost: fragmentCost, accesses: [.init(0, .in), .init(3 + f, .out)],
                    outputBytes: fragmentBytes))
            tasks.append(
                WorkflowTaskSpec(
                    catalogueKey: ModelledKeys.gather, cost: gatherCost,
                    accesses: [.init(3 + f, .in), .init(1, .commutative), .init(2, .commutative)],
                    outputBytes: matrixBytes))
        }
        return WorkflowSpec(name: "cross-correlation \(fragments) fragments", dataCount: 3 + fragments, tasks: tasks)
    }
}
