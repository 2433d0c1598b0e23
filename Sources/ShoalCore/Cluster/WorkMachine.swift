public enum WorkEvent: Sendable {
    /// A workflow submitted at this peer: this peer owns it. `initial` are the data's initial
    /// values (one per datum), which this peer holds. An open plan (`WorkflowPlan.isOpen`) grows
    /// while its program runs here: `extend`, `wait`, `close`.
    case submit(workflow: WorkflowID, plan: WorkflowPlan, initial: [DataValue])
    /// The program of an open workflow owned here submits a batch of calls, after `initial.count`
    /// new data with these initial values (held here).
    case extend(workflow: WorkflowID, calls: [WorkflowTaskSpec], initial: [DataValue])
    /// The program waits on `datum` (its current version): answered by `waited` with
    /// `requestID` as soon as the version exists, its value fetched here.
    case wait(workflow: WorkflowID, datum: Int, requestID: UInt64)
    /// The program waits for every task it submitted so far: answered by `barrierReached`.
    case barrier(workflow: WorkflowID, requestID: UInt64)
    /// The program ended: no call follows.
    case close(workflow: WorkflowID)
    case message(WorkMessage, from: PeerID)
    case timer(WorkTimer)
    /// The shell ran a task body (`execute` directive): one value per output, in order.
    case executed(task: TaskRef, outputs: [DataValue])
    /// The body of `task` failed (it threw, exited non-zero, or read a value that is absent).
    case failed(task: TaskRef, failure: TaskFailure)
    /// The stealing machine granted this peer these tasks (thief side).
    case granted([StealableTask])
    /// The stealing machine gave these tasks of ours to `thief` (victim side).
    case gave([TaskRef], to: PeerID)
    /// Membership sees `peer` alive (a join, or a revival).
    case peerUp(PeerID)
    /// Membership declared `peer` dead or departed.
    case peerDown(PeerID)
    /// After a restart with the store kept: the workflow records the shard holds. Records this
    /// peer owned are resumed; the others are kept as a backup's.
    case recovered([RecoveredRecord])
}

public enum WorkDirective: Sendable {
    case send(WorkMessage, to: PeerID)
    case schedule(WorkTimer, after: Interval)
    /// Run the body of `task` (its attempt `attempt`) on these input values, nil for a value
    /// that is absent (its writer's failure was ignored); answer with `.executed` or `.failed`.
    /// `call` is the call to run for a real body (nil: a modelled body).
    case execute(task: TaskRef, catalogueKey: UInt64, inputs: [DataValue?], attempt: Int, call: ExecutableCall?)
    /// This peer owns `workflow` and it finished: its results (the final version of each datum,
    /// fetched to the owner and checksum-verified, nil where it failed or has no value), in datum
    /// order, and the failures ignored or applied on the way.
    case workflowCompleted(workflow: WorkflowID, results: [DataValue?], failures: [FailureReport])
    /// The workflow failed: `cause` is the task failure that ended it (a `fail` policy), nil when
    /// the cluster could not run it (an input lost beyond recovery).
    case workflowFailed(workflow: WorkflowID, reason: String, cause: FailureReport?)
    /// The answer to the program's `wait` `requestID`: the value, held here, or nil when it has
    /// none (its writer failed: ignored, or for good).
    case waited(workflow: WorkflowID, requestID: UInt64, value: DataValue?)
    /// Every task the program had submitted when it asked (`barrier` `requestID`) is done (or
    /// failed and the failure was ignored or cancelled its successors).
    case barrierReached(workflow: WorkflowID, requestID: UInt64)
    /// Observability for checkers: the owner applied a result of `task` / re-opened it.
    case resultApplied(task: TaskRef)
    case taskReopened(task: TaskRef)
    /// This peer took over `workflow` from its dead owner.
    case tookOver(workflow: WorkflowID, from: PeerID)
    /// Write this change of a workflow record to the shard (`RecordCodec` lays it out).
    case persistRecord(RecordWrite)
}

/// The work machine of one peer: it owns the workflows submitted to it, runs tasks, serves and
/// fetches data, and keeps the replicated owner records of others' workflows.
///
/// - **Owner.** Tasks become ready when every input version has a holder. The owner runs ready
///   tasks on its own slots first; the rest wait in its ready queue, which thieves steal from
///   (the stealing machine decides what to give; `gave` records the thief and starts a grant
///   lease that the thief's `started`, or its result, ends). The first result of a task is applied and
///   acknowledged; later ones are acknowledged and discarded. When a peer dies, the tasks it was
///   running are queued again and the versions only it held are lost: a lost version still
///   needed (a final result, or read by a task not done) re-opens its producing task, and so on
///   up the lineage. When every task is done the owner fetches the final versions, checks them
///   against the recorded checksums and reports the results.
/// - **Executor.** A task (own or granted) takes a slot, fetches the inputs it does not hold from
///   their holders (verifying each transfer's checksum and the owner's recorded one), runs, keeps
///   its outputs, and reports them to the owner until acknowledged (bounded). An input it cannot
///   get is reported to the owner, which re-plans.
/// - **Record.** The owner replicates its workflow's record (plan, initial data, and a log of
///   where each version lives) to `recordReplicas - 1` backups chosen by rendezvous hashing; when
///   the owner dies, the first live backup rebuilds the workflow from the record and takes over.
///
/// Pure: it reads no clock (`now` comes in), uses no randomness, does no IO, and iterates only
/// ordered collections where the order reaches a directive.
public struct WorkMachine: Sendable {
    public let id: PeerID
    public let settings: WorkSettings
    public private(set) var counters = WorkCounters()

    private var now = Instant.zero
    /// The live peers, self included; sorted (and deduplicated) on demand, see `sortedLive`.
    private var live: [PeerID] = []
    private var liveSorted = true

    // Owner.
    private var owned: [OwnedWorkflow] = []
    /// A workflow ended since the last event: it leaves `owned` at the next one (not at once: the
    /// code that ended it may still hold its index).
    private var ownedFinished = false
    /// The last `retiredMemory` workflows this peer owned to their end, to answer a backup that
    /// still asks about one (`ownerCheck`) with `release` rather than `notOwner`.
    private var retired: Set<WorkflowID> = []
    private var retiredOrder = RingBuffer<WorkflowID>()
    private var ownedIndex: [WorkflowID: Int] = [:]
    private var leaseCheckScheduled = false
    private var auditScheduled = false
    private var flushScheduled = false

    // Executor.
    private struct Job {
        var task: StealableTask
        var values: [DataValue?]
        var waiting: Int

        /// Input `i` arrived; whether the job has all its inputs now.
        mutating func received(_ value: DataValue, input i: Int) -> Bool {
            values[i] = value
            waiting -= 1
            return waiting == 0
        }
    }
    private var queue = RingBuffer<StealableTask>()
    private var running: [TaskRef: Job] = [:]
    /// The task index under which an owner fetches its final results (no task has it).
    private static let collection = Int(UInt32.max)
    private static func collecting(_ wf: WorkflowID) -> TaskRef { TaskRef(wf, collection) }
    /// The task index under which an owner fetches a value its program waits for.
    private static let waiting = collection - 1
    private struct Fetch {
        var task: TaskRef  // the job (or, for a collecting owner, the workflow's id with index max)
        var input: Int
        var holder: PeerID
        var attempts: Int
        var version: VersionRef
    }
    private var fetches: [UInt64: Fetch] = [:]
    private var nextRequestID: UInt64 = 1
    /// When each fetch attempt times out (by request id), and each sent result is sent again (by
    /// task): one sweep timer each, not one timer per request.
    private var fetchDeadlines: SweptDeadlines<UInt64>
    private var resultDeadlines: SweptDeadlines<TaskRef>
    /// Acknowledgements of results not sent yet, by executor (`ackDelay`), in arrival order.
    private var pendingAcks: [PeerID: [TaskRef]] = [:]
    private var ackFlushScheduled = false
    /// When each granted task is confirmed to its owner if it has not finished by then.
    private var confirmDeadlines: SweptDeadlines<Grant>
    private struct Grant: Sendable { var task: TaskRef; var owner: PeerID }
    /// A result not yet acknowledged by every owner it was sent to.
    private struct PendingResult { var owners: [PeerID]; var result: TaskResult; var attempts: Int }
    /// A task's outputs and what they were computed from (`OutputRecord.basis`).
    private struct TaskResult {
        var outputs: [OutputRecord]
        var basis: UInt64
        /// A failed attempt instead: which, and why.
        var failure: TaskFailure? = nil
        var attempt: UInt16 = 1

