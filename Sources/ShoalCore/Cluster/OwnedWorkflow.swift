/// What an owner keeps about one of its workflows: every task's state, where every version lives,
/// the ready queue, grant leases, and the record log it replicates. Flat arrays indexed by task
/// and version number (about 40 bytes per task).
///
/// A class, owned by exactly one `WorkMachine` and never shared: as a struct of twenty arrays in
/// an array, every access copied it (twenty retains and releases), a tenth of the simulator's
/// time at a million tasks. The machine stays deterministic; it is only not copyable while in use.
final class OwnedWorkflow: @unchecked Sendable {
    /// `done` includes a task whose failure was ignored; `failed` is a task that failed for good
    /// (`cancel-successors`) or was cancelled because an input failed.
    enum TaskState: UInt8 { case waiting, ready, assigned, done, failed }
    /// A version's value: there, absent (its writer's failure was ignored), or failed.
    enum ValueState: UInt8 { case normal, absent, failed }
    static let nobody = PeerID(raw: .max)

    let workflow: WorkflowID
    /// This peer: it stands as the holder of absent and failed versions (there is nothing to fetch).
    let owner: PeerID
    /// The plan (growing while the workflow is open: `extend`, `wait`, `close`) and every datum's
    /// initial value.
    var plan: WorkflowPlan { _read { yield planRef.plan } }
    /// The plan behind an immutable reference: a method of the plan called on a stored `var` would
    /// copy the whole plan first (two dozen arrays retained and released, an eighth of a
    /// million-task simulation), on a `let` of a class it borrows it. Growth swaps the reference
    /// (`growPlan`).
    private var planRef: PlanRef
    final class PlanRef: @unchecked Sendable {
        let plan: WorkflowPlan
        init(_ plan: WorkflowPlan) { self.plan = plan }
        static let empty = PlanRef(try! WorkflowPlan(WorkflowSpec(name: "", dataCount: 0, tasks: [])))
    }

    /// Changes the plan in place: its arrays are uniquely referenced once the old reference is
    /// gone, so growing appends to them rather than copying them.
    private func growPlan<R>(_ body: (inout WorkflowPlan) throws(WorkflowPlan.Invalid) -> R) throws(WorkflowPlan.Invalid) -> R {
        var plan: WorkflowPlan
        do {
            let old = planRef
            planRef = PlanRef.empty
            plan = old.plan
        }
        defer { planRef = PlanRef(plan) }
        return try body(&plan)
    }
    private(set) var initial: [DataValue]
    private(set) var state: [TaskState]
    /// For a waiting or ready task: how many of its inputs have no holder.
    private var missing: [Int32]
    private(set) var assignee: [PeerID]
    private var assignedAt: [Instant]
    private var confirmed: [Bool]
    /// Times a task could not start (an input unreachable), and attempts of it that failed.
    var attempts: [UInt16]
    private(set) var failedAttempts: [UInt16]
    /// Tasks whose failure was ignored: their outcome is decided. One that runs again (its
    /// pass-through's value was lost with its holder, or a takeover did not find it) takes the
    /// same outcome whatever its body does this time (`repeatIgnoredFailure`).
    private(set) var ignoredFailures: Set<Int> = []
    /// The failures applied (ignored or for good), for the workflow's report.
    private(set) var reports: [FailureReport] = []
    private(set) var valueState: [ValueState]
    /// A version that takes another's value (an ignored failure's pass-through): the one stored,
    /// and the other way round. An alias has no value of its own: its holder, checksum and size
    /// follow its source's (`follow`), it is lost when the source is, and the lineage remakes the
    /// source, never the failed task.
    private var aliasOf: [Int32: Int32] = [:]
    private var aliases: [Int32: [Int32]] = [:]
    /// Per version: who holds it (`nobody`: not made yet, or lost), its checksum and size.
    private(set) var holder: [PeerID]
    private(set) var checksum: [UInt64]
    private var bytes: [UInt64]
    private var ready: [Int32] = []
    private var readyHead = 0
    private(set) var readyCount = 0
    /// Ready tasks by a peer that holds one of their inputs (at most `nearHoldersPerTask` peers a
    /// task), so a thief is offered the tasks whose data it has first (`readyTasks(near:limit:)`):
    /// a stencil's columns then stay where they ran, and most inputs need no fetch. An entry is
    /// checked when read (a task run or given away since is skipped), and the lists are rebuilt
    /// without such entries once they hold more than `2 × readyCount + 4096`.
    private var readyNear: [PeerID: NearList] = [:]
    private var nearEntries = 0
    fileprivate struct NearList { var tasks: [Int32] = []; var head = 0 }
    static let nearHoldersPerTask = 4
    private(set) var remaining: Int
    private struct Lease { var deadline: Instant; var task: Int32; var peer: PeerID }
    private var leases = RingBuffer<Lease>()

    /// How a commutative or concurrent group (`PlanGroup`) is running: which members are done, in
    /// the order they ran, which member holds its lock, and which wait for it.
    struct GroupRun {
        /// The partial versions of the members done, in completion order: the last is the group's
        /// current value, which the next member reads.
        var chain: [Int32] = []
        /// The member that may run now (it holds every lock it needs), or -1.
        var lock: Int32 = -1
        /// Members whose plain inputs are there and that wait for the lock or the current value.
        var waiters: [Int32] = []
        /// Members that failed for good: the group's version fails once the others are done.
        var failedMembers = 0
    }
    private var groupRuns: [GroupRun]

    // The replicated record.
    /// What the owner knows of one backup's copy of the record.
    struct Backup {
        let peer: PeerID
        /// It confirmed it holds the record (answered a create or an append).
        var created = false
        /// Log entries it acknowledged, and sent to it.
        var acked = 0
        var sent = 0
        /// When a create or an append was last sent to it.
        var sentAt = Instant.zero
    }
    var backupLinks: [Backup] = []
    /// Peers that refused to keep the record (`RecordAck.refused`): not chosen as backups again.
    /// Each refuses once at most (it is no longer a backup after), so at most the live peers.
    var refusedBackups: [PeerID] = []
    /// The backups in takeover order.
    var backups: [PeerID] { backupLinks.map(\.peer) }
    private(set) var log: [RecordEntry] = []
    /// Log entries written to this peer's shard.
    var persisted = 0

