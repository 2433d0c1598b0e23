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
/// data (indices `0..<dataCount`), each datum with an initial value (modelled: of `initialBytes`)
/// held by the submitting peer.
///
/// A program that grows its workflow while it runs (`WorkflowPlan.extend`, `wait`) also defines
/// data and waits between its calls: `marks` say where, so that any peer rebuilds the very same
/// plan from the spec. Without marks every datum is defined before the first call.
public struct WorkflowSpec: Sendable, Hashable, Codable {
    public var name: String
    public var dataCount: Int
    public var initialBytes: UInt64
    public var tasks: [WorkflowTaskSpec]
    /// In task order: data defined, and waits, between calls.
    public var marks: [Mark] = []

    /// Something the program did before task `beforeTask` (or at the end, `tasks.count`).
    public struct Mark: Sendable, Hashable, Codable {
        public enum Kind: Sendable, Hashable, Codable {
            /// `count` new data (the next datum indices) with their initial values.
            case newData(count: Int32)
            /// A wait on `datum`: a read, so it closes the datum's open group.
            case wait(datum: Int32)
        }
        public var beforeTask: Int32
        public var kind: Kind
        public init(beforeTask: Int, _ kind: Kind) {
            self.beforeTask = Int32(clamping: beforeTask)
            self.kind = kind
        }
    }

    public init(name: String, dataCount: Int, initialBytes: UInt64 = 8, tasks: [WorkflowTaskSpec], marks: [Mark] = []) {
        self.name = name
        self.dataCount = dataCount
        self.initialBytes = initialBytes
        self.tasks = tasks
        self.marks = marks
    }

    /// The data defined before the first call (the others by `newData` marks).
    public var initialDataCount: Int {
        marks.reduce(dataCount) { n, m in if case .newData(let c) = m.kind { n - Int(c) } else { n } }
    }
}