        func message(_ task: TaskRef) -> WorkMessage {
            if let failure { return .failure(task: task, attempt: attempt, failure: failure) }
            return .result(task: task, outputs: outputs, basis: basis)
        }
    }
    /// Owners other than the one in the task that asked about a running or queued task (after a
    /// takeover, or on both sides of a partition): they get the result too.
    private var alsoTell: [TaskRef: [PeerID]] = [:]
    /// Jobs whose bodies were running when their workflow ended here (`release`): their outputs
    /// are dropped when they finish, as the shell dropped the workflow's bytes (a body that ends
    /// after the release must not leave this peer believing it holds a value it has no bytes of).
    private var discardOnFinish: Set<TaskRef> = []
    private var unacknowledged: [TaskRef: PendingResult] = [:]
    /// Tasks granted here and waiting for a slot (for audits).
    private var queuedIDs: Set<TaskRef> = []
    /// The last `resultMemory` results this peer made for other owners, to answer audits.
    private var recentResults: [TaskRef: TaskResult] = [:]
    private var recentOrder = RingBuffer<TaskRef>()
    /// The versions this peer holds (its produced outputs, fetched copies, owned initial data).
    private var store: [VersionRef: DataValue] = [:]

    // Backup.
    private struct BackupRecord {
        var owner: PeerID
        var backups: [PeerID]
        var plan: WorkflowPlan
        var initial: [DataValue]
        var log: [RecordEntry]
        /// The owner said it does not own the workflow (it restarted without its store).
        var disowned = false
    }
    private var ownerCheckScheduled = false
    private var records: [WorkflowID: BackupRecord] = [:]
    /// Backup: the parts received so far of record creates that travel in parts, by workflow
    /// (counted with `records` against `maxBackupRecords`; dropped when their owner goes down).
    private var assembling: [WorkflowID: (owner: PeerID, parts: [Int: RecordPart])] = [:]

    public init(id: PeerID, settings: WorkSettings = WorkSettings()) {
        self.id = id
        self.settings = settings.clamped
        live = [id]
        fetchDeadlines = SweptDeadlines(interval: self.settings.fetchTimeout)
        resultDeadlines = SweptDeadlines(interval: self.settings.resultRetry)
        confirmDeadlines = SweptDeadlines(interval: Interval(nanoseconds: max(1, self.settings.grantLease.nanoseconds / 4)))
    }

    // MARK: Queries

    /// Slots with no job (prefetched jobs fill none: `WorkSettings.prefetch`).
    public var freeSlots: Int { max(0, settings.slots - running.count) }
    /// Ready tasks queued here: owned ones not yet running, plus granted ones waiting for a slot.
    public var readyTasks: Int { owned.reduce(queue.count) { $0 + $1.readyCount } }
    public private(set) var storedBytes: UInt64 = 0
    /// Workflows this peer owns and has not finished.
    public var ownedWorkflows: [WorkflowID] { owned.filter { !$0.finished }.map(\.workflow) }
    /// How far an owned workflow is, in words (for reports of a workflow that did not finish).
    public func progress(of wf: WorkflowID) -> String? {
        guard let w = ownedIndex[wf] else { return nil }
        return owned[w].progress
    }

    /// How far an owned workflow is, in numbers (nil: not owned here).
    public func counts(of wf: WorkflowID) -> WorkflowProgress? {
        guard let w = ownedIndex[wf] else { return nil }
        return owned[w].counts
    }

    /// The jobs running here, in words (for reports of a workflow that did not finish).
    public var runningJobs: String {
        running.keys.sorted().map { id in
            let job = running[id]!
            let waits = fetches.keys.sorted().compactMap { rid -> String? in
                guard let f = fetches[rid], f.task == id else { return nil }
                return "\(f.version.index)@\(f.holder)x\(f.attempts)"
            }
            return "\(id) for \(job.task.owner) waiting on \(job.waiting) \(waits)"
        }.joined(separator: "; ")
    }

    /// Workflows whose record this peer keeps as a backup.
    public var backedUpWorkflows: [WorkflowID] { records.keys.sorted() }

    /// The tasks this peer offers to a thief (at most `limit`, and at most `stealWindow`): those
    /// with an input the thief holds first, then the rest in queue order. Mutating: it drops stale
    /// entries from the ready queues on the way.
    public mutating func stealable(near thief: PeerID? = nil, limit: Int = .max) -> [StealableTask] {
        let window = max(0, min(limit, settings.stealWindow))
        var out: [StealableTask] = []
        out.reserveCapacity(window)
        for workflow in owned where !workflow.finished && out.count < window {
            for t in workflow.readyTasks(near: thief, limit: window - out.count) {
                out.append(workflow.stealable(t, owner: id))
            }
        }
        return out
    }

    // MARK: Events

    public mutating func on(_ event: WorkEvent, now: Instant, into out: inout [WorkDirective]) {
        self.now = now
        if ownedFinished { retireFinished() }
        switch event {
        case .submit(let wf, let plan, let initial):
            submit(wf, plan: plan, initial: initial, log: [], into: &out)
        case .extend(let wf, let calls, let initial):
            extend(wf, calls: calls, initial: initial, into: &out)
        case .wait(let wf, let datum, let rid):
            guard let w = ownedIndex[wf], !owned[w].finished else {
                out.append(.waited(workflow: wf, requestID: rid, value: nil))
                break
            }
            do {
                let v = try owned[w].wait(on: datum)
                owned[w].waits.append(OwnedWorkflow.Wait(requestID: rid, version: v))
            } catch {
                fail(w, reason: "its program waited on an unknown datum: \(error)", into: &out)
            }
        case .barrier(let wf, let rid):
            guard let w = ownedIndex[wf], !owned[w].finished else {
                out.append(.barrierReached(workflow: wf, requestID: rid))
                break
            }
            owned[w].barriers.append(rid)
        case .close(let wf):
            guard let w = ownedIndex[wf], !owned[w].finished, owned[w].plan.isOpen else { break }
            owned[w].close()
            startRecord(w, into: &out)
            checkFinished(w, into: &out)
            fill(into: &out)
        case .message(let message, let from): receive(message, from: from, into: &out)
        case .timer(let timer): fire(timer, into: &out)
        case .executed(let task, let outputs): executed(task, outputs: outputs, into: &out)
        case .failed(let task, let failure): executed(task, failure: failure, into: &out)
        case .granted(let tasks):
            // At most `maxGrantedQueue` wait for a slot; one beyond is not confirmed, and its
            // owner's grant lease gives it back to the owner's queue. The others are confirmed
            // if they are not done a quarter of the lease from now (`confirmSweep`); a task
            // granted again while it is here is not (so repeated grants add nothing to remember).
            let room = settings.maxGrantedQueue + max(0, settings.slots - running.count)
            for t in tasks where !queuedIDs.contains(t.id) {
                guard queue.count < room else {
                    counters.grantsRefused += 1
                    continue
                }
                queuedIDs.insert(t.id)
                queue.append(t)
                guard t.owner != id else { continue }
                if let d = confirmDeadlines.add(Grant(task: t.id, owner: t.owner), attempt: 1, now: now) {
                    out.append(.schedule(.confirmSweep, after: d))
                }
            }
            fill(into: &out)
        case .gave(let ids, let thief):
            for taskID in ids {
                guard let w = ownedIndex[taskID.workflow] else { continue }
                owned[w].assign(
                    taskID.task, to: thief, confirmed: false, now: now, deadline: now + settings.grantLease)
            }
            scheduleLeaseCheck(into: &out)
            scheduleAudit(into: &out)
        case .peerUp(let peer):
            live.append(peer)  // sorted lazily: a join storm brings a thousand of these
            liveSorted = false
        case .peerDown(let peer):
            peerDown(peer, into: &out)
        case .recovered(let list):
            for r in list.sorted(by: { $0.workflow < $1.workflow }) {
                if r.owner == id {
                    submit(r.workflow, plan: r.plan, initial: r.initial, log: r.log, into: &out)
                } else if records[r.workflow] == nil {
                    records[r.workflow] = BackupRecord(
                        owner: r.owner, backups: r.backups, plan: r.plan, initial: r.initial, log: r.log)
                    scheduleOwnerCheck(into: &out)
                }
            }
        }
        if waitsPending { answerWaits(into: &out) }
    }

