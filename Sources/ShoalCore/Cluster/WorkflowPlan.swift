/// One task call of a cluster workflow, in program order: the one call type of every workflow
/// (a Swift program's, a workflow file's, a scenario's). Its body, what it reads and writes (in
/// argument order, with directions), its failure policy and its label; for a modelled body, what
/// it costs and writes.
public struct WorkflowTaskSpec: Sendable, Hashable, Codable {
    /// What it runs.
    public var body: TaskBody
    /// Which peers can run it (a key of their catalogues): the body's key (`TaskBody.catalogueKey`),
    /// or for a modelled body its shape's.
    public var catalogueKey: UInt64
    /// Modelled run time of the body.
    public var cost: Interval
    /// (datum index, direction) in argument order.
    public var accesses: [Access]
    /// Size of each version this task writes.
    public var outputBytes: UInt64
    /// Retries, then what a failure does (the local engine's policy, `FailurePolicy`).
    public var policy: FailurePolicy
    /// The task's name in failure reports ("task 'label' failed ...").
    public var label: String
    /// A modelled body fails its first `failingAttempts` attempts (scenarios only; a real body
    /// fails when it throws or exits non-zero).
    public var failingAttempts: UInt16

    public struct Access: Sendable, Hashable, Codable {
        public var datum: Int32
        public var direction: Direction
        public init(_ datum: Int, _ direction: Direction) {
            self.datum = Int32(datum)
            self.direction = direction
        }
    }

    /// A modelled call (scenarios).
    public init(
        catalogueKey: UInt64, cost: Interval, accesses: [Access], outputBytes: UInt64, policy: FailurePolicy = .default,
        label: String = "", failingAttempts: UInt16 = 0
    ) {
        self.body = .modelled
        self.catalogueKey = catalogueKey
        self.cost = cost
        self.accesses = accesses
        self.outputBytes = outputBytes
        self.policy = policy
        self.label = label
        self.failingAttempts = failingAttempts
    }

