/// A commutative or concurrent group of a cluster plan: consecutive calls on one datum that may
/// run in any order, one at a time. See `WorkflowPlan`.
public struct PlanGroup: Sendable, Hashable {
    /// `WorkflowPlan.producer` of a group version: made by the members together.
    public static let producer: Int32 = -2
    /// The group's version: what later calls read.
    public var version: Int32
    /// The version before the group: what the first member to run reads.
    public var base: Int32
    public var kind: Direction
    /// The members in program order, and the partial version each writes.
    public var members: [Int32] = []
    public var partials: [Int32] = []
    /// No member can join any more (a later call, a wait or the workflow's close ended it): its
    /// version is made once its members are done.
    public var closed = false
}

/// The cluster plan's side of the renaming rule (`VersionLedger`): versions are append-only
/// numbers, readers are appended to flat arrays, and nothing is ever released (the owner keeps
/// the whole plan; finished workflows are dropped whole).
///
/// Validates what it is given, because a plan may be rebuilt from another peer's record: every
/// datum index in range, no datum twice in one call, and counts that fit 32-bit indices.
struct WorkflowPlanBuilder: VersionLedger {
    typealias Reader = Int32
    typealias Effects = Void

    private var data: [DatumVersions]
    private(set) var dataCount: Int
    private(set) var plan = Parts()
    /// Groups closed since the last `takeClosedGroups`.
    private var closedGroups: [Int] = []
    /// The task being appended (its index) and the direction of the access being renamed.
    private var task: Int32 = 0
    private var direction = Direction.in

    /// The arrays a plan is made of, filled in program order.
    struct Parts {
        var catalogueKey: [UInt64] = []
        var bodies: [TaskBody] = []
        var cost: [Int64] = []
        var outputBytes: [UInt64] = []
        var policy: [FailurePolicy] = []
        var label: [String] = []
        var failingAttempts: [UInt16] = []
        var accessStart: [Int32] = [0]
        var accessDatum: [Int32] = []
        var accessDirection: [Direction] = []
        var accessRead: [Int32] = []
        var accessWritten: [Int32] = []
        var inputStart: [Int32] = [0]
        var inputs: [Int32] = []
        var producer: [Int32] = []
        var datumOf: [Int32] = []
        var groups: [PlanGroup] = []
        var groupOf: [Int32: Int32] = [:]
        var groupOfBase: [Int32: Int32] = [:]
        var initialVersion: [Int32] = []
    }

    /// Most versions (and accesses) a plan may have: its indices are 32-bit.
    static let maxIndex = Int(Int32.max) - 1
    /// Longest task label (it travels in every failure report).
    static let maxLabel = 1_024

    init(dataCount: Int, taskCount: Int) throws(WorkflowPlan.Invalid) {
        guard dataCount >= 0, dataCount <= Self.maxIndex, taskCount <= Self.maxIndex else {
            throw WorkflowPlan.Invalid(description: "\(dataCount) data and \(taskCount) tasks do not fit a plan")
        }
        self.dataCount = 0
        data = []
        plan.catalogueKey.reserveCapacity(taskCount)
        plan.cost.reserveCapacity(taskCount)
        plan.outputBytes.reserveCapacity(taskCount)
        plan.accessStart.reserveCapacity(taskCount + 1)
        plan.inputStart.reserveCapacity(taskCount + 1)
        // The data defined before the first call: versions 0..<dataCount.
        define(dataCount)
    }

    /// `count` new data, each with its initial value as a new version.
    private mutating func define(_ count: Int) {
        for _ in 0..<count {
            let d = Int32(dataCount)
            let v = newVersion(d, producer: -1)
            var versions = DatumVersions()
            versions.current = VersionID(raw: UInt32(v))
            data.append(versions)
            plan.initialVersion.append(v)
            dataCount += 1
        }
    }

    /// Applies what the program did between calls (checked by the caller).
    mutating func apply(_ mark: WorkflowSpec.Mark.Kind) {
        var effects: Void = ()
        switch mark {
        case .newData(let count): define(Int(count))
        case .wait(let datum): closeGroup(DatumID(raw: UInt32(datum)), effects: &effects)
        }
    }

    /// Closes every open group (the program ended).
    mutating func closeAll() {
        var effects: Void = ()
        for d in 0..<dataCount { closeGroup(DatumID(raw: UInt32(d)), effects: &effects) }
    }

    mutating func takeClosedGroups() -> [Int] {
        defer { closedGroups = [] }
        return closedGroups
    }

    /// Each datum's newest version (the plan's results so far).
    var currentVersions: [Int32] { data.map { Int32($0.current.raw) } }

    mutating func adoptParts(_ parts: Parts) { plan = parts }

    mutating func takeParts() -> Parts {
        var parts = Parts()
        swap(&parts, &plan)
        return parts
    }