    /// Whether a program waits on a workflow owned here (most events need not look).
    private var waitsPending: Bool { owned.contains { !$0.waits.isEmpty || !$0.barriers.isEmpty } }

    /// Answers the waits of programs whose version is there now (tasks finish, values arrive,
    /// versions are lost and remade: checked after every event, only for workflows with waits).
    private mutating func answerWaits(into out: inout [WorkDirective]) {
        for w in owned.indices where !owned[w].finished && !owned[w].barriers.isEmpty && owned[w].remaining == 0 {
            for rid in owned[w].barriers { out.append(.barrierReached(workflow: owned[w].workflow, requestID: rid)) }
            owned[w].barriers = []
        }
        for w in owned.indices where !owned[w].waits.isEmpty && !owned[w].finished {
            let wf = owned[w].workflow
            var i = 0
            while i < owned[w].waits.count {
                let wait = owned[w].waits[i]
                let stored = owned[w].storedVersion(wait.version)
                let state = max(owned[w].valueState[wait.version].rawValue, owned[w].valueState[stored].rawValue)
                let holder = owned[w].holder[wait.version]
                if state != OwnedWorkflow.ValueState.normal.rawValue {
                    owned[w].waits.remove(at: i)
                    out.append(.waited(workflow: wf, requestID: wait.requestID, value: nil))
                    continue
                }
                if holder != OwnedWorkflow.nobody {
                    let version = VersionRef(wf, stored)
                    if let value = store[version], value.checksum == owned[w].checksum[stored] {
                        owned[w].waits.remove(at: i)
                        out.append(.waited(workflow: wf, requestID: wait.requestID, value: value))
                        continue
                    }
                    if !wait.fetching {
                        owned[w].waits[i].fetching = true
                        fetch(version, for: TaskRef(wf, Self.waiting), input: 0, from: owned[w].holder[stored], into: &out)
                    }
                }
                i += 1
            }
        }
    }

    public mutating func on(_ event: WorkEvent, now: Instant) -> [WorkDirective] {
        var out: [WorkDirective] = []
        on(event, now: now, into: &out)
        return out
    }

    /// The live list, sorted and deduplicated (done here, on demand).
    @discardableResult
    private mutating func sortedLive() -> [PeerID] {
        guard !liveSorted else { return live }
        live.sort()
        var unique: [PeerID] = []
        unique.reserveCapacity(live.count)
        for p in live where unique.last != p { unique.append(p) }
        live = unique
        liveSorted = true
        return live
    }

    private mutating func isLive(_ peer: PeerID) -> Bool {
        sortedLive().binarySearchContains(peer)
    }

    // MARK: Owner

    private mutating func submit(
        _ wf: WorkflowID, plan: WorkflowPlan, initial: [DataValue], log: [RecordEntry],
        into out: inout [WorkDirective]
    ) {
        guard ownedIndex[wf] == nil, !retired.contains(wf) else { return }
        guard initial.count == plan.dataCount else {
            // A record that says otherwise is refused when it arrives (`acceptable`); a shell that
            // submits so is told, not trapped.
            out.append(
                .workflowFailed(
                    workflow: wf, reason: "\(initial.count) initial values for \(plan.dataCount) data", cause: nil))
            return
        }
        for (d, value) in initial.enumerated() { keep(VersionRef(wf, Int(plan.initialVersion[d])), value) }
        let workflow = OwnedWorkflow(workflow: wf, plan: plan, initial: initial, owner: id)
        let liveNow = sortedLive()
        workflow.replay(log, isLive: { liveNow.binarySearchContains($0) })
        ownedIndex[wf] = owned.count
        owned.append(workflow)
        // On disk: the record (a resumed or taken-over log is there already, under the same keys).
        workflow.persisted = log.count
        startRecord(owned.count - 1, into: &out)
        scheduleAudit(into: &out)
        checkFinished(owned.count - 1, into: &out)
        fill(into: &out)
    }

    /// Writes the record of a closed workflow and sends it to its backups. An open workflow has no
    /// record yet: its program runs here and would die with this peer, so no backup could finish
    /// it; the record is made when the program closes it (with the log so far).
    private mutating func startRecord(_ w: Int, into out: inout [WorkDirective]) {
        let workflow = owned[w]
        guard !workflow.plan.isOpen else { return }
        workflow.backupLinks = chooseBackups(workflow.workflow, excluding: []).map {
            OwnedWorkflow.Backup(peer: $0, sentAt: now)
        }
        out.append(.persistRecord(workflow.recordWrite(owner: id)))
        sendRecordCreates(w, to: workflow.backups, into: &out)
        scheduleFlush(into: &out)
    }

    /// Sends the record create of owned workflow `w` (in parts if it is large) to `peers`.
    private func sendRecordCreates(_ w: Int, to peers: [PeerID], into out: inout [WorkDirective]) {
        guard !peers.isEmpty else { return }
        let messages = owned[w].recordCreates(owner: id, maxPart: settings.maxRecordPart)
        for b in peers {
            for m in messages { out.append(.send(m, to: b)) }
        }
    }

    /// A batch of the program of open workflow `wf`.
    private mutating func extend(
        _ wf: WorkflowID, calls: [WorkflowTaskSpec], initial: [DataValue], into out: inout [WorkDirective]
    ) {
        guard let w = ownedIndex[wf], !owned[w].finished else { return }
        let firstData = owned[w].plan.dataCount
        do {
            try owned[w].extend(calls, initial: initial)
        } catch {
            fail(w, reason: "its program submitted a batch that does not fit: \(error)", into: &out)
            return
        }
        for (i, value) in initial.enumerated() {
            keep(VersionRef(wf, Int(owned[w].plan.initialVersion[firstData + i])), value)
        }
        fill(into: &out)
    }

    /// Acknowledges a result to its executor: at once without `ackDelay`, or gathered with the
    /// others for that executor until the flush (or until `maxAckBatch` of them).
    private mutating func acknowledge(_ task: TaskRef, to executor: PeerID, into out: inout [WorkDirective]) {
        guard settings.ackDelay > .zero else {
            out.append(.send(.resultAck(tasks: [task]), to: executor))
            return
        }
        pendingAcks[executor, default: []].append(task)
        if pendingAcks[executor]!.count >= settings.maxAckBatch {
            out.append(.send(.resultAck(tasks: pendingAcks.removeValue(forKey: executor)!), to: executor))
        }
        if !ackFlushScheduled && !pendingAcks.isEmpty {
            ackFlushScheduled = true
            out.append(.schedule(.ackFlush, after: settings.ackDelay))
        }
    }

    private mutating func chooseBackups(_ wf: WorkflowID, excluding: [PeerID]) -> [PeerID] {
        let candidates = sortedLive().filter { $0 != id && !excluding.contains($0) }
        return Rendezvous.replicas(of: wf.raw, among: candidates, count: settings.recordReplicas - 1)
    }