/// The versioned task graph of a `WorkflowSpec`, in flat arrays so that a million-task plan costs
/// tens of megabytes, not hundreds. Any peer rebuilds it from the calls alone (a backup, a
/// restarted peer): the calls are what the record stores, and the renaming is deterministic.
///
/// **Growth.** A plan made `open` grows while its program runs: `extend` appends a batch of calls
/// (and new data), `wait` resolves a datum's current version for the program (closing its open
/// group, as any read does), `close` ends it (no call can follow: every open group closes). A
/// group stays open across batches until a call, a wait or the close ends it; its version is
/// made only once it is closed and its members are done. A workflow file is one batch and a
/// close; a whole spec (`init(_:)`) is a closed plan.
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
    public private(set) var dataCount: Int
    public let initialBytes: UInt64
    /// Whether calls may still be appended (`extend`).
    public var isOpen: Bool { ledger != nil }
    /// The renaming state between batches while the plan is open.
    private var ledger: WorkflowPlanBuilder?
    /// Data defined and waits between calls (`WorkflowSpec.marks`).
    public private(set) var marks: [WorkflowSpec.Mark] = []
    /// Per datum, its initial version (`0..<n` for the data defined before the first call).
    public private(set) var initialVersion: [Int32] = []
    /// Consumers of versions read by calls appended since the consumer index was last rebuilt.
    private var lateConsumers: [Int32: [Int32]] = [:]
    private var lateCount = 0

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
        try self.init(spec, open: false)
    }

    /// The plan of `spec`, still open for more calls when `open` (`extend`, `wait`, `close`).
    public init(_ spec: WorkflowSpec, open: Bool) throws(WorkflowPlan.Invalid) {
        name = spec.name
        initialBytes = spec.initialBytes
        let start = spec.initialDataCount
        guard start >= 0, spec.marks.count <= WorkflowPlanBuilder.maxIndex,
            zip(spec.marks, spec.marks.dropFirst()).allSatisfy({ $0.beforeTask <= $1.beforeTask }),
            spec.marks.allSatisfy({ $0.beforeTask >= 0 && Int($0.beforeTask) <= spec.tasks.count })
        else { throw WorkflowPlan.Invalid(description: "the spec's marks are out of order or range") }
        dataCount = start
        var builder = try WorkflowPlanBuilder(dataCount: start, taskCount: spec.tasks.count)
        var m = 0
        for t in 0...spec.tasks.count {
            while m < spec.marks.count && Int(spec.marks[m].beforeTask) == t {
                switch spec.marks[m].kind {
                case .newData(let n):
                    guard n >= 0, Int(n) <= WorkflowPlanBuilder.maxIndex - builder.dataCount else {
                        throw WorkflowPlan.Invalid(description: "the spec defines too many data")
                    }
                case .wait(let d):
                    guard d >= 0, Int(d) < builder.dataCount else {
                        throw WorkflowPlan.Invalid(description: "a wait on datum \(d), which is not defined yet")
                    }
                }
                builder.apply(spec.marks[m].kind)
                m += 1
            }
            if t < spec.tasks.count {
                try builder.check(spec.tasks[t], index: t, dataCount: builder.dataCount)
                builder.append(spec.tasks[t], index: t)
            }
        }
        guard builder.dataCount == spec.dataCount else {
            throw WorkflowPlan.Invalid(description: "the spec defines \(builder.dataCount) data, not \(spec.dataCount)")
        }
        marks = spec.marks
        finish(builder, open: open, previousTasks: 0)
    }

    /// Appends a batch of the program's calls, after `newData` new data (the next datum indices).
    /// Returns the groups the batch closed (a call read or overwrote their datum). Throws, changing
    /// nothing, for a call that does not fit (the batch may come from another peer).
    @discardableResult
    public mutating func extend(_ calls: [WorkflowTaskSpec], newData: Int) throws(WorkflowPlan.Invalid) -> [Int] {
        guard var builder = ledger else { throw WorkflowPlan.Invalid(description: "the workflow is closed") }
        guard newData >= 0, newData <= WorkflowPlanBuilder.maxIndex - dataCount,
            calls.count <= WorkflowPlanBuilder.maxIndex - taskCount
        else { throw WorkflowPlan.Invalid(description: "\(newData) new data and \(calls.count) calls do not fit the plan") }
        // Every call is checked before any is appended: a batch that does not fit changes nothing.
        let first = taskCount
        for (i, call) in calls.enumerated() { try builder.check(call, index: first + i, dataCount: dataCount + newData) }
        builder.adoptParts(takeParts())
        var added: [WorkflowSpec.Mark] = []
        if newData > 0 {
            let mark = WorkflowSpec.Mark(beforeTask: first, .newData(count: Int32(newData)))
            builder.apply(mark.kind)
            added.append(mark)
        }
        for (i, call) in calls.enumerated() { builder.append(call, index: first + i) }
        marks += added
        let closed = builder.takeClosedGroups()
        finish(builder, open: true, previousTasks: first)
        return closed
    }

    /// A wait of the program on `datum`: its current version, which the program is answered with
    /// once it exists, and the group the wait closed, if any.
    public mutating func wait(on datum: Int) throws(WorkflowPlan.Invalid) -> (version: Int, closedGroup: Int?) {
        guard var builder = ledger else { throw WorkflowPlan.Invalid(description: "the workflow is closed") }
        guard datum >= 0, datum < dataCount else {
            throw WorkflowPlan.Invalid(description: "a wait on datum \(datum), but the workflow has \(dataCount) data")
        }
        let tasks = taskCount
        builder.adoptParts(takeParts())
        let mark = WorkflowSpec.Mark(beforeTask: tasks, .wait(datum: Int32(datum)))
        builder.apply(mark.kind)
        marks.append(mark)
        let closed = builder.takeClosedGroups().first
        finish(builder, open: true, previousTasks: tasks)
        return (Int(finalVersion[datum]), closed)
    }

    /// Ends the program: no call can follow, and every open group closes (returned).
    @discardableResult
    public mutating func close() -> [Int] {
        guard var builder = ledger else { return [] }
        let tasks = taskCount
        builder.adoptParts(takeParts())
        builder.closeAll()
        let closed = builder.takeClosedGroups()
        finish(builder, open: false, previousTasks: tasks)
        return closed
    }

    /// Takes the builder's arrays; keeps its renaming state while the plan is open.
    /// (`previousTasks`: the calls the consumer index covered before.)
    private mutating func finish(_ builder: consuming WorkflowPlanBuilder, open: Bool, previousTasks: Int) {
        var builder = builder
        if !open { builder.closeAll() }
        _ = builder.takeClosedGroups()
        dataCount = builder.dataCount
        let finals = builder.currentVersions
        let parts = builder.takeParts()
        adopt(parts, finalVersion: finals, previousTasks: previousTasks)
        ledger = open ? builder : nil
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
    /// The tasks that read version `version` as a plain input, in program order.
    public func consumers(of version: Int) -> Consumers {
        Consumers(
            indexed: consumers[Int(consumerStart[version])..<Int(consumerStart[version + 1])],
            late: lateConsumers.isEmpty ? [] : lateConsumers[Int32(version)] ?? [])
    }

    /// The readers of a version: those in the consumer index, then those appended since.
    public struct Consumers: Sequence {
        let indexed: ArraySlice<Int32>
        let late: [Int32]
        public struct Iterator: IteratorProtocol {
            var indexed: ArraySlice<Int32>.Iterator
            var late: IndexingIterator<[Int32]>
            public mutating func next() -> Int32? { indexed.next() ?? late.next() }
        }
        public func makeIterator() -> Iterator { Iterator(indexed: indexed.makeIterator(), late: late.makeIterator()) }
    }
    public func isFinal(_ version: Int) -> Bool { finalVersion[Int(datumOf[version])] == Int32(version) }
    /// The group of access `a` of a member, if it is a group access.
    public func group(ofAccess a: Int) -> Int? {
        accessDirection[a].isGroup ? groupOf[accessWritten[a]].map(Int.init) : nil
    }
    /// The groups task t is a member of.
    public func groups(of task: Int) -> [Int] { accessRange(of: task).compactMap(group(ofAccess:)) }

    /// Gives the arrays back to a builder (they move: no copy).
    private mutating func takeParts() -> WorkflowPlanBuilder.Parts {
        var parts = WorkflowPlanBuilder.Parts()
        swap(&parts.catalogueKey, &catalogueKey)
        swap(&parts.bodies, &bodies)
        swap(&parts.cost, &cost)
        swap(&parts.outputBytes, &outputBytes)
        swap(&parts.policy, &policy)
        swap(&parts.label, &label)
        swap(&parts.failingAttempts, &failingAttempts)
        swap(&parts.accessStart, &accessStart)
        swap(&parts.accessDatum, &accessDatum)
        swap(&parts.accessDirection, &accessDirection)
        swap(&parts.accessRead, &accessRead)
        swap(&parts.accessWritten, &accessWritten)
        swap(&parts.inputStart, &inputStart)
        swap(&parts.inputs, &inputs)
        swap(&parts.producer, &producer)
        swap(&parts.datumOf, &datumOf)
        swap(&parts.groups, &groups)
        swap(&parts.groupOf, &groupOf)
        swap(&parts.groupOfBase, &groupOfBase)
        swap(&parts.initialVersion, &initialVersion)
        return parts
    }

    /// Takes the builder's arrays and derives the consumers of the tasks from `previousTasks` on:
    /// into the consumer index, rebuilt whole when the late ones outgrow half of it.
    private mutating func adopt(_ parts: WorkflowPlanBuilder.Parts, finalVersion: [Int32], previousTasks: Int) {
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
        initialVersion = parts.initialVersion
        self.finalVersion = finalVersion
        let added = Int(inputStart[catalogueKey.count]) - Int(inputStart[min(previousTasks, catalogueKey.count)])
        if previousTasks == 0 || lateCount + added > max(4_096, consumers.count / 2) {
            buildConsumers()
            lateConsumers = [:]
            lateCount = 0
            return
        }
        for t in previousTasks..<catalogueKey.count {
            for v in inputs[Int(inputStart[t])..<Int(inputStart[t + 1])] { lateConsumers[v, default: []].append(Int32(t)) }
        }
        lateCount += added
        let last = consumerStart.last ?? 0
        while consumerStart.count < producer.count + 1 { consumerStart.append(last) }
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
        WorkflowSpec(name: name, dataCount: dataCount, initialBytes: initialBytes, tasks: calls(0..<taskCount), marks: marks)
    }

    /// Calls `range` as they were given.
    public func calls(_ range: Range<Int>) -> [WorkflowTaskSpec] {
        range.map { t in
            var call = WorkflowTaskSpec(
                catalogueKey: catalogueKey[t], cost: Interval(nanoseconds: cost[t]),
                accesses: accessRange(of: t).map { WorkflowTaskSpec.Access(Int(accessDatum[$0]), accessDirection[$0]) },
                outputBytes: outputBytes[t], policy: policy[t], label: label[t], failingAttempts: failingAttempts[t])
            call.body = body(of: t)
            return call
        }
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
