/// What an owner keeps about one of its workflows: every task's state, where every version lives,
/// the ready queue, grant leases, and the record log it replicates. Flat arrays indexed by task
/// and version number (about 40 bytes per task).
///
/// A class, owned by exactly one `WorkMachine` and never shared: as a struct of twenty arrays in
/// an array, every access copied it (twenty retains and releases), a tenth of the simulator's
/// time at a million tasks. The machine stays deterministic; it is only not copyable while in use.
final class OwnedWorkflow: @unchecked Sendable {
    enum TaskState: UInt8 { case waiting, ready, assigned, done }
    static let nobody = PeerID(raw: .max)

    let workflow: UInt32
    private(set) var plan: WorkflowPlan
    private(set) var initial: [DataValue]
    private(set) var state: [TaskState]
    /// For a waiting or ready task: how many of its inputs have no holder.
    private var missing: [Int32]
    private var assignee: [PeerID]
    private var assignedAt: [Instant]
    private var confirmed: [Bool]
    var attempts: [UInt16]
    /// Per version: who holds it (`nobody`: not made yet, or lost), its checksum and size.
    private(set) var holder: [PeerID]
    private(set) var checksum: [UInt64]
    private var bytes: [UInt64]
    private var ready: [Int32] = []
    private var readyHead = 0
    private(set) var readyCount = 0
    private(set) var remaining: Int
    private struct Lease { var deadline: Instant; var task: Int32; var peer: PeerID }
    private var leases = RingBuffer<Lease>()

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

    init(workflow: UInt32, plan: WorkflowPlan, initial: [DataValue], owner: PeerID) {
        self.workflow = workflow
        self.plan = plan
        self.initial = initial
        let tasks = plan.taskCount
        state = Array(repeating: .waiting, count: tasks)
        missing = Array(repeating: 0, count: tasks)
        assignee = Array(repeating: OwnedWorkflow.nobody, count: tasks)
        assignedAt = Array(repeating: .zero, count: tasks)
        confirmed = Array(repeating: false, count: tasks)
        attempts = Array(repeating: 0, count: tasks)
        holder = Array(repeating: OwnedWorkflow.nobody, count: plan.versionCount)
        checksum = Array(repeating: 0, count: plan.versionCount)
        bytes = Array(repeating: 0, count: plan.versionCount)
        for (d, value) in initial.enumerated() {
            holder[d] = owner
            checksum[d] = value.checksum
            bytes[d] = value.bytes
        }
        remaining = tasks
        recountAll()
    }

    /// Rebuilds the state from a record log (a takeover): a task is done if the log says so and
    /// all its outputs still have a live holder; everything else runs (again).
    func replay(_ entries: [RecordEntry], isLive: (PeerID) -> Bool) {
        guard !entries.isEmpty else { return }
        log = entries
        var completed = [Bool](repeating: false, count: plan.taskCount)
        for e in entries {
            if e.task == RecordEntry.lost {
                let v = WorkIDs.index(e.version)
                if v < holder.count { holder[v] = OwnedWorkflow.nobody }
                continue
            }
            guard Int(e.task) < plan.taskCount else { continue }
            completed[Int(e.task)] = true
            guard e.version != RecordEntry.none else { continue }
            let v = WorkIDs.index(e.version)
            holder[v] = e.holder
            checksum[v] = e.checksum
            bytes[v] = e.bytes
        }
        for v in plan.dataCount..<holder.count where holder[v] != OwnedWorkflow.nobody && !isLive(holder[v]) {
            holder[v] = OwnedWorkflow.nobody
        }
        remaining = 0
        for t in 0..<plan.taskCount {
            let made = completed[t] && plan.outputs(of: t).allSatisfy { holder[Int($0)] != OwnedWorkflow.nobody }
            state[t] = made ? .done : .waiting
            if !made { remaining += 1 }
        }
        recountAll()
    }

    /// Missing counts and the ready queue from scratch, in program order.
    private func recountAll() {
        ready.removeAll(keepingCapacity: true)
        readyHead = 0
        readyCount = 0
        for t in 0..<plan.taskCount where state[t] != .done { wait(t) }
    }

    /// Task `t` waits for its inputs that have no holder, or is ready if there are none.
    private func wait(_ t: Int) {
        state[t] = .waiting
        missing[t] = Int32(plan.inputs(of: t).reduce(0) { $0 + (holder[Int($1)] == OwnedWorkflow.nobody ? 1 : 0) })
        if missing[t] == 0 { makeReady(t) }
    }