    private mutating func apply(
        _ taskID: TaskRef, _ result: TaskResult, from executor: PeerID, into out: inout [WorkDirective]
    ) {
        if executor != id { acknowledge(taskID, to: executor, into: &out) }
        guard let w = ownedIndex[taskID.workflow], !owned[w].finished else { return }
        let t = taskID.task
        guard t < owned[w].plan.taskCount else { return }
        if let failure = result.failure {
            switch owned[w].fail(t, attempt: result.attempt, failure: failure, from: executor) {
            case nil: return  // a duplicate, or about a run the owner no longer counts on
            case .retried:
                counters.tasksRetried += 1
            case .handled:
                counters.tasksFailed += 1
                scheduleFlush(into: &out)
                checkFinished(w, into: &out)
            case .workflowFails(let reason):
                counters.tasksFailed += 1
                fail(w, reason: reason, cause: owned[w].reports.last, into: &out)
                return
            }
            fill(into: &out)
            return
        }
        if owned[w].state[t] == .done || owned[w].state[t] == .failed {
            counters.duplicateResults += 1
            return
        }
        if owned[w].ignoredFailures.contains(t) {
            // Its failure was ignored before: that outcome stands, whatever this run made.
            owned[w].repeatIgnoredFailure(t)
        } else {
            guard owned[w].accepts(t, outputs: result.outputs, basis: result.basis) else {
                counters.resultsRefused += 1
                // A member that ran on a value since cut back: it runs again on the current one.
                if owned[w].state[t] == .assigned && owned[w].assignee[t] == executor {
                    owned[w].requeue(t)
                    counters.tasksRequeued += 1
                    fill(into: &out)
                }
                return
            }
            counters.resultsApplied += 1
            out.append(.resultApplied(task: taskID))
            owned[w].complete(t, outputs: result.outputs, holder: executor)
        }
        scheduleFlush(into: &out)
        checkFinished(w, into: &out)
        fill(into: &out)
    }

    private mutating func checkFinished(_ w: Int, into out: inout [WorkDirective]) {
        guard owned[w].remaining == 0, !owned[w].plan.isOpen, !owned[w].finished, !owned[w].collecting else { return }
        // Every task is done: collect the final versions here.
        owned[w].collecting = true
        let wf = owned[w].workflow
        let finals = owned[w].plan.finalVersion
        owned[w].results = Array(repeating: nil, count: finals.count)
        owned[w].resultsMissing = 0
        for (i, v) in finals.enumerated() {
            // A group's result is stored as its last member's partial.
            let stored = owned[w].storedVersion(Int(v))
            let version = VersionRef(wf, stored)
            if owned[w].valueState[stored] != .normal || owned[w].valueState[Int(v)] != .normal {
                continue  // failed, or absent: no value to collect
            }
            if let value = store[version], value.checksum == owned[w].checksum[Int(v)] {
                owned[w].results[i] = value
            } else {
                owned[w].resultsMissing += 1
                let holder = owned[w].holder[stored]
                fetch(version, for: Self.collecting(wf), input: i, from: holder, into: &out)
            }
        }
        finishIfCollected(w, into: &out)
    }

    private mutating func finishIfCollected(_ w: Int, into out: inout [WorkDirective]) {
        guard owned[w].collecting, owned[w].resultsMissing == 0, !owned[w].finished else { return }
        owned[w].finished = true
        let wf = owned[w].workflow
        out.append(.workflowCompleted(workflow: wf, results: owned[w].results, failures: owned[w].reports))
        release(w, into: &out)
    }

    /// Drops the workflows that ended from the owner's table, plan and all: a peer that owns
    /// workflow after workflow keeps only the ids of the last `retiredMemory`.
    private mutating func retireFinished() {
        ownedFinished = false
        for w in owned where w.finished {
            guard retired.insert(w.workflow).inserted else { continue }
            retiredOrder.append(w.workflow)
            if retiredOrder.count > settings.retiredMemory, let old = retiredOrder.popFirst() { retired.remove(old) }
        }
        owned.removeAll { $0.finished }
        ownedIndex = [:]
        for (i, w) in owned.enumerated() { ownedIndex[w.workflow] = i }
    }

    /// Workflow records this peer keeps as an owner (finished ones leave at the next event).
    public var ownedRecordCount: Int { owned.count }

    private mutating func release(_ w: Int, into out: inout [WorkDirective]) {
        ownedFinished = true
        let wf = owned[w].workflow
        var peers = Set(owned[w].holder.filter { $0 != OwnedWorkflow.nobody })
        peers.formUnion(owned[w].backups)
        peers.remove(id)
        for p in peers.sorted() { out.append(.send(.release(workflow: wf), to: p)) }
        out.append(.persistRecord(.drop(workflow: wf)))
        dropWorkflowData(wf)
        dropExecutorWork(of: wf)
        owned[w].dropState()
    }

    /// Workflow `wf` ended at its owner (which released it): what this peer would still do for it
    /// goes, since its results would be discarded and its inputs are being dropped: granted tasks
    /// waiting for a slot, and jobs still fetching inputs (with their fetches). A job already
    /// handed to the shell runs on; its result is acknowledged and dropped. If this peer owns the
    /// workflow too (it took it over while the other owner ran on, across a partition), it stops
    /// owning it: the workflow ended there, and its outcome is the one that owner reported.
    private mutating func ended(_ wf: WorkflowID, into out: inout [WorkDirective]) {
        if let w = ownedIndex[wf], !owned[w].finished {
            owned[w].finished = true
            counters.workflowsEndedElsewhere += 1
            release(w, into: &out)  // drops the executor's work of it too
        } else {
            dropExecutorWork(of: wf)
        }
        fill(into: &out)
    }

    /// Granted tasks of ended workflow `wf` waiting for a slot here, and its jobs still fetching.
    private mutating func dropExecutorWork(of wf: WorkflowID) {
        var kept = RingBuffer<StealableTask>()
        while let task = queue.popFirst() {
            if task.id.workflow == wf {
                queuedIDs.remove(task.id)
                counters.tasksDroppedAfterEnd += 1
            } else {
                kept.append(task)
            }
        }
        queue = kept
        let fetching = running.filter { $0.key.workflow == wf && $0.value.waiting > 0 }.map(\.key)
        for task in fetching {
            running[task] = nil
            alsoTell[task] = nil
            counters.tasksDroppedAfterEnd += 1
        }
        // The bodies running now keep their slots until they finish; what they make is dropped.
        for task in running.keys where task.workflow == wf { discardOnFinish.insert(task) }
        fetches = fetches.filter { $0.value.task.workflow != wf }
    }

    private mutating func fail(
        _ w: Int, reason: String, cause: FailureReport? = nil, into out: inout [WorkDirective]
    ) {
        guard !owned[w].finished else { return }
        owned[w].finished = true
        out.append(.workflowFailed(workflow: owned[w].workflow, reason: reason, cause: cause))
        release(w, into: &out)
    }

    private mutating func peerDown(_ peer: PeerID, into out: inout [WorkDirective]) {
        guard peer != id else { return }
        live.removeAll { $0 == peer }
        // A record that was still arriving in parts from it will not be finished.
        for (wf, a) in assembling where a.owner == peer { assembling[wf] = nil }
        for w in owned.indices where !owned[w].finished {
            let (requeued, reopened) = owned[w].peerDown(peer)
            counters.tasksRequeued += requeued
            noteReopened(reopened, in: w, into: &out)
            if owned[w].backups.contains(peer) {
                let replacement = chooseBackups(
                    owned[w].workflow, excluding: owned[w].backups + owned[w].refusedBackups)
                owned[w].replaceBackup(peer, with: replacement.first)
                out.append(.persistRecord(owned[w].recordWrite(owner: id)))
                scheduleFlush(into: &out)
                // Every backup learns the new list (the takeover order); the new one gets the record.
                sendRecordCreates(w, to: owned[w].backups, into: &out)
            }
            if owned[w].collecting { restartCollection(w, into: &out) }
        }
        // Takeover: a record whose owner died is taken over by its first live backup at once; the
        // others wait in turn, in case the ones before them lost their copy.
        for wf in records.keys.sorted() where records[wf]?.owner == peer {
            considerTakeover(wf, into: &out)
        }
        fill(into: &out)
    }