    // Ending.
    var collecting = false
    var finished = false
    var results: [DataValue?] = []
    var resultsMissing = 0

    init(workflow: WorkflowID, plan: WorkflowPlan, initial: [DataValue], owner: PeerID) {
        self.workflow = workflow
        self.planRef = PlanRef(plan)
        self.initial = initial
        let tasks = plan.taskCount
        state = Array(repeating: .waiting, count: tasks)
        missing = Array(repeating: 0, count: tasks)
        assignee = Array(repeating: OwnedWorkflow.nobody, count: tasks)
        assignedAt = Array(repeating: .zero, count: tasks)
        confirmed = Array(repeating: false, count: tasks)
        attempts = Array(repeating: 0, count: tasks)
        failedAttempts = Array(repeating: 0, count: tasks)
        valueState = Array(repeating: .normal, count: plan.versionCount)
        self.owner = owner
        holder = Array(repeating: OwnedWorkflow.nobody, count: plan.versionCount)
        checksum = Array(repeating: 0, count: plan.versionCount)
        bytes = Array(repeating: 0, count: plan.versionCount)
        groupRuns = Array(repeating: GroupRun(), count: plan.groups.count)
        remaining = tasks
        for (d, value) in initial.enumerated() { define(Int(plan.initialVersion[d]), value) }
        recountAll()
    }

    /// The initial value of a datum is held here.
    private func define(_ v: Int, _ value: DataValue) {
        holder[v] = owner
        checksum[v] = value.checksum
        bytes[v] = value.bytes
    }

    // MARK: Growth (an open workflow)

    /// A wait of the program on `version` (of a datum), answered once its value is here.
    struct Wait {
        var requestID: UInt64
        var version: Int
        /// A fetch of its value to this peer is on its way.
        var fetching = false
    }
    var waits: [Wait] = []
    /// The program's barriers (request ids), answered when no task is left to run.
    var barriers: [UInt64] = []

    /// A fetch for the waits on (the stored version) `v` ended: the next check answers them, or
    /// fetches again.
    func fetchedForWaits(_ v: Int) {
        for i in waits.indices where storedVersion(waits[i].version) == v { waits[i].fetching = false }
    }

    /// Appends a batch of the program's calls, after new data with values `newValues` (held here).
    /// Groups the batch closed settle; the new tasks wait for their inputs or are ready. Throws,
    /// changing nothing, for a batch that does not fit the plan.
    func extend(_ calls: [WorkflowTaskSpec], initial newValues: [DataValue]) throws(WorkflowPlan.Invalid) {
        let (firstTask, firstData) = (plan.taskCount, plan.dataCount)
        let closed = try growPlan { (plan) throws(WorkflowPlan.Invalid) in try plan.extend(calls, newData: newValues.count) }
        grow()
        for (i, value) in newValues.enumerated() { define(Int(plan.initialVersion[firstData + i]), value) }
        initial += newValues
        for g in closed { settleIfComplete(g) }
        remaining += calls.count
        for t in firstTask..<plan.taskCount { wait(t) }
    }

    /// A wait of the program on `datum`: the version it is answered with (it closes the datum's
    /// open group, which then settles as soon as its members are done).
    func wait(on datum: Int) throws(WorkflowPlan.Invalid) -> Int {
        let (version, closed) = try growPlan { (plan) throws(WorkflowPlan.Invalid) in try plan.wait(on: datum) }
        if let closed { settleIfComplete(closed) }
        return version
    }

    /// The program ended: every open group closes.
    func close() {
        let closed = (try? growPlan { $0.close() }) ?? []
        for g in closed { settleIfComplete(g) }
    }

    /// Makes room in the per-task, per-version and per-group state for what the plan grew by.
    private func grow() {
        let tasks = plan.taskCount - state.count
        state += repeatElement(.waiting, count: tasks)
        missing += repeatElement(0, count: tasks)
        assignee += repeatElement(OwnedWorkflow.nobody, count: tasks)
        assignedAt += repeatElement(.zero, count: tasks)
        confirmed += repeatElement(false, count: tasks)
        attempts += repeatElement(0, count: tasks)
        failedAttempts += repeatElement(0, count: tasks)
        let versions = plan.versionCount - holder.count
        valueState += repeatElement(.normal, count: versions)
        holder += repeatElement(OwnedWorkflow.nobody, count: versions)
        checksum += repeatElement(0, count: versions)
        bytes += repeatElement(0, count: versions)
        groupRuns += repeatElement(GroupRun(), count: plan.groups.count - groupRuns.count)
    }

