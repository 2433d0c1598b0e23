import ShoalCore

/// The catalogue keys of the scenario shapes' modelled bodies, derived from their names like any
/// other key (`CatalogueKey`).
public enum ModelledKeys {
    public static let point = CatalogueKey.modelled("point")
    /// The adaptive program's (`AdaptiveProgram`): a round's work, its gather into the total, and
    /// its fold into the accumulator.
    public static let work = CatalogueKey.modelled("adaptive.work")
    public static let gather = CatalogueKey.modelled("adaptive.gather")
    public static let fold = CatalogueKey.modelled("adaptive.fold")
    /// What every simulated peer can run of them (a recorded shape adds its own,
    /// `RecordedShape.catalogue`).
    public static let all = [point, work, gather, fold]
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
}

/// A real program's calls, recorded by running its code (`Shoal.record`): which task each call
/// runs and what it reads and writes, so a scenario plays the program's own DAG, not a copy of it.
/// In a scenario the bodies are modelled: a call of task `t` costs the scenario's `taskMicros`
/// and writes its `bytes`, each times `t`'s weight.
public struct RecordedShape: Sendable, Codable, Hashable {
    public struct Call: Sendable, Codable, Hashable {
        public var task: String
        public var accesses: [WorkflowTaskSpec.Access]
        public init(task: String, accesses: [WorkflowTaskSpec.Access]) {
            self.task = task
            self.accesses = accesses
        }
    }

    /// A task's modelled cost and output size, relative to the scenario's.
    public struct Weight: Sendable, Codable, Hashable {
        public var cost: Double
        public var bytes: Double
        public init(cost: Double, bytes: Double) {
            self.cost = cost
            self.bytes = bytes
        }
    }

    /// The workflow's name in reports.
    public var name: String
    public var dataCount: Int
    public var calls: [Call]
    /// By task name; a task without one weighs 1 and 1.
    public var weights: [String: Weight]
    /// The initial values' size, relative to the scenario's bytes.
    public var initialWeight: Double

    public init(name: String, dataCount: Int, calls: [Call], weights: [String: Weight] = [:], initialWeight: Double = 1) {
        self.name = name
        self.dataCount = dataCount
        self.calls = calls
        self.weights = weights
        self.initialWeight = initialWeight
    }

    /// The modelled body of task `task`.
    public static func key(_ task: String) -> UInt64 { CatalogueKey.modelled(task) }

    /// The keys of its tasks' modelled bodies (what the simulated peers must be able to run).
    public var catalogue: [UInt64] { Set(calls.map(\.task)).sorted().map(Self.key) }

    /// The workflow with modelled bodies: each call costs `cost` and writes `bytes`, times its weight.
    public func spec(cost: Interval, bytes: UInt64) -> WorkflowSpec {
        func scaled(_ x: UInt64, _ weight: Double) -> UInt64 { UInt64((Double(x) * weight).rounded()) }
        let tasks = calls.map { call in
            let w = weights[call.task] ?? Weight(cost: 1, bytes: 1)
            return WorkflowTaskSpec(
                catalogueKey: Self.key(call.task), cost: Interval(nanoseconds: Int64((Double(cost.nanoseconds) * w.cost).rounded())),
                accesses: call.accesses, outputBytes: scaled(bytes, w.bytes), label: call.task)
        }
        return WorkflowSpec(name: name, dataCount: dataCount, initialBytes: scaled(bytes, initialWeight), tasks: tasks)
    }
}