    /// A backup of owned workflow `w` refused its record (it keeps `maxBackupRecords` already): the
    /// next peer in rendezvous order that has not refused takes its place, as when a backup dies,
    /// and every backup learns the new takeover order. With none left, the record has one copy
    /// fewer: the workflow runs on, only less likely to survive its owner.
    private mutating func backupRefused(_ w: Int, by peer: PeerID, into out: inout [WorkDirective]) {
        if !owned[w].refusedBackups.contains(peer) { owned[w].refusedBackups.append(peer) }
        let replacement = chooseBackups(owned[w].workflow, excluding: owned[w].backups + owned[w].refusedBackups)
        owned[w].replaceBackup(peer, with: replacement.first)
        out.append(.persistRecord(owned[w].recordWrite(owner: id)))
        sendRecordCreates(w, to: owned[w].backups, into: &out)
        scheduleFlush(into: &out)
    }

    /// The owner of a record kept here is gone: the first live backup takes over at once, the
    /// k-th after k grace periods if nobody has announced itself by then.
    private mutating func considerTakeover(_ wf: WorkflowID, into out: inout [WorkDirective]) {
        guard let record = records[wf] else { return }
        let liveNow = sortedLive()
        let rank = record.backups.filter { $0 == id || liveNow.binarySearchContains($0) }.firstIndex(of: id) ?? 0
        if rank == 0 {
            takeOver(wf, into: &out)
        } else {
            out.append(.schedule(.takeoverCheck(workflow: wf), after: settings.takeoverGrace * Int64(rank)))
        }
    }

    private mutating func scheduleOwnerCheck(into out: inout [WorkDirective]) {
        guard !ownerCheckScheduled else { return }
        ownerCheckScheduled = true
        out.append(.schedule(.ownerCheck, after: settings.ownerCheckInterval))
    }

    private mutating func takeOver(_ wf: WorkflowID, into out: inout [WorkDirective]) {
        guard let record = records.removeValue(forKey: wf) else { return }
        counters.takeovers += 1
        out.append(.tookOver(workflow: wf, from: record.owner))
        submit(wf, plan: record.plan, initial: record.initial, log: record.log, into: &out)
    }

    /// Counts and reports the tasks a lost version re-opened.
    private mutating func noteReopened(_ tasks: [Int], in w: Int, into out: inout [WorkDirective]) {
        counters.tasksRecomputed += tasks.count
        for t in tasks { out.append(.taskReopened(task: TaskRef(owned[w].workflow, t))) }
    }

    private mutating func restartCollection(_ w: Int, into out: inout [WorkDirective]) {
        // A final version may have died with its holder: go back to running until it is remade.
        if owned[w].remaining > 0 {
            owned[w].collecting = false
            owned[w].results = []
        }
    }

    private mutating func inputLost(
        task taskID: TaskRef, version: VersionRef, holder: PeerID, definite: Bool, into out: inout [WorkDirective]
    ) {
        guard let w = ownedIndex[taskID.workflow], !owned[w].finished else { return }
        let t = taskID.task
        guard t < owned[w].plan.taskCount else { return }
        let v = version.version
        if definite || !isLive(holder) {
            noteReopened(owned[w].lose(version: v, heldBy: holder), in: w, into: &out)
        }
        if owned[w].state[t] == .assigned {
            owned[w].attempts[t] &+= 1
            if Int(owned[w].attempts[t]) >= settings.maxTaskAttempts {
                fail(w, reason: "task \(t) could not get its input version \(v) after \(settings.maxTaskAttempts) attempts",
                    into: &out)
                return
            }
            owned[w].requeue(t)
            counters.tasksRequeued += 1
        }
        fill(into: &out)
    }

    private mutating func scheduleLeaseCheck(into out: inout [WorkDirective]) {
        guard !leaseCheckScheduled else { return }
        leaseCheckScheduled = true
        out.append(.schedule(.leaseCheck, after: settings.grantLease))
    }

    private mutating func scheduleAudit(into out: inout [WorkDirective]) {
        guard !auditScheduled else { return }
        auditScheduled = true
        out.append(.schedule(.audit, after: settings.auditInterval))
    }

    private mutating func scheduleFlush(into out: inout [WorkDirective]) {
        guard !flushScheduled else { return }
        flushScheduled = true
        out.append(.schedule(.recordFlush, after: settings.recordFlushInterval))
    }

    private mutating func flushRecords(into out: inout [WorkDirective]) {
        flushScheduled = false
        var more = false
        for w in owned.indices where !owned[w].finished && !owned[w].plan.isOpen {
            if owned[w].log.count > owned[w].persisted {
                let first = owned[w].persisted
                out.append(
                    .persistRecord(
                        .append(workflow: owned[w].workflow, first: first, entries: Array(owned[w].log[first...]))))
                owned[w].persisted = owned[w].log.count
            }
            let workflow = owned[w]
            for b in workflow.backupLinks.indices {
                let backup = workflow.backupLinks[b]
                let quiet = now - backup.sentAt >= settings.recordFlushInterval * 10
                if !backup.created {
                    // The create (or the backup's copy of it) was lost: send it again now and then.
                    if quiet {
                        sendRecordCreates(w, to: [backup.peer], into: &out)
                        workflow.backupLinks[b].sentAt = now
                    }
                    more = true
                    continue
                }
                // Nothing acknowledged for a while: send again from the acknowledged point.
                let from = backup.sent > backup.acked && quiet ? backup.acked : backup.sent
                let end = min(workflow.log.count, from + settings.maxRecordBatch)
                if end > from {
                    out.append(
                        .send(
                            .recordAppend(
                                workflow: workflow.workflow, owner: id, first: from,
                                entries: Array(workflow.log[from..<end])), to: backup.peer))
                    workflow.backupLinks[b].sent = end
                    workflow.backupLinks[b].sentAt = now
                }
                if backup.acked < workflow.log.count { more = true }
            }
        }
        if more { scheduleFlush(into: &out) }
    }

    // MARK: Executor

    /// Starts queued tasks while slots are free: granted tasks first, then own ready tasks.
    private mutating func fill(into out: inout [WorkDirective]) {
        while running.count < settings.slots + settings.prefetch {
            if let task = queue.popFirst() {
                queuedIDs.remove(task.id)
                start(task, into: &out)
                continue
            }
            var found: StealableTask?
            for w in owned.indices where !owned[w].finished {
                if let t = owned[w].popReady() {
                    owned[w].assign(t, to: id, confirmed: true, now: now, deadline: now)
                    found = owned[w].stealable(t, owner: id)
                    break
                }
            }
            guard let task = found else { return }
            start(task, into: &out)
        }
    }

    private mutating func start(_ task: StealableTask, into out: inout [WorkDirective]) {
        guard running[task.id] == nil else { return }  // already running here (a duplicate grant)
        var job = Job(task: task, values: Array(repeating: nil, count: task.inputs.count), waiting: 0)
        for (i, input) in task.inputs.enumerated() where !input.absent {
            if let value = store[input.datum], input.checksum == 0 || value.checksum == input.checksum {
                job.values[i] = value
            } else {
                job.waiting += 1
            }
        }
        running[task.id] = job
        if job.waiting == 0 {
            run(task.id, into: &out)
            return
        }
        let missing = task.inputs.indices.filter { job.values[$0] == nil && !task.inputs[$0].absent }
        // An input with no holder is lost (its holder died, or it was this peer before a restart):
        // the task gives it back at once, and its owner makes the input again, rather than ask
        // nobody for it. Found by the equivalence test's seed 11: an owner that resumed from its
        // record after a restart ran a commutative group's member whose running value it had held.
        if let lost = missing.first(where: { task.inputs[$0].holder == OwnedWorkflow.nobody }) {
            abandon(task.id, version: task.inputs[lost].datum, holder: OwnedWorkflow.nobody, definite: true, into: &out)
            return
        }
        for i in missing { fetch(task.inputs[i].datum, for: task.id, input: i, from: task.inputs[i].holder, into: &out) }
    }