    /// Checks that task `index` fits a plan of `dataCount` data: every datum in range and once,
    /// its body and label in bounds, and the plan's indices still 32-bit.
    func check(_ call: WorkflowTaskSpec, index: Int, dataCount: Int) throws(WorkflowPlan.Invalid) {
        guard call.accesses.count <= WorkSettings.maxOutputsPerTask else {
            throw WorkflowPlan.Invalid(
                description: "task \(index) has \(call.accesses.count) accesses; at most \(WorkSettings.maxOutputsPerTask)")
        }
        if let problem = call.body.problem {
            throw WorkflowPlan.Invalid(description: "task \(index): \(problem)")
        }
        if let key = call.body.catalogueKey, key != call.catalogueKey {
            throw WorkflowPlan.Invalid(description: "task \(index): its catalogue key is not its body's")
        }
        guard call.label.utf8.count <= Self.maxLabel else {
            throw WorkflowPlan.Invalid(description: "task \(index): its label is over \(Self.maxLabel) bytes")
        }
        guard plan.accessDatum.count + call.accesses.count <= Self.maxIndex,
            plan.producer.count + 2 * call.accesses.count <= Self.maxIndex
        else { throw WorkflowPlan.Invalid(description: "task \(index): the plan outgrows its 32-bit indices") }
        for (i, a) in call.accesses.enumerated() {
            guard a.datum >= 0, Int(a.datum) < dataCount else {
                throw WorkflowPlan.Invalid(
                    description: "task \(index) accesses datum \(a.datum), but the workflow has \(dataCount) data")
            }
            // Few accesses per call: a quadratic scan costs less than a set.
            guard !call.accesses[..<i].contains(where: { $0.datum == a.datum }) else {
                throw WorkflowPlan.Invalid(description: "task \(index) accesses datum \(a.datum) twice")
            }
        }
    }

    /// Renames the accesses of task `index` (the next in program order) and appends it. The call
    /// was checked (`check`).
    mutating func append(_ call: WorkflowTaskSpec, index: Int) {
        task = Int32(index)
        var effects: Void = ()
        for a in call.accesses {
            let datum = DatumID(raw: UInt32(a.datum))
            direction = a.direction
            // Every datum is defined (initial values), so every read resolves.
            let renamed = rename(datum, a.direction, by: task, effects: &effects)!
            plan.accessDatum.append(a.datum)
            plan.accessDirection.append(a.direction)
            plan.accessRead.append(renamed.read.map { Int32($0.raw) } ?? -1)
            guard let written = renamed.written.map({ Int32($0.raw) }) else {
                plan.accessWritten.append(-1)
                continue
            }
            if a.direction.isGroup {
                // A member writes its own partial version; the group's version is made of them.
                let g = plan.groupOf[written]!
                let partial = newVersion(a.datum, producer: task)
                plan.groups[Int(g)].members.append(task)
                plan.groups[Int(g)].partials.append(partial)
                plan.groupOf[partial] = g
                plan.accessWritten.append(partial)
            } else {
                plan.accessWritten.append(written)
            }
        }
        plan.accessStart.append(Int32(plan.accessDatum.count))
        plan.inputStart.append(Int32(plan.inputs.count))
        plan.catalogueKey.append(call.catalogueKey)
        // Bodies are kept from the first real one on (the tasks before it are modelled).
        if call.body != .modelled || !plan.bodies.isEmpty {
            if plan.bodies.count < index { plan.bodies += repeatElement(.modelled, count: index - plan.bodies.count) }
            plan.bodies.append(call.body)
        }
        plan.cost.append(call.cost.nanoseconds)
        plan.outputBytes.append(call.outputBytes)
        plan.policy.append(call.policy)
        plan.label.append(call.label)
        plan.failingAttempts.append(call.failingAttempts)
    }

    private mutating func newVersion(_ datum: Int32, producer: Int32) -> Int32 {
        plan.producer.append(producer)
        plan.datumOf.append(datum)
        return Int32(plan.producer.count - 1)
    }

    // MARK: VersionLedger

    subscript(versionsOf datum: DatumID) -> DatumVersions {
        get { data[Int(datum.raw)] }
        set { data[Int(datum.raw)] = newValue }
    }

    mutating func makeVersion(of datum: DatumID, opensGroup: Bool, effects: inout Void) -> VersionID {
        let d = Int32(datum.raw)
        guard opensGroup else { return VersionID(raw: UInt32(newVersion(d, producer: task))) }
        let base = Int32(data[Int(datum.raw)].current.raw)
        let g = newVersion(d, producer: PlanGroup.producer)
        plan.groupOf[g] = Int32(plan.groups.count)
        plan.groupOfBase[base] = Int32(plan.groups.count)
        plan.groups.append(PlanGroup(version: g, base: base, kind: direction))
        return VersionID(raw: UInt32(g))
    }

    mutating func addReader(_ reader: Int32, of version: VersionID, datum: DatumID, effects: inout Void) {
        // A member's read of its group is not a plain input: the owner gives it the group's
        // current value when it runs (`PlanGroup`).
        if direction.isGroup { return }
        plan.inputs.append(Int32(version.raw))
    }

    mutating func addGroupWriter(_ group: VersionID) {}
    mutating func holdGroupBase(_ base: VersionID) {}
    mutating func supersede(_ old: VersionID, effects: inout Void) {}
    mutating func groupClosed(_ group: VersionID, base: VersionID, effects: inout Void) {
        let g = Int(plan.groupOf[Int32(group.raw)]!)
        plan.groups[g].closed = true
        closedGroups.append(g)
    }
}