    /// Rebuilds the state from a record log (a takeover): a task is done if the log says so and
    /// all its outputs still have a live holder; everything else runs (again). A group's members
    /// ran in the order the log lists them: its chain is rebuilt in that order, and cut back to
    /// the last partial that still has a live holder.
    func replay(_ entries: [RecordEntry], isLive: (PeerID) -> Bool) {
        guard !entries.isEmpty else { return }
        log = entries
        // The locks and waiters of the first count (in `init`) are recounted from the log too.
        groupRuns = Array(repeating: GroupRun(), count: plan.groups.count)
        var completed = [Bool](repeating: false, count: plan.taskCount)
        var failedForGood = Set<Int>()
        var absent: [Int] = []
        var ignored = Set<Int>()
        var aliased: [Int] = []
        var causes: [Int: TaskFailure] = [:]
        for e in entries {
            let v = Int(e.version)
            switch e.kind {
            case .lost:
                if v < holder.count { holder[v] = OwnedWorkflow.nobody }
                continue
            case .cut:
                if let g = plan.groupOf[Int32(truncatingIfNeeded: e.version)],
                    let i = groupRuns[Int(g)].chain.firstIndex(of: Int32(truncatingIfNeeded: e.version))
                {
                    groupRuns[Int(g)].chain.removeSubrange(i...)
                }
                continue
            case .failed:
                if Int(e.task) < plan.taskCount { failedForGood.insert(Int(e.task)) }
                continue
            case .attemptFailed:
                let t = Int(e.task)
                if t < plan.taskCount {
                    failedAttempts[t] = max(failedAttempts[t], UInt16(clamping: e.source))
                    if let failure = e.failure { causes[t] = failure }
                }
                continue
            case .made, .passedThrough, .absent:
                break
            }
            guard Int(e.task) < plan.taskCount else { continue }
            completed[Int(e.task)] = true
            guard e.version != RecordEntry.none, v < holder.count, plan.writes(Int(e.task), Int32(v)) else { continue }
            holder[v] = e.holder
            checksum[v] = e.checksum
            bytes[v] = e.bytes
            if e.kind != .passedThrough, aliasOf.removeValue(forKey: Int32(v)) != nil { aliased.removeAll { $0 == v } }
            valueState[v] = .normal
            switch e.kind {
            case .passedThrough where Int(e.source) < holder.count:
                if aliasOf[Int32(v)] == nil { aliased.append(v) }
                aliasOf[Int32(v)] = Int32(e.source)
                ignored.insert(Int(e.task))
            case .absent:
                absent.append(v)
                ignored.insert(Int(e.task))
            default:
                break
            }
            if let g = plan.groupOf[Int32(v)] { join(Int(g), partial: v, of: Int(e.task)) }
        }
        for v in holder.indices where plan.producer[v] != -1 && holder[v] != OwnedWorkflow.nobody && !isLive(holder[v]) {
            holder[v] = OwnedWorkflow.nobody
        }
        // Nothing to fetch for these: this peer stands as their holder now.
        for v in absent where valueState[v] == .absent { setAbsent(v) }
        // Aliases follow their sources as they are now, in the order they were made.
        for v in aliased {
            let source = Int(aliasOf[Int32(v)]!)
            aliases[Int32(source), default: []].append(Int32(v))
            takeValue(of: source, into: v)
        }
        for t in failedForGood { completed[t] = false }
        ignoredFailures.formUnion(ignored)
        for t in ignored.union(failedForGood).sorted() {
            reports.append(
                FailureReport(
                    task: t, label: plan.name(of: t),
                    failure: causes[t] ?? TaskFailure(message: "failed (reported to an earlier owner)"),
                    attempts: Int(failedAttempts[t]), action: failedForGood.contains(t) ? .cancelSuccessors : .ignore))
        }
        let logged = groupRuns.map(\.chain)
        for g in groupRuns.indices {
            while let last = groupRuns[g].chain.last, holder[Int(last)] == OwnedWorkflow.nobody {
                groupRuns[g].chain.removeLast()
            }
        }
        // A task is done if the log says so and its plain outputs have a live holder; a member,
        // if its partial is in its group's chain too. A member not done cuts its chains where it
        // stands: the partials after it hold its part, and it runs again (an earlier owner cut
        // them the same way, but cuts are not logged). Cutting can undo another member, in
        // another group, so this runs until nothing changes.
        var done = (0..<plan.taskCount).map { t in
            completed[t]
                && plan.accessRange(of: t).allSatisfy { a in
                    let v = plan.accessWritten[a]
                    return v < 0 || plan.accessDirection[a].isGroup || holder[Int(v)] != OwnedWorkflow.nobody
                }
        }
        var changed = true
        while changed {
            changed = false
            for g in groupRuns.indices {
                let chain = groupRuns[g].chain
                guard let cut = chain.firstIndex(where: { !done[Int(plan.producer[Int($0)])] }) else { continue }
                for p in chain[cut...] where done[Int(plan.producer[Int(p)])] {
                    done[Int(plan.producer[Int(p)])] = false
                }
                groupRuns[g].chain.removeSubrange(cut...)
                changed = true
            }
            // A member whose partial is in no chain (cut, or never made) is not done either.
            for g in plan.groups.indices {
                for (m, p) in zip(plan.groups[g].members, plan.groups[g].partials)
                where done[Int(m)] && !groupRuns[g].chain.contains(p) {
                    done[Int(m)] = false
                    changed = true
                }
            }
        }
        remaining = 0
        for t in 0..<plan.taskCount {
            state[t] = done[t] ? .done : .waiting
            if !done[t] { remaining += 1 }
        }
        // Failed for good: what they write fails (their readers are cancelled when admitted).
        for t in failedForGood.sorted() { finishFailed(t) }
        // The cuts made here are logged, as the live ones are: a later owner replaying this log,
        // when the holders counted dead here are back, must not count again the partials this
        // owner set aside (their members run again here and add their parts anew).
        for g in groupRuns.indices where groupRuns[g].chain.count < logged[g].count {
            log.append(
                RecordEntry.about(.cut, version: Int(logged[g][groupRuns[g].chain.count])))
        }
        for g in groupRuns.indices { settleIfComplete(g) }
        recountAll()
    }

    /// Missing counts and the ready queue from scratch, in program order.
    private func recountAll() {
        ready.removeAll(keepingCapacity: true)
        readyHead = 0
        readyCount = 0
        readyNear = [:]
        nearEntries = 0
        for t in 0..<plan.taskCount where state[t] != .done && state[t] != .failed { wait(t) }
    }

    /// Task `t` waits for its plain inputs that have no holder, or is admitted if there are none.
    private func wait(_ t: Int) {
        state[t] = .waiting
        missing[t] = Int32(plan.inputs(of: t).reduce(0) { $0 + (holder[Int($1)] == OwnedWorkflow.nobody ? 1 : 0) })
        if missing[t] == 0 { admit(t) }
    }

    /// A waiting task whose plain inputs all have holders becomes ready, unless it is a group
    /// member and another member holds the group's lock, or the group's current value has no
    /// holder: then it waits for the group (`wake`). A member takes the locks of all its groups at
    /// once, and keeps them until it is done, so no two members wait on each other.
    private func admit(_ t: Int) {
        if plan.inputs(of: t).contains(where: { valueState[Int($0)] == .failed })
            || (!plan.groups.isEmpty && plan.groups(of: t).contains(where: { valueState[currentValue(of: $0)] == .failed }))
        {
            finishFailed(t)  // an input failed: the task is cancelled, and so are its readers
            return
        }
        if !plan.groups.isEmpty {
            let groups = plan.groups(of: t)
            for g in groups where !mayRun(t, in: g) {
                if !groupRuns[g].waiters.contains(Int32(t)) { groupRuns[g].waiters.append(Int32(t)) }
                return
            }
            for g in groups { groupRuns[g].lock = Int32(t) }
        }
        makeReady(t)
    }