    private mutating func run(_ taskID: TaskRef, into out: inout [WorkDirective]) {
        guard let job = running[taskID] else { return }
        counters.tasksRun += 1
        out.append(
            .execute(
                task: taskID, catalogueKey: job.task.catalogueKey, inputs: job.values, attempt: Int(job.task.attempt),
                call: job.task.call))
    }

    /// The shell ran a job: it made `outputs`, or it failed with `failure`.
    private mutating func executed(
        _ taskID: TaskRef, outputs: [DataValue] = [], failure: TaskFailure? = nil, into out: inout [WorkDirective]
    ) {
        guard let job = running.removeValue(forKey: taskID) else { return }
        if discardOnFinish.remove(taskID) != nil {
            alsoTell[taskID] = nil
            counters.tasksDroppedAfterEnd += 1
            fill(into: &out)
            return
        }
        var records: [OutputRecord] = []
        if failure == nil {
            for (version, value) in zip(job.task.outputs, outputs) {
                keep(version, value)
                records.append(OutputRecord(version: version, bytes: value.bytes, checksum: value.checksum))
            }
        }
        let result = TaskResult(
            outputs: records, basis: OutputRecord.basis(job.values.lazy.map { $0?.checksum ?? 0 }), failure: failure,
            attempt: job.task.attempt)
        // The result goes to the task's owner, to any other peer that asked about it, and here if
        // this peer owns the workflow now (it took it over while running the task for the old
        // owner): an owner that never hears of a result waits forever.
        var owners = [job.task.owner] + (alsoTell.removeValue(forKey: taskID) ?? [])
        if ownedIndex[taskID.workflow] != nil { owners.append(id) }
        var remote: [PeerID] = []
        for owner in owners where !remote.contains(owner) && owner != id { remote.append(owner) }
        if owners.contains(id) { apply(taskID, result, from: id, into: &out) }
        if !remote.isEmpty {
            unacknowledged[taskID] = PendingResult(owners: remote, result: result, attempts: 1)
            if recentResults.updateValue(result, forKey: taskID) == nil {
                recentOrder.append(taskID)
                if recentOrder.count > settings.resultMemory, let old = recentOrder.popFirst() {
                    recentResults[old] = nil
                }
            }
            for owner in remote { out.append(.send(result.message(taskID), to: owner)) }
            resultDeadline(taskID, attempt: 1, into: &out)
        }
        fill(into: &out)
    }

    /// Drops a job that cannot run (an input is unreachable) and tells its owner.
    private mutating func abandon(_ taskID: TaskRef, version: VersionRef, holder: PeerID, definite: Bool, into out: inout [WorkDirective]) {
        guard let job = running.removeValue(forKey: taskID) else { return }
        discardOnFinish.remove(taskID)
        alsoTell[taskID] = nil  // they will ask again and hear `unknown`
        if job.task.owner != id {
            out.append(
                .send(.inputLost(task: taskID, version: version, holder: holder, definite: definite), to: job.task.owner))
        }
        // Here too if this peer owns the workflow (now): found by swarm seed 5965, where a peer
        // that took a workflow over kept waiting for a job it had abandoned for the old owner.
        if ownedIndex[taskID.workflow] != nil {
            inputLost(task: taskID, version: version, holder: holder, definite: definite, into: &out)
        }
        fill(into: &out)
    }

    private mutating func fetch(
        _ version: VersionRef, for task: TaskRef, input: Int, from holder: PeerID, into out: inout [WorkDirective]
    ) {
        let rid = nextRequestID
        nextRequestID += 1
        fetches[rid] = Fetch(task: task, input: input, holder: holder, attempts: 1, version: version)
        counters.fetches += 1
        out.append(.send(.fetch(version: version, requestID: rid), to: holder))
        fetchDeadline(rid, attempt: 1, into: &out)
    }

    /// Attempt `attempt` of fetch `rid` times out `fetchTimeout` from now (checked by the sweep).
    private mutating func fetchDeadline(_ rid: UInt64, attempt: Int, into out: inout [WorkDirective]) {
        if let d = fetchDeadlines.add(rid, attempt: attempt, now: now) { out.append(.schedule(.fetchSweep, after: d)) }
    }

    /// Attempt `attempt` of sending the result of `task` is sent again `resultRetry` from now,
    /// unless acknowledged (checked by the sweep).
    private mutating func resultDeadline(_ task: TaskRef, attempt: Int, into out: inout [WorkDirective]) {
        if let d = resultDeadlines.add(task, attempt: attempt, now: now) { out.append(.schedule(.resultSweep, after: d)) }
    }

    /// Attempt `attempt` of fetch `rid` got no answer in time: sent again, or given up.
    private mutating func fetchTimedOut(_ rid: UInt64, attempt: Int, into out: inout [WorkDirective]) {
        guard var f = fetches[rid], f.attempts == attempt else { return }  // answered, or a later attempt's
        if f.attempts < settings.maxFetchAttempts && isLive(f.holder) {
            f.attempts += 1
            fetches[rid] = f
            out.append(.send(.fetch(version: f.version, requestID: rid), to: f.holder))
            fetchDeadline(rid, attempt: f.attempts, into: &out)
        } else {
            fetches[rid] = nil
            fetchFailed(f, definite: false, into: &out)
        }
    }

    /// Sending `attempt` of the result of `task` got no acknowledgement in time: sent again to
    /// the owners still alive, or given up.
    private mutating func resultUnacknowledged(_ task: TaskRef, attempt: Int, into out: inout [WorkDirective]) {
        guard var pending = unacknowledged[task], pending.attempts == attempt else { return }
        // An owner that is gone is dropped: its successor re-runs the task, or asks (audit).
        let liveNow = sortedLive()
        pending.owners.removeAll { !liveNow.binarySearchContains($0) }
        if pending.attempts >= settings.maxResultAttempts || pending.owners.isEmpty {
            unacknowledged[task] = nil
            return
        }
        pending.attempts += 1
        unacknowledged[task] = pending
        for owner in pending.owners { out.append(.send(pending.result.message(task), to: owner)) }
        resultDeadline(task, attempt: pending.attempts, into: &out)
    }

    private mutating func received(
        _ value: DataValue?, version: VersionRef, requestID rid: UInt64, from: PeerID, into out: inout [WorkDirective]
    ) {
        guard let f = fetches[rid], f.holder == from, f.version == version else { return }  // stale or duplicate
        guard let value else {
            fetches[rid] = nil
            fetchFailed(f, definite: true, into: &out)
            return
        }
        guard value.isIntact else {
            counters.corruptTransfers += 1  // keep waiting: the timeout sends the fetch again
            return
        }
        fetches[rid] = nil
        counters.bytesFetched &+= value.bytes
        let wf = f.task.workflow
        if f.task.task == Self.waiting {
            guard let w = ownedIndex[wf], !owned[w].finished else { return }
            let v = version.version
            guard v < owned[w].checksum.count, value.checksum == owned[w].checksum[v] else {
                fetchFailed(f, definite: true, into: &out)
                return
            }
            keep(version, value)
            owned[w].fetchedForWaits(v)
            return
        }
        if f.task.task == Self.collection {
            guard let w = ownedIndex[wf], owned[w].collecting, !owned[w].finished, owned[w].results[f.input] == nil
            else { return }
            let v = Int(owned[w].plan.finalVersion[f.input])
            guard value.checksum == owned[w].checksum[v] else {
                fetchFailed(f, definite: true, into: &out)
                return
            }
            keep(version, value)
            owned[w].results[f.input] = value
            owned[w].resultsMissing -= 1
            finishIfCollected(w, into: &out)
            return
        }
        // The job is changed in the table, never on a copy (which would copy its arrays at every
        // fetch): no binding of it outlives this read.
        guard let expected = running[f.task].flatMap({ $0.values[f.input] == nil ? $0.task.inputs[f.input].checksum : nil })
        else { return }
        guard expected == 0 || value.checksum == expected else {
            // The holder has another version under this id: treat as lost there.
            fetchFailed(f, definite: true, into: &out)
            return
        }
        keep(version, value)
        if running[f.task]!.received(value, input: f.input) { run(f.task, into: &out) }
    }

