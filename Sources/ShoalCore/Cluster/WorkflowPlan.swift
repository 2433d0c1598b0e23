/// One task call of a cluster workflow, in program order: which body it runs, what it costs (a
/// model for the simulator; real peers time the body), what it reads and writes.
public struct WorkflowTaskSpec: Sendable, Hashable, Codable {
    /// The registered body (a key of the peers' catalogues).
    public var catalogueKey: UInt64
    /// Modelled run time of the body.
    public var cost: Interval
    /// (datum index, direction) in argument order.
    public var accesses: [Access]
    /// Size of each version this task writes.
    public var outputBytes: UInt64

    public struct Access: Sendable, Hashable, Codable {
        public var datum: Int32
        public var direction: Direction
        public init(_ datum: Int, _ direction: Direction) {
            self.datum = Int32(datum)
            self.direction = direction
        }
    }

    public init(catalogueKey: UInt64, cost: Interval, accesses: [Access], outputBytes: UInt64) {
        self.catalogueKey = catalogueKey
        self.cost = cost
        self.accesses = accesses
        self.outputBytes = outputBytes
    }
}

/// A workflow as its submitter writes it: a sequential program of task calls over `dataCount`
/// data (indices `0..<dataCount`), each datum with an initial value of `initialBytes` held by the
/// submitting peer.
public struct WorkflowSpec: Sendable, Hashable, Codable {
    public var name: String
    public var dataCount: Int
    public var initialBytes: UInt64
    public var tasks: [WorkflowTaskSpec]

    public init(name: String, dataCount: Int, initialBytes: UInt64 = 8, tasks: [WorkflowTaskSpec]) {
        self.name = name
        self.dataCount = dataCount
        self.initialBytes = initialBytes
        self.tasks = tasks
    }
}

/// The versioned task graph of a `WorkflowSpec` (COMPSs renaming: every write makes a new version,
/// so only read-after-write orders tasks), in flat arrays so that a million-task plan costs tens
/// of megabytes, not hundreds.
///
/// Versions are numbered: `0..<dataCount` are the initial values, then each task's outputs in
/// program order. Group directions (`commutative`, `concurrent`) are planned as `inout`: the
/// cluster runs such calls one after the other in program order (correct, less parallel than the
/// local engine, which reorders them).
public struct WorkflowPlan: Sendable {
    public let name: String
    public let dataCount: Int
    public let initialBytes: UInt64
    /// Per task: its body, modelled cost (nanoseconds) and output size.
    public private(set) var catalogueKey: [UInt64] = []
    public private(set) var cost: [Int64] = []
    public private(set) var outputBytes: [UInt64] = []
    /// Task t reads versions `inputs[inputStart[t]..<inputStart[t+1]]`.
    public private(set) var inputStart: [Int32] = [0]
    public private(set) var inputs: [Int32] = []
    /// Task t writes versions `outputStart[t]..<outputStart[t+1]` (consecutive numbers).
    public private(set) var outputStart: [Int32] = []
    /// The task producing each version (-1 for an initial value).
    public private(set) var producer: [Int32] = []
    /// Which datum each version is a version of.
    public private(set) var datumOf: [Int32] = []
    /// Version v is read by tasks `consumers[consumerStart[v]..<consumerStart[v+1]]`.
    public private(set) var consumerStart: [Int32] = []
    public private(set) var consumers: [Int32] = []
    /// The last version of each datum: the workflow's results.
    public private(set) var finalVersion: [Int32] = []

    public var taskCount: Int { catalogueKey.count }
    public var versionCount: Int { producer.count }

    public init(_ spec: WorkflowSpec) {
        name = spec.name
        dataCount = spec.dataCount
        initialBytes = spec.initialBytes
        catalogueKey = spec.tasks.map(\.catalogueKey)
        cost = spec.tasks.map(\.cost.nanoseconds)
        outputBytes = spec.tasks.map(\.outputBytes)
        var current = (0..<spec.dataCount).map(Int32.init)
        producer = Array(repeating: -1, count: spec.dataCount)
        datumOf = current
        var nextVersion = Int32(spec.dataCount)
        inputStart.reserveCapacity(spec.tasks.count + 1)
        outputStart.reserveCapacity(spec.tasks.count + 1)
        for (t, task) in spec.tasks.enumerated() {
            for a in task.accesses where a.direction.reads {
                inputs.append(current[Int(a.datum)])
            }
            inputStart.append(Int32(inputs.count))
            outputStart.append(nextVersion)
            for a in task.accesses where a.direction.writes {
                current[Int(a.datum)] = nextVersion
                producer.append(Int32(t))
                datumOf.append(a.datum)
                nextVersion += 1
            }
        }
        outputStart.append(nextVersion)
        finalVersion = current
        buildConsumers()
    }

    /// A plan from its stored arrays (`RecordCodec`): the rest is derived as `init(_:)` does.
    init(
        name: String, dataCount: Int, initialBytes: UInt64, catalogueKey: [UInt64], cost: [Int64],
        outputBytes: [UInt64], inputStart: [Int32], inputs: [Int32], outputStart: [Int32], datumOf: [Int32]
    ) {
        self.name = name
        self.dataCount = dataCount
        self.initialBytes = initialBytes
        self.catalogueKey = catalogueKey
        self.cost = cost
        self.outputBytes = outputBytes
        self.inputStart = inputStart
        self.inputs = inputs
        self.outputStart = outputStart
        self.datumOf = datumOf
        producer = Array(repeating: -1, count: datumOf.count)
        for t in 0..<catalogueKey.count {
            for v in outputStart[t]..<outputStart[t + 1] { producer[Int(v)] = Int32(t) }
        }
        var current = (0..<dataCount).map(Int32.init)
        for v in dataCount..<datumOf.count { current[Int(datumOf[v])] = Int32(v) }
        finalVersion = current
        buildConsumers()
    }