    private func mayRun(_ t: Int, in g: Int) -> Bool {
        let lock = groupRuns[g].lock
        return (lock < 0 || lock == Int32(t)) && holder[currentValue(of: g)] != OwnedWorkflow.nobody
    }

    /// The version the next member of group `g` reads: the last partial made, or the base.
    func currentValue(of g: Int) -> Int {
        Int(groupRuns[g].chain.last ?? plan.groups[g].base)
    }

    /// Lets the members waiting for group `g` try again (its lock was released or its value came).
    private func wake(_ g: Int) {
        let waiters = groupRuns[g].waiters
        groupRuns[g].waiters = []
        for w in waiters where state[Int(w)] == .waiting && missing[Int(w)] == 0 { admit(Int(w)) }
    }

    /// The version a holder stores for `v`: a group's version is its last member's partial.
    func storedVersion(_ v: Int) -> Int {
        guard !aliasOf.isEmpty || !plan.groups.isEmpty else { return v }  // the common case, first
        var v = v
        while true {
            if let a = aliasOf[Int32(v)] {
                v = Int(a)
            } else if plan.producer[v] == PlanGroup.producer, let g = plan.groupOf[Int32(v)] {
                v = currentValue(of: Int(g))
            } else {
                return v
            }
        }
    }

    /// When every member of group `g` is done, its version takes the last partial's holder and
    /// checksum, and the tasks reading it may run.
    @discardableResult
    private func settleIfComplete(_ g: Int) -> Bool {
        let group = plan.groups[g]
        guard group.closed, groupRuns[g].chain.count + groupRuns[g].failedMembers == group.members.count else {
            return false
        }
        let v = Int(group.version)
        guard groupRuns[g].failedMembers == 0, let last = groupRuns[g].chain.last else {
            // A member failed for good: the group's version fails, and its readers are cancelled.
            if valueState[v] != .failed {
                valueState[v] = .failed
                holder[v] = owner
                madeAvailable(v)
            }
            return true
        }
        let wasMissing = holder[v] == OwnedWorkflow.nobody
        holder[v] = holder[Int(last)]
        checksum[v] = checksum[Int(last)]
        bytes[v] = bytes[Int(last)]
        if wasMissing && holder[v] != OwnedWorkflow.nobody { madeAvailable(v) }
        follow(v)
        return true
    }

    /// Version `v` got a holder: its waiting consumers count one input less, and a group whose
    /// current value it is lets its members try again.
    private func madeAvailable(_ v: Int) {
        for c in plan.consumers(of: v) where state[Int(c)] == .waiting {
            missing[Int(c)] -= 1
            if missing[Int(c)] == 0 { admit(Int(c)) }
        }
        if !plan.groups.isEmpty {
            for g in groupsReading(v) { wake(g) }
        }
    }

    /// The groups whose current value is `v` (their base before any member ran, or their last partial).
    private func groupsReading(_ v: Int) -> [Int] {
        if let g = plan.groupOf[Int32(v)], plan.groups[Int(g)].version != Int32(v) {
            return currentValue(of: Int(g)) == v ? [Int(g)] : []
        }
        guard let g = plan.groupOfBase[Int32(v)], groupRuns[Int(g)].chain.isEmpty else { return [] }
        return [Int(g)]
    }

    private func makeReady(_ t: Int) {
        state[t] = .ready
        ready.append(Int32(t))
        readyCount += 1
        // The distinct peers (other than this one, which never steals from itself) holding the
        // task's inputs, in input order.
        var near: [PeerID] = []
        for v in plan.inputs(of: t) {
            let h = holder[Int(v)]
            guard h != owner, h != OwnedWorkflow.nobody, !near.contains(h) else { continue }
            near.append(h)
            readyNear[h, default: NearList()].tasks.append(Int32(t))
            nearEntries += 1
            if near.count == OwnedWorkflow.nearHoldersPerTask { break }
        }
        if nearEntries > 2 * readyCount + 4_096 { compactNear() }
    }

    /// Drops the entries of tasks no longer ready, and the lists left empty.
    private func compactNear() {
        var kept: [PeerID: NearList] = [:]
        nearEntries = 0
        for (peer, list) in readyNear {  // each list is filtered on its own: the order is not seen
            let tasks = list.tasks[list.head...].filter { state[Int($0)] == .ready }
            guard !tasks.isEmpty else { continue }
            kept[peer] = NearList(tasks: tasks)
            nearEntries += tasks.count
        }
        readyNear = kept
    }

    /// The next ready task in queue order, if any (it stays `ready` until assigned).
    func popReady() -> Int? {
        while readyHead < ready.count {
            let t = Int(ready[readyHead])
            readyHead += 1
            if readyHead >= 4_096 && readyHead * 2 >= ready.count {
                ready.removeFirst(readyHead)
                readyHead = 0
            }
            if state[t] == .ready { return t }
        }
        return nil
    }

    /// At most `limit` ready tasks: first those with an input held by `thief` (in the order they
    /// became ready), then the rest in queue order. Entries no longer ready (given to thieves)
    /// are dropped from the fronts on the way, so the scans stay short.
    func readyTasks(near thief: PeerID? = nil, limit: Int) -> [Int] {
        var found: [Int] = []
        if let thief, thief != owner, let n = readyNear.index(forKey: thief) {
            found = readyNear.values[n].ready(limit: limit, state: state, entries: &nearEntries)
            if readyNear.values[n].head == readyNear.values[n].tasks.count { readyNear.remove(at: n) }
        }
        while readyHead < ready.count && state[Int(ready[readyHead])] != .ready { readyHead += 1 }
        if readyHead >= 4_096 && readyHead * 2 >= ready.count {
            ready.removeFirst(readyHead)
            readyHead = 0
        }
        let near = found.count
        var i = readyHead
        while found.count < limit && i < ready.count {
            let t = Int(ready[i])
            if state[t] == .ready && !found[..<near].contains(t) { found.append(t) }
            i += 1
        }
        return found
    }

    /// Task `t` as an executor receives it: where each input is (in access order; a member reads
    /// its group's current value) and which versions it writes.
    func stealable(_ t: Int, owner: PeerID) -> StealableTask {
        // The plan is read through a borrowed parameter: read through `self`, it was copied whole
        // on every call (this runs for every offered task, every protocol period).
        let ref = planRef
        return withExtendedLifetime(ref) { stealable(t, owner: owner, plan: ref.plan) }
    }