    private mutating func fetchFailed(_ f: Fetch, definite: Bool, into out: inout [WorkDirective]) {
        let wf = f.task.workflow
        if f.task.task == Self.waiting {
            guard let w = ownedIndex[wf], !owned[w].finished else { return }
            owned[w].fetchedForWaits(f.version.version)  // fetched again once remade, or from the holder
            if definite || !isLive(f.holder) {
                noteReopened(owned[w].lose(version: f.version.version, heldBy: f.holder), in: w, into: &out)
                fill(into: &out)
            }
            return
        }
        if f.task.task == Self.collection {
            guard let w = ownedIndex[wf], owned[w].collecting, !owned[w].finished else { return }
            let v = Int(owned[w].plan.finalVersion[f.input])
            if definite || !isLive(f.holder) {
                noteReopened(owned[w].lose(version: v, heldBy: f.holder), in: w, into: &out)
                restartCollection(w, into: &out)
                fill(into: &out)
            } else {
                fetch(f.version, for: f.task, input: f.input, from: f.holder, into: &out)
            }
            return
        }
        abandon(f.task, version: f.version, holder: f.holder, definite: definite, into: &out)
    }

    private mutating func keep(_ version: VersionRef, _ value: DataValue) {
        if let old = store.updateValue(value, forKey: version) { storedBytes &-= old.bytes }
        storedBytes &+= value.bytes
    }

    private mutating func dropWorkflowData(_ wf: WorkflowID) {
        store = store.filter { $0.key.workflow != wf }
        storedBytes = store.values.reduce(0) { $0 &+ $1.bytes }
    }

    // MARK: Messages and timers

    /// Whether a message from another peer is within bounds. One that is not is dropped and
    /// counted (`messagesDropped`), never trapped on: its sender may be buggy, or hostile.
    /// Indices into a workflow (tasks, versions) are checked where they are used, against the
    /// plan; this checks what would otherwise overflow, allocate without bound or break a
    /// record's invariants.
    private func acceptable(_ message: WorkMessage) -> Bool {
        // A query asks about at most `maxAuditBatch` tasks; a grant holds at most 1,024 (the
        // stealing machine's clamp), an acknowledgement `maxAckBatch` (at most 1,024); the
        // answers are no longer.
        let maxTasks = max(settings.maxAuditBatch, 1_024)
        switch message {
        case .started(let tasks), .query(let tasks), .unknown(let tasks), .resultAck(let tasks):
            return tasks.count <= maxTasks
        case .result(_, let outputs, _):
            return outputs.count <= WorkSettings.maxOutputsPerTask
        case .recordCreate(_, _, let backups, let plan, let initial):
            return initial.count == plan.dataCount && backups.count <= 16
        case .recordAppend(_, _, let first, let entries):
            return first >= 0 && first <= Int(Int32.max) && entries.count <= settings.maxRecordBatch
        case .recordPart(_, _, let p):
            let most = settings.maxRecordPart * settings.maxRecordParts
            return p.parts >= 1 && p.parts <= settings.maxRecordParts && p.index >= 0 && p.index < p.parts
                && p.backups.count <= 16 && p.tasks.count <= settings.maxRecordPart
                && p.initial.count <= settings.maxRecordPart && p.marks.count <= 2 * settings.maxRecordPart
                && p.taskCount >= 0 && p.taskCount <= most && p.dataCount >= 0 && p.dataCount <= most
                && p.firstTask >= 0 && p.firstTask <= p.taskCount - p.tasks.count
                && p.firstDatum >= 0 && p.firstDatum <= p.dataCount - p.initial.count
        case .recordAck(_, let count):
            return count >= RecordAck.refused
        case .data, .fetch, .noData, .failure, .inputLost, .release, .ownerCheck, .notOwner:
            return true
        }
    }

    /// A backup keeps (or updates) the record of `wf` from `owner`, and acknowledges it.
    private mutating func keepRecord(
        _ wf: WorkflowID, owner: PeerID, backups: [PeerID], plan: WorkflowPlan, initial: [DataValue], from: PeerID,
        into out: inout [WorkDirective]
    ) {
        guard !refusedForRoom(wf, from: from, into: &out) else { return }
        if records[wf] == nil || records[wf]!.owner != owner {
            records[wf] = BackupRecord(owner: owner, backups: backups, plan: plan, initial: initial, log: [])
            out.append(.persistRecord(.drop(workflow: wf)))  // an older owner's log, if any
            out.append(.persistRecord(.create(workflow: wf, owner: owner, backups: backups, plan: plan, initial: initial)))
            scheduleOwnerCheck(into: &out)
        } else if records[wf]!.backups != backups {
            records[wf]!.backups = backups
            out.append(.persistRecord(.create(workflow: wf, owner: owner, backups: backups, plan: plan, initial: initial)))
        }
        out.append(.send(.recordAck(workflow: wf, count: records[wf]!.log.count), to: from))
    }

    /// A backup that keeps `maxBackupRecords` records (those arriving in parts count) refuses one
    /// more, and says so: its owner takes another backup (it must not wait on this one).
    private mutating func refusedForRoom(_ wf: WorkflowID, from: PeerID, into out: inout [WorkDirective]) -> Bool {
        guard records[wf] == nil && records.count + assembling.count >= settings.maxBackupRecords else { return false }
        counters.recordsRefused += 1
        out.append(.send(.recordAck(workflow: wf, count: RecordAck.refused), to: from))
        return true
    }

    /// A part of a record create that travels in parts: kept until the backup has every part,
    /// then the record is kept as from a whole `recordCreate`. Parts that do not make a valid plan
    /// are dropped and counted.
    private mutating func receivedPart(
        _ part: RecordPart, of wf: WorkflowID, owner: PeerID, from: PeerID, into out: inout [WorkDirective]
    ) {
        if let record = records[wf], record.owner == owner, assembling[wf] == nil, part.backups == record.backups,
            part.taskCount == record.plan.taskCount
        {
            // Whole already (the owner sends every part again until it hears an acknowledgement).
            out.append(.send(.recordAck(workflow: wf, count: record.log.count), to: from))
            return
        }
        var parts = assembling[wf].flatMap { $0.owner == owner ? $0.parts : nil } ?? [:]
        if let any = parts.values.first, any.parts != part.parts || any.taskCount != part.taskCount || any.backups != part.backups {
            parts = [:]  // the owner sends a newer create (another backup list): start over
        }
        if parts.isEmpty && refusedForRoom(wf, from: from, into: &out) { return }
        parts[part.index] = part
        guard parts.count == part.parts else {
            assembling[wf] = (owner, parts)
            return
        }
        assembling[wf] = nil
        guard let (spec, initial) = RecordPart.assemble(Array(parts.values)),
            let plan = try? WorkflowPlan(spec)
        else {
            counters.messagesDropped += 1
            return
        }
        keepRecord(wf, owner: owner, backups: part.backups, plan: plan, initial: initial, from: from, into: &out)
    }