    /// A call of a real body (a registered task or an exec command). `cost` is what the simulator
    /// advances virtual time by (real peers time the body); outputs have their real sizes.
    public init(body: TaskBody, accesses: [Access], policy: FailurePolicy = .default, label: String = "", cost: Interval = .zero) {
        self.body = body
        self.catalogueKey = body.catalogueKey ?? 0
        self.cost = cost
        self.accesses = accesses
        self.outputBytes = 0
        self.policy = policy
        self.label = label
        self.failingAttempts = 0
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

/// The versioned task graph of a `WorkflowSpec`, in flat arrays so that a million-task plan costs
/// tens of megabytes, not hundreds. Any peer rebuilds it from the calls alone (a backup, a
/// restarted peer): the calls are what the record stores, and the renaming is deterministic.
///
/// The renaming is the one the local graph uses (`VersionLedger.rename`), fed by
/// `WorkflowPlanBuilder`. Versions are numbered: `0..<dataCount` are the initial values, then new
/// versions in the order the renaming makes them.
///
/// **Groups.** A run of `commutative` (or `concurrent`) calls on one datum is a `PlanGroup`: it
/// writes one group version, which later calls read. Its members run one at a time in any order
/// (the owner holds the group's lock): each member reads the group's current value (the base
/// before the group, then the last member's output) and writes its own *partial* version, so a
/// member's output is a version like any other, with a holder and a checksum. When every member
/// has run, the group version is the last partial. The plan records which version a member reads
/// statically (the base, for lineage); the owner substitutes the current partial when it hands
/// the task out. `concurrent` groups are run the same way on the cluster: members on different
/// peers cannot share one instance, so they take turns.
public struct WorkflowPlan: Sendable {
    public let name: String
    public let dataCount: Int
    public let initialBytes: UInt64

    // The calls, in program order.
    /// Per task: its catalogue key, modelled cost (nanoseconds) and output size.
    public private(set) var catalogueKey: [UInt64] = []
    /// Per task its body, or empty when every body is modelled (a million-task scenario carries no
    /// array of them): see `body(of:)`.
    public private(set) var bodies: [TaskBody] = []
    public private(set) var cost: [Int64] = []
    public private(set) var outputBytes: [UInt64] = []
    public private(set) var policy: [FailurePolicy] = []
    public private(set) var label: [String] = []
    public private(set) var failingAttempts: [UInt16] = []
    /// Task t's accesses are `accessStart[t]..<accessStart[t+1]` of the per-access arrays.
    public private(set) var accessStart: [Int32] = [0]
    public private(set) var accessDatum: [Int32] = []
    public private(set) var accessDirection: [Direction] = []

    // What the renaming made of them.
    /// Per access: the version read and the version written (-1: none). A group member reads the
    /// group's base and writes its partial version.
    public private(set) var accessRead: [Int32] = []
    public private(set) var accessWritten: [Int32] = []
    /// Task t's plain inputs (every read but a group member's read of its group) are
    /// `inputs[inputStart[t]..<inputStart[t+1]]`: what the task waits for.
    public private(set) var inputStart: [Int32] = [0]
    public private(set) var inputs: [Int32] = []
    /// The task producing each version: -1 for an initial value, `PlanGroup.producer` for a group's
    /// version (its members make it together).
    public private(set) var producer: [Int32] = []
    /// Which datum each version is a version of.
    public private(set) var datumOf: [Int32] = []
    /// Version v is read (as a plain input) by tasks `consumers[consumerStart[v]..<consumerStart[v+1]]`.
    public private(set) var consumerStart: [Int32] = []
    public private(set) var consumers: [Int32] = []
    /// The last version of each datum: the workflow's results.
    public private(set) var finalVersion: [Int32] = []
    public private(set) var groups: [PlanGroup] = []
    /// The group of each group version and partial version.
    public private(set) var groupOf: [Int32: Int32] = [:]
    /// The group each group's base is the base of (a version is the base of at most one group:
    /// the group's version supersedes it).
    public private(set) var groupOfBase: [Int32: Int32] = [:]

    public var taskCount: Int { catalogueKey.count }
    /// What task t runs.
    public func body(of t: Int) -> TaskBody { bodies.isEmpty ? .modelled : bodies[t] }
    public var versionCount: Int { producer.count }
    public var accessCount: Int { accessDatum.count }

    /// The plan of `spec`. Throws when a call names a datum out of range or one datum twice, or
    /// when the plan would not fit its 32-bit indices: a spec may come from another peer.
    public init(_ spec: WorkflowSpec) throws(WorkflowPlan.Invalid) {
        name = spec.name
        dataCount = spec.dataCount
        initialBytes = spec.initialBytes
        var builder = try WorkflowPlanBuilder(dataCount: spec.dataCount, taskCount: spec.tasks.count)
        for (t, task) in spec.tasks.enumerated() {
            try builder.append(task, index: t)
        }
        builder.finish(into: &self)
    }

    /// The accesses of task `t`, as indices of the per-access arrays.
    public func accessRange(of t: Int) -> Range<Int> { Int(accessStart[t])..<Int(accessStart[t + 1]) }
    /// Task t's plain inputs (not its reads of a group it is a member of).
    public func inputs(of task: Int) -> ArraySlice<Int32> { inputs[Int(inputStart[task])..<Int(inputStart[task + 1])] }
    /// The versions task t writes, in access order (a member's partial for a group access).
    public func outputs(of task: Int) -> [Int32] {
        accessRange(of: task).compactMap { accessWritten[$0] >= 0 ? accessWritten[$0] : nil }
    }
    /// Whether task t writes version v.
    public func writes(_ task: Int, _ v: Int32) -> Bool { accessRange(of: task).contains { accessWritten[$0] == v } }
    public func consumers(of version: Int) -> ArraySlice<Int32> {
        consumers[Int(consumerStart[version])..<Int(consumerStart[version + 1])]
    }
    public func isFinal(_ version: Int) -> Bool { finalVersion[Int(datumOf[version])] == Int32(version) }
    /// The group of access `a` of a member, if it is a group access.
    public func group(ofAccess a: Int) -> Int? {
        accessDirection[a].isGroup ? groupOf[accessWritten[a]].map(Int.init) : nil
    }
    /// The groups task t is a member of.
    public func groups(of task: Int) -> [Int] { accessRange(of: task).compactMap(group(ofAccess:)) }

    /// Takes the builder's arrays and derives the consumers.
    mutating func adopt(_ parts: WorkflowPlanBuilder.Parts, finalVersion: [Int32]) {
        catalogueKey = parts.catalogueKey
        bodies = parts.bodies
        cost = parts.cost
        outputBytes = parts.outputBytes
        policy = parts.policy
        label = parts.label
        failingAttempts = parts.failingAttempts
        accessStart = parts.accessStart
        accessDatum = parts.accessDatum
        accessDirection = parts.accessDirection
        accessRead = parts.accessRead
        accessWritten = parts.accessWritten
        inputStart = parts.inputStart
        inputs = parts.inputs
        producer = parts.producer
        datumOf = parts.datumOf
        groups = parts.groups
        groupOf = parts.groupOf
        groupOfBase = parts.groupOfBase
        self.finalVersion = finalVersion
        buildConsumers()
    }

    /// Consumers of every version, by counting sort over the plain inputs.
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

    /// The calls this plan was built from (what a record stores).
    public var spec: WorkflowSpec {
        let tasks = (0..<taskCount).map { t in
            var call = WorkflowTaskSpec(
                catalogueKey: catalogueKey[t], cost: Interval(nanoseconds: cost[t]),
                accesses: accessRange(of: t).map { WorkflowTaskSpec.Access(Int(accessDatum[$0]), accessDirection[$0]) },
                outputBytes: outputBytes[t], policy: policy[t], label: label[t], failingAttempts: failingAttempts[t])
            call.body = body(of: t)
            return call
        }
        return WorkflowSpec(name: name, dataCount: dataCount, initialBytes: initialBytes, tasks: tasks)
    }

    /// How task t is named in reports: its label, or its index.
    public func name(of t: Int) -> String { label[t].isEmpty ? "\(t)" : label[t] }

    /// Why a spec has no plan.
    public struct Invalid: Error, Sendable, Hashable, CustomStringConvertible {
        public var description: String
    }

    // MARK: The modelled values

    /// The content of an initial value (the simulator's stand-in for the submitter's data).
    public static func initialContent(workflow: UInt64, datum: Int) -> UInt64 {
        mix(workflow &* 0x100_0000_01B3 ^ UInt64(datum) &+ 0x5EED)
    }

    /// What a modelled body computes: the contents of the versions task `task` writes (in access
    /// order), given the contents of those it reads (in access order) and its accesses'
    /// directions.
    ///
    /// A plain output depends on every plain input, so a task that ran on a wrong or stale input
    /// gives a different final result than the sequential program. A group access adds a
    /// contribution of the plain inputs to the group's value (wrapping addition): the members of a
    /// group commute, as their direction promises, so every order gives one result, while a lost
    /// or doubled member changes it.
    public static func modelledOutputs(
        task: Int, catalogueKey: UInt64, directions: some Collection<Direction>, inputs: [UInt64]
    ) -> [UInt64] {
        var h = mix(catalogueKey ^ (UInt64(task) << 20))
        var readIndex = 0
        var groupValues: [UInt64] = []
        for d in directions where d.reads {
            if d.isGroup { groupValues.append(inputs[readIndex]) } else { h = mix(h ^ inputs[readIndex]) }
            readIndex += 1
        }
        var outputs: [UInt64] = []
        var ordinal: UInt64 = 0
        var groupIndex = 0
        for d in directions where d.writes {
            let contribution = mix(h ^ ordinal)
            if d.isGroup {
                outputs.append(groupValues[groupIndex] &+ contribution)
                groupIndex += 1
            } else {
                outputs.append(contribution)
            }
            ordinal += 1
        }
        return outputs
    }

    @inline(__always) static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