    private func stealable(_ t: Int, owner: PeerID, plan: borrowing WorkflowPlan) -> StealableTask {
        // Offered to thieves every protocol period: sized once, no growth.
        let accesses = plan.accessRange(of: t)
        var inputs: [DataLocation] = []
        inputs.reserveCapacity(accesses.count)
        var outputs: [VersionRef] = []
        outputs.reserveCapacity(accesses.count)
        for a in accesses where plan.accessWritten[a] >= 0 { outputs.append(VersionRef(workflow, Int(plan.accessWritten[a]))) }
        let grouped = !plan.groups.isEmpty
        for a in accesses where plan.accessRead[a] >= 0 {
            let group = grouped ? plan.group(ofAccess: a) : nil
            let read = group.map { currentValue(of: $0) } ?? Int(plan.accessRead[a])
            let v = storedVersion(read)
            inputs.append(
                DataLocation(
                    datum: VersionRef(workflow, v), bytes: bytes[v], holder: holder[v], checksum: checksum[v],
                    absent: valueState[v] == .absent))
        }
        var task = StealableTask(
            id: TaskRef(workflow, t), owner: owner, catalogueKey: plan.catalogueKey[t], inputs: inputs,
            outputs: outputs)
        task.attempt = failedAttempts[t] &+ 1
        if !plan.bodies.isEmpty, case let body = plan.body(of: t), body != .modelled {
            task.call = ExecutableCall(
                body: body,
                accesses: accesses.map { WorkflowTaskSpec.Access(Int(plan.accessDatum[$0]), plan.accessDirection[$0]) },
                label: plan.label[t])
        }
        return task
    }

    /// Whether a result of task `t` with `outputs`, computed from inputs whose checksums combine
    /// to `basis`, may be applied: it names every version the task writes, once; and a group
    /// member's result was computed from the group's current value (a member that ran on a value
    /// since cut back by a loss, or a duplicate of such a run, would add its part twice).
    func accepts(_ t: Int, outputs: [OutputRecord], basis: UInt64) -> Bool {
        var i = 0
        for a in plan.accessRange(of: t) where plan.accessWritten[a] >= 0 {
            guard i < outputs.count, outputs[i].version == VersionRef(workflow, Int(plan.accessWritten[a])) else {
                return false
            }
            i += 1
        }
        guard i == outputs.count else { return false }
        guard !plan.groups.isEmpty, !plan.groups(of: t).isEmpty else { return true }
        return basis == OutputRecord.basis(stealable(t, owner: OwnedWorkflow.nobody).inputs.map(\.checksum))
    }

    /// The task now runs at `peer`; an unconfirmed assignment (a grant) expires at `deadline`.
    func assign(_ t: Int, to peer: PeerID, confirmed isConfirmed: Bool, now: Instant, deadline: Instant) {
        guard t < state.count, state[t] == .ready else { return }
        readyCount -= 1
        state[t] = .assigned
        assignee[t] = peer
        assignedAt[t] = now
        confirmed[t] = isConfirmed
        if !isConfirmed { leases.append(Lease(deadline: deadline, task: Int32(t), peer: peer)) }
    }

    func confirm(_ t: Int, by peer: PeerID) {
        guard t < state.count, state[t] == .assigned, assignee[t] == peer else { return }
        confirmed[t] = true
    }

    var hasLeases: Bool { !leases.isEmpty }

    /// Re-queues granted tasks whose thief never confirmed them by their deadline.
    func expireLeases(now: Instant) -> Int {
        var n = 0
        while let lease = leases.first, lease.deadline <= now {
            _ = leases.popFirst()
            let t = Int(lease.task)
            if state[t] == .assigned && assignee[t] == lease.peer && !confirmed[t] {
                requeue(t)
                n += 1
            }
        }
        return n
    }

    /// Tasks assigned (anywhere, this peer included) since before `before`, by peer (sorted), at
    /// most `batch` each; their clocks restart, so a task is asked about once per audit interval.
    func overdue(before: Instant, batch: Int) -> [(PeerID, [TaskRef])] {
        var byPeer: [PeerID: [TaskRef]] = [:]
        for t in state.indices where state[t] == .assigned && assignedAt[t] < before {
            guard byPeer[assignee[t], default: []].count < batch else { continue }
            byPeer[assignee[t], default: []].append(TaskRef(workflow, t))
            assignedAt[t] = before
        }
        return byPeer.keys.sorted().map { ($0, byPeer[$0]!) }
    }

    /// `peer` does not know task `t`: queue it again if it is still assigned there.
    func unknown(_ t: Int, at peer: PeerID) -> Bool {
        guard t < state.count, state[t] == .assigned, assignee[t] == peer else { return false }
        requeue(t)
        return true
    }

    var hasAssigned: Bool { state.contains(.assigned) }

    /// An assigned task goes back to waiting (or ready) to run elsewhere.
    func requeue(_ t: Int) {
        guard state[t] == .assigned else { return }
        assignee[t] = OwnedWorkflow.nobody
        wait(t)
    }

    /// Applies task `t`'s result (checked by `accepts`): its outputs now live at `at`. A member's
    /// partial joins its group's chain and the member releases the group's lock.
    func complete(_ t: Int, outputs: [OutputRecord], holder at: PeerID) {
        guard state[t] != .done && state[t] != .failed else { return }
        end(t, as: .done)
        if outputs.isEmpty {
            log.append(RecordEntry(task: UInt32(t), version: RecordEntry.none, holder: at, checksum: 0, bytes: 0))
        }
        var touched: [Int] = []
        for o in outputs {
            let v = o.version.version
            let wasMissing = holder[v] == OwnedWorkflow.nobody
            holder[v] = at
            checksum[v] = o.checksum
            bytes[v] = o.bytes
            log.append(RecordEntry(task: UInt32(t), version: o.version.index, holder: at, checksum: o.checksum, bytes: o.bytes))
            unalias(v)
            follow(v)
            if !plan.groups.isEmpty, let g = plan.groupOf[Int32(v)] {
                join(Int(g), partial: v, of: t)
                touched.append(Int(g))
            } else if wasMissing {
                madeAvailable(v)
            }
        }
        for g in touched where !settleIfComplete(g) { wake(g) }
    }