    private mutating func receive(_ message: WorkMessage, from: PeerID, into out: inout [WorkDirective]) {
        guard acceptable(message) else {
            counters.messagesDropped += 1
            return
        }
        switch message {
        case .fetch(let version, let rid):
            if let value = store[version] {
                out.append(.send(.data(version: version, requestID: rid, value: value), to: from))
            } else {
                out.append(.send(.noData(version: version, requestID: rid), to: from))
            }
        case .data(let version, let rid, let value):
            received(value, version: version, requestID: rid, from: from, into: &out)
        case .noData(let version, let rid):
            received(nil, version: version, requestID: rid, from: from, into: &out)
        case .started(let tasks):
            for taskID in tasks {
                guard let w = ownedIndex[taskID.workflow] else { continue }
                owned[w].confirm(taskID.task, by: from)
            }
        case .result(let task, let outputs, let basis):
            apply(task, TaskResult(outputs: outputs, basis: basis), from: from, into: &out)
        case .failure(let task, let attempt, let failure):
            apply(task, TaskResult(outputs: [], basis: 0, failure: failure, attempt: attempt), from: from, into: &out)
        case .resultAck(let tasks):
            for task in tasks {
                unacknowledged[task]?.owners.removeAll { $0 == from }
                if unacknowledged[task]?.owners.isEmpty == true { unacknowledged[task] = nil }
            }
        case .query(let tasks):
            var here: [TaskRef] = []
            var unknown: [TaskRef] = []
            for task in tasks {
                if running[task] != nil || queuedIDs.contains(task) {
                    here.append(task)
                    if !alsoTell[task, default: []].contains(from) { alsoTell[task, default: []].append(from) }
                } else if let result = recentResults[task] {
                    out.append(.send(result.message(task), to: from))
                } else {
                    unknown.append(task)
                }
            }
            if !here.isEmpty { out.append(.send(.started(tasks: here), to: from)) }
            if !unknown.isEmpty { out.append(.send(.unknown(tasks: unknown), to: from)) }
        case .unknown(let tasks):
            for taskID in tasks {
                guard let w = ownedIndex[taskID.workflow], !owned[w].finished else { continue }
                if owned[w].unknown(taskID.task, at: from) {
                    counters.tasksUnknown += 1
                    counters.tasksRequeued += 1
                }
            }
            fill(into: &out)
        case .inputLost(let task, let version, let holder, let definite):
            inputLost(task: task, version: version, holder: holder, definite: definite, into: &out)
        case .recordCreate(let wf, let owner, let backups, let plan, let initial):
            guard ownedIndex[wf] == nil, !retired.contains(wf) else { return }
            assembling[wf] = nil
            keepRecord(wf, owner: owner, backups: backups, plan: plan, initial: initial, from: from, into: &out)
        case .recordPart(let wf, let owner, let part):
            guard ownedIndex[wf] == nil, !retired.contains(wf) else { return }
            receivedPart(part, of: wf, owner: owner, from: from, into: &out)
        case .recordAppend(let wf, let owner, let first, let entries):
            guard let have = records[wf].flatMap({ $0.owner == owner ? $0.log.count : nil }) else {
                // No record here (its create was lost or refused, or this peer restarted empty): say so.
                out.append(.send(.recordAck(workflow: wf, count: RecordAck.noRecord), to: from))
                return
            }
            var count = have
            if first <= have && first + entries.count > have {
                let added = Array(entries[(have - first)...])
                // In place: a copy of the record taken out of the table made every append copy
                // the whole log (quadratic in a workflow's tasks).
                records[wf]!.log.append(contentsOf: added)
                count += added.count
                out.append(.persistRecord(.append(workflow: wf, first: have, entries: added)))
            }
            out.append(.send(.recordAck(workflow: wf, count: count), to: from))
        case .recordAck(let wf, let count):
            guard let w = ownedIndex[wf], !owned[w].finished,
                let b = owned[w].backupLinks.firstIndex(where: { $0.peer == from })
            else { return }
            guard count >= 0 else {
                if count == RecordAck.refused {
                    backupRefused(w, by: from, into: &out)
                } else {
                    owned[w].backupLinks[b] = OwnedWorkflow.Backup(peer: from)  // start it over from the create
                    scheduleFlush(into: &out)
                }
                return
            }
            let acked = max(owned[w].backupLinks[b].acked, min(count, owned[w].log.count))
            owned[w].backupLinks[b].created = true
            owned[w].backupLinks[b].acked = acked
            owned[w].backupLinks[b].sent = max(owned[w].backupLinks[b].sent, acked)
        case .release(let wf):
            assembling[wf] = nil
            if records.removeValue(forKey: wf) != nil { out.append(.persistRecord(.drop(workflow: wf))) }
            dropWorkflowData(wf)
            ended(wf, into: &out)
        case .ownerCheck(let wf):
            if let w = ownedIndex[wf] {
                if owned[w].finished { out.append(.send(.release(workflow: wf), to: from)) }
            } else if retired.contains(wf) {
                out.append(.send(.release(workflow: wf), to: from))
            } else {
                out.append(.send(.notOwner(workflow: wf), to: from))
            }
        case .notOwner(let wf):
            guard let record = records[wf], record.owner == from, !record.disowned else { return }
            records[wf]!.disowned = true
            considerTakeover(wf, into: &out)
        }
    }

    private mutating func fire(_ timer: WorkTimer, into out: inout [WorkDirective]) {
        switch timer {
        case .fetchSweep:
            let (due, next) = fetchDeadlines.sweep(now: now)
            if let next { out.append(.schedule(.fetchSweep, after: next)) }
            for entry in due { fetchTimedOut(entry.id, attempt: entry.attempt, into: &out) }
        case .resultSweep:
            let (due, next) = resultDeadlines.sweep(now: now)
            if let next { out.append(.schedule(.resultSweep, after: next)) }
            for entry in due { resultUnacknowledged(entry.id, attempt: entry.attempt, into: &out) }
        case .confirmSweep:
            let (due, next) = confirmDeadlines.sweep(now: now)
            if let next { out.append(.schedule(.confirmSweep, after: next)) }
            // Those still queued or running here, by owner; a finished one's result confirms it.
            var byOwner: [PeerID: [TaskRef]] = [:]
            for entry in due where running[entry.id.task] != nil || queuedIDs.contains(entry.id.task) {
                byOwner[entry.id.owner, default: []].append(entry.id.task)
            }
            for owner in byOwner.keys.sorted() { out.append(.send(.started(tasks: byOwner[owner]!), to: owner)) }
        case .leaseCheck:
            leaseCheckScheduled = false
            var pending = false
            for w in owned.indices where !owned[w].finished {
                let expired = owned[w].expireLeases(now: now)
                counters.tasksRequeued += expired
                if owned[w].hasLeases { pending = true }
            }
            if pending { scheduleLeaseCheck(into: &out) }
            fill(into: &out)
        case .recordFlush:
            flushRecords(into: &out)
        case .ackFlush:
            ackFlushScheduled = false
            for executor in pendingAcks.keys.sorted() {
                out.append(.send(.resultAck(tasks: pendingAcks[executor]!), to: executor))
            }
            pendingAcks = [:]
        case .takeoverCheck(let wf):
            guard let record = records[wf], record.disowned || !isLive(record.owner) else { return }
            takeOver(wf, into: &out)
        case .ownerCheck:
            ownerCheckScheduled = false
            for wf in records.keys.sorted() {
                guard let record = records[wf], isLive(record.owner) else { continue }
                out.append(.send(.ownerCheck(workflow: wf), to: record.owner))
            }
            if !records.isEmpty { scheduleOwnerCheck(into: &out) }
        case .audit:
            auditScheduled = false
            var pending = false
            for w in owned.indices where !owned[w].finished {
                for (peer, tasks) in owned[w].overdue(
                    before: now + Interval(nanoseconds: -settings.auditInterval.nanoseconds),
                    batch: settings.maxAuditBatch)
                {
                    if peer == id {
                        // Our own executor: a task it neither runs nor queues is lost here.
                        for task in tasks where running[task] == nil && !queuedIDs.contains(task) {
                            if owned[w].unknown(task.task, at: id) {
                                counters.tasksUnknown += 1
                                counters.tasksRequeued += 1
                            }
                        }
                        continue
                    }
                    counters.auditQueries += 1
                    out.append(.send(.query(tasks: tasks), to: peer))
                }
                if owned[w].hasAssigned { pending = true }
            }
            if pending { scheduleAudit(into: &out) }
            fill(into: &out)
        }
    }
}

extension Array where Element == PeerID {
    /// Membership test on a sorted array.
    func binarySearchContains(_ p: PeerID) -> Bool {
        var lo = 0
        var hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if self[mid] < p { lo = mid + 1 } else { hi = mid }
        }
        return lo < count && self[lo] == p
    }
}