    private func makeReady(_ t: Int) {
        state[t] = .ready
        ready.append(Int32(t))
        readyCount += 1
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

    /// The first `limit` ready tasks in queue order. Entries no longer ready (given to thieves)
    /// are dropped from the front on the way, so the scan stays short.
    func readyTasks(limit: Int) -> [Int] {
        while readyHead < ready.count && state[Int(ready[readyHead])] != .ready { readyHead += 1 }
        if readyHead >= 4_096 && readyHead * 2 >= ready.count {
            ready.removeFirst(readyHead)
            readyHead = 0
        }
        var found: [Int] = []
        var i = readyHead
        while found.count < limit && i < ready.count {
            let t = Int(ready[i])
            if state[t] == .ready { found.append(t) }
            i += 1
        }
        return found
    }

    func stealable(_ t: Int, owner: PeerID) -> StealableTask {
        let inputs = plan.inputs(of: t).map { v in
            DataLocation(
                datum: WorkIDs.pack(workflow, Int(v)), bytes: bytes[Int(v)], holders: [holder[Int(v)]],
                checksum: checksum[Int(v)])
        }
        let outputs = plan.outputs(of: t).map { WorkIDs.pack(workflow, Int($0)) }
        return StealableTask(
            id: WorkIDs.pack(workflow, t), owner: owner, catalogueKey: plan.catalogueKey[t], inputs: inputs,
            outputs: outputs)
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
    func overdue(before: Instant, batch: Int) -> [(PeerID, [UInt64])] {
        var byPeer: [PeerID: [UInt64]] = [:]
        for t in state.indices where state[t] == .assigned && assignedAt[t] < before {
            guard byPeer[assignee[t], default: []].count < batch else { continue }
            byPeer[assignee[t], default: []].append(WorkIDs.pack(workflow, t))
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

    /// Applies task `t`'s result: its outputs now live at `at`.
    func complete(_ t: Int, outputs: [OutputRecord], holder at: PeerID) {
        switch state[t] {
        case .done: return
        case .ready: readyCount -= 1
        case .waiting, .assigned: break
        }
        state[t] = .done
        assignee[t] = OwnedWorkflow.nobody
        remaining -= 1
        if outputs.isEmpty {
            log.append(RecordEntry(task: UInt32(t), version: RecordEntry.none, holder: at, checksum: 0, bytes: 0))
        }
        let mine = plan.outputs(of: t)
        for o in outputs {
            let v = WorkIDs.index(o.version)
            guard WorkIDs.workflow(o.version) == workflow, mine.contains(Int32(v)) else { continue }
            let wasMissing = holder[v] == OwnedWorkflow.nobody
            holder[v] = at
            checksum[v] = o.checksum
            bytes[v] = o.bytes
            log.append(RecordEntry(task: UInt32(t), version: o.version, holder: at, checksum: o.checksum, bytes: o.bytes))
            guard wasMissing else { continue }
            for c in plan.consumers(of: v) where state[Int(c)] == .waiting {
                missing[Int(c)] -= 1
                if missing[Int(c)] == 0 { makeReady(Int(c)) }
            }
        }
    }

    /// Version `v` is gone from `peer` (if `peer` was its holder). Returns the tasks re-opened to
    /// make it (and what they need) again.
    func lose(version v: Int, heldBy peer: PeerID) -> [Int] {
        guard v < holder.count, holder[v] == peer, peer != OwnedWorkflow.nobody else { return [] }
        holder[v] = OwnedWorkflow.nobody
        log.append(
            RecordEntry(
                task: RecordEntry.lost, version: WorkIDs.pack(workflow, v), holder: OwnedWorkflow.nobody, checksum: 0,
                bytes: 0))
        for c in plan.consumers(of: v) {
            let c = Int(c)
            switch state[c] {
            case .waiting: missing[c] += 1
            case .ready:
                state[c] = .waiting
                readyCount -= 1
                missing[c] = 1
            case .assigned, .done: break
            }
        }
        guard needed(v) else { return [] }
        return reopen(producerOf: v)
    }

    /// Whether version `v` is still wanted: a result, or read by a task not done.
    private func needed(_ v: Int) -> Bool {
        plan.isFinal(v) || plan.consumers(of: v).contains { state[Int($0)] != .done }
    }

    /// Re-opens the producer of lost version `v`, and up the lineage whatever it needs that is
    /// lost too.
    private func reopen(producerOf v: Int) -> [Int] {
        var reopened: [Int] = []
        var stack = [v]
        while let version = stack.popLast() {
            let p = Int(plan.producer[version])
            guard p >= 0, state[p] == .done else { continue }
            remaining += 1
            reopened.append(p)
            wait(p)
            for u in plan.inputs(of: p) where holder[Int(u)] == OwnedWorkflow.nobody { stack.append(Int(u)) }
        }
        return reopened
    }

    /// `peer` died: the versions only it held are lost (re-made if needed) and the tasks it ran
    /// are queued again. Returns (tasks re-queued, tasks re-opened).
    func peerDown(_ peer: PeerID) -> (Int, [Int]) {
        var reopened: [Int] = []
        for v in plan.dataCount..<holder.count where holder[v] == peer {
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

    /// The record's header as a backup receives it, and as the owner writes it to its shard.
    func recordCreate(owner: PeerID) -> WorkMessage {
        .recordCreate(workflow: workflow, owner: owner, backups: backups, plan: plan, initial: initial)
    }

    func recordWrite(owner: PeerID) -> RecordWrite {
        .create(workflow: workflow, owner: owner, backups: backups, plan: plan, initial: initial)
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
        log = []
        results = []
        leases = RingBuffer()
    }
}