    /// Task `t` reaches a final state (`done` or `failed`): it no longer counts as ready,
    /// assigned or remaining.
    private func end(_ t: Int, as final: TaskState) {
        if state[t] == .ready { readyCount -= 1 }
        state[t] = final
        assignee[t] = OwnedWorkflow.nobody
        remaining -= 1
    }

    /// Member `t` made `partial`: it is group `g`'s current value now, and `t` lets go of the lock.
    private func join(_ g: Int, partial: Int, of t: Int) {
        groupRuns[g].chain.removeAll { $0 == Int32(partial) }
        groupRuns[g].chain.append(Int32(partial))
        unlock(g, by: t)
    }

    private func unlock(_ g: Int, by t: Int) {
        if groupRuns[g].lock == Int32(t) { groupRuns[g].lock = -1 }
    }

    /// What a failed attempt led to (`fail(_:attempt:failure:from:)`).
    enum FailureOutcome { case retried, handled, workflowFails(String) }

    /// Attempt `attempt` of task `t`, run at `peer`, failed with `failure`. Ignored (nil) unless
    /// the task is assigned there and this is its current attempt: a duplicated report counts
    /// once. The task runs again while its policy has retries left (`FailurePolicy.decision`,
    /// as the local graph decides), else the policy's action applies.
    func fail(_ t: Int, attempt: UInt16, failure: TaskFailure, from peer: PeerID) -> FailureOutcome? {
        guard t < state.count, state[t] == .assigned, assignee[t] == peer, attempt == failedAttempts[t] &+ 1 else {
            return nil
        }
        failedAttempts[t] = attempt
        log.append(
            RecordEntry(
                .attemptFailed, task: UInt32(t), version: RecordEntry.none, holder: peer, checksum: 0, bytes: 0,
                source: UInt32(attempt), failure: failure))
        switch plan.policy[t].decision(afterFailedAttempts: Int(attempt)) {
        case .retry:
            requeue(t)
            return .retried
        case .apply(let action):
            reports.append(
                FailureReport(task: t, label: plan.name(of: t), failure: failure, attempts: Int(attempt), action: action))
            switch action {
            case .fail:
                return .workflowFails("task '\(plan.name(of: t))' failed after \(attempt) attempts: \(failure)")
            case .ignore:
                ignoredFailures.insert(t)
                passThrough(t)
            case .cancelSuccessors:
                log.append(RecordEntry(.failed, task: UInt32(t), version: RecordEntry.none, holder: owner, checksum: 0, bytes: 0))
                finishFailed(t)
            }
            return .handled
        }
    }

    /// Task `t`, whose failure was ignored, ran again and reported a result: the outcome stays the
    /// one decided (locally the task failed once and for all), so its outputs take their
    /// pass-through values again and what it made now is not used.
    func repeatIgnoredFailure(_ t: Int) {
        guard state[t] != .done && state[t] != .failed else { return }
        passThrough(t)
    }

    /// Task `t` failed and its failure is ignored: what it should have written takes the value
    /// it read (an `inout` datum keeps its value; a member adds nothing to its group), and an
    /// `out` has no value, so a task reading it fails when it reads it (as in the local engine).
    private func passThrough(_ t: Int) {
        end(t, as: .done)
        var touched: [Int] = []
        for a in plan.accessRange(of: t) where plan.accessWritten[a] >= 0 {
            let w = Int(plan.accessWritten[a])
            // After a takeover the pass-through may be there already (the replayed log made it, and
            // its source came back): its readers were counted then, not again.
            let wasMissing = holder[w] == OwnedWorkflow.nobody
            let group = plan.group(ofAccess: a)
            let source = group.map(currentValue(of:)) ?? (plan.accessRead[a] >= 0 ? Int(plan.accessRead[a]) : nil)
            if let source {
                alias(w, to: source)
                log.append(
                    RecordEntry(
                        .passedThrough, task: UInt32(t), version: UInt32(w), holder: holder[w], checksum: checksum[w],
                        bytes: bytes[w], source: UInt32(source)))
            } else {
                setAbsent(w)
                log.append(RecordEntry(.absent, task: UInt32(t), version: UInt32(w), holder: owner, checksum: 0, bytes: 0))
            }
            if let g = group {
                join(g, partial: w, of: t)
                touched.append(g)
            } else if wasMissing && holder[w] != OwnedWorkflow.nobody {
                madeAvailable(w)
            }
        }
        for g in touched where !settleIfComplete(g) { wake(g) }
    }

    /// `w` takes `source`'s value from now on.
    private func alias(_ w: Int, to source: Int) {
        unalias(w)
        aliasOf[Int32(w)] = Int32(source)
        aliases[Int32(source), default: []].append(Int32(w))
        takeValue(of: source, into: w)
    }

    /// `w`, an alias, takes `source`'s holder, checksum, size and state.
    private func takeValue(of source: Int, into w: Int) {
        holder[w] = holder[source]
        checksum[w] = checksum[source]
        bytes[w] = bytes[source]
        valueState[w] = valueState[source]
    }

    /// `w` has a value of its own again (it was remade, or passes on another value now).
    private func unalias(_ w: Int) {
        guard !aliasOf.isEmpty, let old = aliasOf.removeValue(forKey: Int32(w)) else { return }
        aliases[old]?.removeAll { $0 == Int32(w) }
    }

    /// `v` got a holder (it was made, or remade): its aliases follow, and may be read now.
    /// Iterative, with a bound: an alias is made from a value made before it, so there is no
    /// cycle, but a long line of ignored failures must not exhaust the stack.
    private func follow(_ v: Int) {
        guard !aliases.isEmpty else { return }
        var pending = [v]
        var visited = Set<Int>()
        while let source = pending.popLast() {
            guard visited.insert(source).inserted, let list = aliases[Int32(source)] else { continue }
            for a in list.map(Int.init) {
                let wasMissing = holder[a] == OwnedWorkflow.nobody
                takeValue(of: source, into: a)
                if wasMissing && holder[a] != OwnedWorkflow.nobody { madeAvailable(a) }
                pending.append(a)
            }
        }
    }