    /// Consumers of every version, by counting sort over the inputs.
    private mutating func buildConsumers() {
        var counts = [Int32](repeating: 0, count: producer.count + 1)
        for v in inputs { counts[Int(v) + 1] += 1 }
        for i in 1..<counts.count { counts[i] += counts[i - 1] }
        consumerStart = counts
        consumers = [Int32](repeating: 0, count: inputs.count)
        var fill = counts
        for t in 0..<catalogueKey.count {
            for i in Int(inputStart[t])..<Int(inputStart[t + 1]) {
                let v = Int(inputs[i])
                consumers[Int(fill[v])] = Int32(t)
                fill[v] += 1
            }
        }
    }

    public func inputs(of task: Int) -> ArraySlice<Int32> { inputs[Int(inputStart[task])..<Int(inputStart[task + 1])] }
    public func outputs(of task: Int) -> Range<Int32> { outputStart[task]..<outputStart[task + 1] }
    public func consumers(of version: Int) -> ArraySlice<Int32> {
        consumers[Int(consumerStart[version])..<Int(consumerStart[version + 1])]
    }
    public func isFinal(_ version: Int) -> Bool { finalVersion[Int(datumOf[version])] == Int32(version) }

    // MARK: The modelled values

    /// The content of an initial value (the simulator's stand-in for the submitter's data).
    public static func initialContent(workflow: UInt32, datum: Int) -> UInt64 {
        mix(UInt64(workflow) &* 0x100_0000_01B3 ^ UInt64(datum) &+ 0x5EED)
    }

    /// The content task `task` writes as its `ordinal`-th output, given its inputs' contents: what a
    /// simulated body computes. It depends on every input, so a task that ran on a wrong or stale
    /// input gives a different final result than the sequential program.
    public static func outputContent(task: Int, catalogueKey: UInt64, inputs: some Sequence<UInt64>, ordinal: Int)
        -> UInt64
    {
        var h = mix(catalogueKey ^ (UInt64(task) << 20) ^ UInt64(ordinal))
        for c in inputs { h = mix(h ^ c) }
        return h
    }

    /// The contents of the final versions (`finalVersion` order) when the tasks run one by one in
    /// program order: what every correct run must end with.
    public func sequentialResults(workflow: UInt32) -> [UInt64] {
        var content = [UInt64](repeating: 0, count: versionCount)
        for d in 0..<dataCount { content[d] = Self.initialContent(workflow: workflow, datum: d) }
        var scratch: [UInt64] = []
        for t in 0..<taskCount {
            scratch.removeAll(keepingCapacity: true)
            for v in inputs(of: t) { scratch.append(content[Int(v)]) }
            for (k, v) in outputs(of: t).enumerated() {
                content[Int(v)] = Self.outputContent(
                    task: t, catalogueKey: catalogueKey[t], inputs: scratch, ordinal: k)
            }
        }
        return finalVersion.map { content[Int($0)] }
    }

    @inline(__always) static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
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
                tasks.append(WorkflowTaskSpec(catalogueKey: 1, cost: cost, accesses: accesses, outputBytes: bytes))
            }
        }
        return WorkflowSpec(name: "stencil \(width)x\(steps)", dataCount: 2 * width, initialBytes: bytes, tasks: tasks)
    }

    /// `count` independent tasks, each writing its own datum.
    public static func independent(count: Int, cost: Interval, bytes: UInt64 = 8) -> WorkflowSpec {
        let tasks = (0..<count).map {
            WorkflowTaskSpec(catalogueKey: 1, cost: cost, accesses: [.init($0, .out)], outputBytes: bytes)
        }
        return WorkflowSpec(name: "independent \(count)", dataCount: count, initialBytes: bytes, tasks: tasks)
    }

    /// The shape of the cross-correlation example (`shoal demo`): one task generates the spike
    /// trains; `fragments` tasks each correlate a block of pairs from them; each fragment is
    /// gathered into the two result matrices (`commutative`, planned in program order).
    public static func crossCorrelation(
        fragments: Int, generateCost: Interval, fragmentCost: Interval, gatherCost: Interval,
        trainsBytes: UInt64 = 4 << 20, fragmentBytes: UInt64 = 1 << 20, matrixBytes: UInt64 = 4 << 20
    ) -> WorkflowSpec {
        // Data: 0 trains, 1 ccOriginal, 2 ccSurrogates, 3... one result per fragment.
        var tasks = [
            WorkflowTaskSpec(catalogueKey: 10, cost: generateCost, accesses: [.init(0, .out)], outputBytes: trainsBytes)
        ]
        for f in 0..<fragments {
            tasks.append(
                WorkflowTaskSpec(
                    catalogueKey: 11, cost: fragmentCost, accesses: [.init(0, .in), .init(3 + f, .out)],
                    outputBytes: fragmentBytes))
            tasks.append(
                WorkflowTaskSpec(
                    catalogueKey: 12, cost: gatherCost,
                    accesses: [.init(3 + f, .in), .init(1, .commutative), .init(2, .commutative)],
                    outputBytes: matrixBytes))
        }
        return WorkflowSpec(name: "cross-correlation \(fragments) fragments", dataCount: 3 + fragments, tasks: tasks)
    }
}