    private func setAbsent(_ v: Int) {
        valueState[v] = .absent
        holder[v] = owner
        checksum[v] = 0
        bytes[v] = 0
    }

    /// Task `t` ends without running again: it failed for good, or an input of it failed. What
    /// it writes fails, so its readers end the same way when they are admitted; a member releases
    /// its group's lock and its group's version fails once the other members are done.
    private func finishFailed(_ t: Int) {
        // A failure can cancel a long line of dependants: they are finished from a queue here,
        // not by recursion (admitting a reader of a failed version comes back to this function).
        failing.append(t)
        guard !drainingFailures else { return }
        drainingFailures = true
        defer { drainingFailures = false }
        while let next = failing.popLast() { finishFailedNow(next) }
    }

    private var failing: [Int] = []
    private var drainingFailures = false

    private func finishFailedNow(_ t: Int) {
        guard state[t] != .done && state[t] != .failed else { return }
        end(t, as: .failed)
        var touched: [Int] = []
        for a in plan.accessRange(of: t) where plan.accessWritten[a] >= 0 {
            let w = Int(plan.accessWritten[a])
            valueState[w] = .failed
            holder[w] = owner
            if let g = plan.group(ofAccess: a) {
                groupRuns[g].failedMembers += 1
                unlock(g, by: t)
                touched.append(g)
            } else {
                madeAvailable(w)
            }
        }
        for g in touched where !settleIfComplete(g) { wake(g) }
    }

    /// Version `v` is gone from `peer` (if `peer` was its holder). Returns the tasks re-opened to
    /// make it (and what they need) again.
    func lose(version v: Int, heldBy peer: PeerID) -> [Int] {
        guard v < holder.count, holder[v] == peer, peer != OwnedWorkflow.nobody else { return [] }
        if let g = plan.groupOf[Int32(v)] {
            // A group's version and its last partial are one value: losing either loses both.
            // Any other partial is already part of a later one: nothing needs it.
            let g = Int(g)
            guard v == Int(plan.groups[g].version) || v == currentValue(of: g) else {
                markLost(v)
                return []
            }
            return cutBack(g, from: peer)
        }
        markLost(v)
        demoteReaders(of: v)
        guard needed(v) else { return [] }
        return reopen([v])
    }

    private func markLost(_ v: Int) {
        holder[v] = OwnedWorkflow.nobody
        log.append(
            RecordEntry.about(.lost, version: v))
        for a in aliases[Int32(v)] ?? [] where holder[Int(a)] != OwnedWorkflow.nobody {
            markLost(Int(a))
            demoteReaders(of: Int(a))
        }
    }

    /// The tasks reading `v`, which lost its holder, wait for it again; so does a ready member
    /// whose group's current value it was.
    private func demoteReaders(of v: Int) {
        for c in plan.consumers(of: v) {
            let c = Int(c)
            switch state[c] {
            case .waiting: missing[c] += 1
            case .ready:
                state[c] = .waiting
                readyCount -= 1
                missing[c] = 1
            case .assigned, .done, .failed: break
            }
        }
        guard !plan.groups.isEmpty else { return }
        // A member made ready to read `v` as its group's current value waits for it again, still
        // holding the group's lock; it is woken when the value is back (`madeAvailable`).
        for g in groupsReading(v) {
            let lock = groupRuns[g].lock
            guard lock >= 0, state[Int(lock)] == .ready else { continue }
            state[Int(lock)] = .waiting
            readyCount -= 1
            if !groupRuns[g].waiters.contains(lock) { groupRuns[g].waiters.append(lock) }
        }
    }

    /// The current value of group `g` is gone from `peer`: the members done since the last
    /// partial still held run again (their parts are in the lost value), and a ready member that
    /// was about to read it waits for the value that replaces it.
    private func cutBack(_ g: Int, from peer: PeerID) -> [Int] {
        let version = Int(plan.groups[g].version)
        let wasComplete = holder[version] != OwnedWorkflow.nobody
        if wasComplete {
            markLost(version)
            demoteReaders(of: version)
        }
        let chain = groupRuns[g].chain
        var cut = chain.count
        while cut > 0, holder[Int(chain[cut - 1])] == OwnedWorkflow.nobody || holder[Int(chain[cut - 1])] == peer {
            if holder[Int(chain[cut - 1])] != OwnedWorkflow.nobody { markLost(Int(chain[cut - 1])) }
            cut -= 1
        }
        let members = cutChain(g, at: cut)
        let lock = Int(groupRuns[g].lock)
        if lock >= 0, state[lock] == .ready, holder[currentValue(of: g)] == OwnedWorkflow.nobody {
            state[lock] = .waiting
            readyCount -= 1
            groupRuns[g].waiters.append(Int32(lock))
        }
        var lostBase: [Int] = []
        let base = Int(plan.groups[g].base)
        if groupRuns[g].chain.isEmpty && holder[base] == OwnedWorkflow.nobody { lostBase.append(base) }
        return reopen(lostBase, tasks: members)
    }

    /// Removes the partials of group `g`'s chain from `index` on, logging the cut (a takeover
    /// replays it), and returns their members, which run again.
    private func cutChain(_ g: Int, at index: Int) -> [Int] {
        let chain = groupRuns[g].chain
        guard index < chain.count else { return [] }
        log.append(
            RecordEntry.about(.cut, version: Int(chain[index])))
        groupRuns[g].chain.removeSubrange(index...)
        return chain[index...].map { Int(plan.producer[Int($0)]) }
    }

    /// Whether version `v` is still wanted: a result, or read by a task not done.
    private func needed(_ v: Int) -> Bool {
        plan.isFinal(v) || plan.consumers(of: v).contains { state[Int($0)] != .done }
            || (aliases[Int32(v)] ?? []).contains { needed(Int($0)) }
            || (plan.groupOf[Int32(v)].map { g in currentValue(of: Int(g)) == v } ?? false)
            || (plan.groupOfBase[Int32(v)].map { g in groupReadsBase(Int(g)) } ?? false)
    }

    /// Whether group `g`'s next member still reads its base: no member is done yet, and one is
    /// still to run (or may still join).
    private func groupReadsBase(_ g: Int) -> Bool {
        groupRuns[g].chain.isEmpty
            && (!plan.groups[g].closed || groupRuns[g].failedMembers < plan.groups[g].members.count)
    }

    /// Re-opens the producers of the lost `versions` and the done `tasks`, and up the lineage
    /// whatever they need that is lost too. A group member re-opened takes its part out of its
    /// groups: the members done after it are re-opened too, so that each part is added once.
    private func reopen(_ versions: [Int], tasks: [Int] = []) -> [Int] {
        var reopened: [Int] = []
        var lostVersions = versions
        var openTasks = tasks
        while !lostVersions.isEmpty || !openTasks.isEmpty {
            if let version = lostVersions.popLast() {
                if let source = aliasOf[Int32(version)] {
                    // An ignored failure's pass-through: remake what it passes on.
                    if holder[Int(source)] == OwnedWorkflow.nobody { lostVersions.append(Int(source)) }
                    continue
                }
                let p = Int(plan.producer[version])
                if p == Int(PlanGroup.producer), let g = plan.groupOf[Int32(version)] {
                    // A group version lost with its last partial: cut back (done by `lose`) and,
                    // with no member left, remake the base.
                    let base = Int(plan.groups[Int(g)].base)
                    if groupRuns[Int(g)].chain.isEmpty && holder[base] == OwnedWorkflow.nobody {
                        lostVersions.append(base)
                    }
                } else if p >= 0 {
                    openTasks.append(p)
                }
                continue
            }
            let p = openTasks.removeLast()
            guard state[p] == .done else { continue }
            remaining += 1
            reopened.append(p)
            for g in plan.groups(of: p) {
                let mine = plan.groups[g].partials[plan.groups[g].members.firstIndex(of: Int32(p))!]
                if let i = groupRuns[g].chain.lastIndex(of: mine) {
                    openTasks += cutChain(g, at: i).filter { $0 != p }
                }
                let version = Int(plan.groups[g].version)
                if holder[version] != OwnedWorkflow.nobody {
                    markLost(version)
                    demoteReaders(of: version)
                }
            }
            wait(p)
            for u in plan.inputs(of: p) where holder[Int(u)] == OwnedWorkflow.nobody { lostVersions.append(Int(u)) }
            for g in plan.groups(of: p) where groupRuns[g].chain.isEmpty {
                let base = Int(plan.groups[g].base)
                if holder[base] == OwnedWorkflow.nobody { lostVersions.append(base) }
            }
        }
        return reopened
    }

    /// `peer` died: the versions only it held are lost (re-made if needed) and the tasks it ran
    /// are queued again. Returns (tasks re-queued, tasks re-opened).
    func peerDown(_ peer: PeerID) -> (Int, [Int]) {
        var reopened: [Int] = []
        for v in holder.indices where holder[v] == peer && plan.producer[v] != -1 {
            reopened += lose(version: v, heldBy: peer)
        }
        var requeued = 0
        for t in 0..<state.count where state[t] == .assigned && assignee[t] == peer {
            requeue(t)
            requeued += 1
        }
        return (requeued, reopened)
    }

    func replaceBackup(_ old: PeerID, with new: PeerID?) {
        backupLinks.removeAll { $0.peer == old }
        if let new { backupLinks.append(Backup(peer: new)) }
    }

    /// The record's create as a backup receives it: one message, or parts of at most `maxPart`
    /// calls and data each when the plan is larger.
    func recordCreates(owner: PeerID, maxPart: Int) -> [WorkMessage] {
        guard plan.taskCount > maxPart || initial.count > maxPart else {
            return [.recordCreate(workflow: workflow, owner: owner, backups: backups, plan: plan, initial: initial)]
        }
        return RecordPart.split(plan: plan, backups: backups, initial: initial, maxPart: maxPart).map {
            .recordPart(workflow: workflow, owner: owner, part: $0)
        }
    }

    func recordWrite(owner: PeerID) -> RecordWrite {
        .create(workflow: workflow, owner: owner, backups: backups, plan: plan, initial: initial)
    }

    /// Its tasks by state, and where the running ones run (a client's progress display).
    var counts: WorkflowProgress {
        var p = WorkflowProgress(total: state.count)
        var at: [PeerID: Int] = [:]
        for t in state.indices {
            switch state[t] {
            case .done: p.done += 1
            case .failed: p.failed += 1
            case .ready: p.ready += 1
            case .assigned:
                p.running += 1
                at[assignee[t], default: 0] += 1
            case .waiting: break
            }
        }
        p.runningAt = at.keys.sorted().map { ($0, at[$0]!) }
        return p
    }

    var progress: String {
        if finished { return "finished" }
        var assigned: [PeerID: Int] = [:]
        var waiting = 0
        for t in state.indices {
            if state[t] == .assigned { assigned[assignee[t], default: 0] += 1 }
            if state[t] == .waiting { waiting += 1 }
        }
        let at = assigned.keys.sorted().map { "\($0): \(assigned[$0]!)" }.joined(separator: ", ")
        return "\(remaining) tasks left (\(readyCount) ready, \(waiting) waiting, running at [\(at)])"
            + (collecting ? ", collecting results (\(resultsMissing) missing)" : "")
    }

    /// Frees the per-task state of a finished workflow.
    func dropState() {
        state = []
        missing = []
        assignee = []
        assignedAt = []
        confirmed = []
        attempts = []
        holder = []
        checksum = []
        bytes = []
        ready = []
        readyHead = 0
        readyCount = 0
        readyNear = [:]
        nearEntries = 0
        log = []
        results = []
        leases = RingBuffer()
    }
}

extension OwnedWorkflow.NearList {
    /// The first `limit` distinct ready tasks of the list; the entries before the first ready one
    /// are dropped (`entries` counts what is left in all lists).
    mutating func ready(limit: Int, state: [OwnedWorkflow.TaskState], entries: inout Int) -> [Int] {
        while head < tasks.count && state[Int(tasks[head])] != .ready {
            head += 1
            entries -= 1
        }
        if head >= 64 && head * 2 >= tasks.count {
            tasks.removeFirst(head)
            head = 0
        }
        var found: [Int] = []
        var i = head
        while found.count < limit && i < tasks.count {
            let t = Int(tasks[i])
            if state[t] == .ready && !found.contains(t) { found.append(t) }
            i += 1
        }
        return found
    }
}
