import Testing

@testable import ShoalCore

/// What a work machine receives from another peer may be anything: every message kind with
/// out-of-range indices, counts and sizes is dropped (and counted) or ignored, never trapped on,
/// and the machine's own workflow still finishes.
@Suite("Work machine boundaries")
struct WorkBoundaryTests {
    typealias W = WorkMachineTests
    static let mine = WorkflowID(raw: 1)
    static let theirs = WorkflowID(raw: 2)
    static let stranger = WorkflowID(raw: 99)

    static func hostile(plan: WorkflowPlan) -> [WorkMessage] {
        let big = UInt32.max
        let tasks = [TaskRef(mine, Int(big)), TaskRef(mine, 1 << 20), TaskRef(stranger, 0), TaskRef(theirs, 7)]
        let versions = [VersionRef(mine, Int(big)), VersionRef(mine, 1 << 20), VersionRef(stranger, 0)]
        let value = DataValue(bytes: .max, content: 1)
        var corrupt = value
        corrupt.content = 2
        var out: [WorkMessage] = []
        for v in versions {
            out += [
                .fetch(version: v, requestID: .max), .data(version: v, requestID: 0, value: value),
                .data(version: v, requestID: 1, value: corrupt), .noData(version: v, requestID: .max),
            ]
        }
        out.append(.started(tasks: tasks))
        out.append(.started(tasks: Array(repeating: tasks[0], count: 100_000)))
        out.append(.resultAck(tasks: Array(repeating: tasks[0], count: 100_000)))
        for t in tasks {
            out += [
                .result(task: t, outputs: [OutputRecord(version: versions[0], bytes: .max, checksum: 0)], basis: 0),
                .result(task: t, outputs: [], basis: .max),
                .failure(task: t, attempt: 0, failure: TaskFailure(message: String(repeating: "x", count: 100_000))),
                .failure(task: t, attempt: .max, failure: TaskFailure(message: "")),
                .resultAck(tasks: [t]), .query(tasks: [t]), .unknown(tasks: [t]),
                .inputLost(task: t, version: versions[0], holder: W.p(.max), definite: true),
            ]
        }
        out.append(.result(task: TaskRef(mine, 0), outputs: Array(repeating: OutputRecord(version: versions[0], bytes: 0, checksum: 0), count: 70_000), basis: 0))
        // Records: a create whose initial values do not match its plan, appends out of range.
        out.append(.recordCreate(workflow: stranger, owner: W.p(3), backups: [], plan: plan, initial: []))
        out.append(.recordCreate(workflow: stranger, owner: W.p(3), backups: Array(repeating: W.p(4), count: 100), plan: plan, initial: W.initial(plan)))
        let garbage = [
            RecordEntry(.made, task: big, version: big, holder: W.p(.max), checksum: 0, bytes: .max),
            RecordEntry(.made, task: 0, version: big, holder: W.p(3), checksum: 0, bytes: 0),
            RecordEntry(.passedThrough, task: 0, version: 2, holder: W.p(3), checksum: 0, bytes: 0, source: big),
            RecordEntry(.absent, task: big, version: 2, holder: W.p(3), checksum: 0, bytes: 0),
            RecordEntry(.failed, task: big, version: big, holder: W.p(3), checksum: 0, bytes: 0),
            RecordEntry.about(.cut, version: Int(big)), RecordEntry.about(.lost, version: Int(big)),
        ]
        for first in [-1, Int.min, Int.max, 1 << 40] {
            out.append(.recordAppend(workflow: theirs, owner: W.p(3), first: first, entries: garbage))
        }
        out.append(.recordAppend(workflow: theirs, owner: W.p(3), first: 0, entries: garbage))  // taken: a backup keeps what its owner logs
        out.append(.recordAppend(workflow: stranger, owner: W.p(3), first: 0, entries: garbage))
        // Record parts out of range: counts, indices, firsts and sizes.
        let parts = RecordPart.split(plan: plan, backups: [W.p(1)], initial: W.initial(plan), maxPart: 1)
        for edit in [
            { (p: inout RecordPart) in p.parts = Int.max }, { $0.index = -1 }, { $0.index = $0.parts },
            { $0.firstTask = Int.min }, { $0.firstTask = Int.max }, { $0.firstDatum = Int.max }, { $0.taskCount = Int.max },
            { $0.dataCount = -1 }, { $0.tasks = Array(repeating: $0.tasks[0], count: 70_000) },
            { $0.backups = Array(repeating: W.p(4), count: 100) },
        ] as [(inout RecordPart) -> Void] {
            var part = parts[0]
            edit(&part)
            out.append(.recordPart(workflow: stranger, owner: W.p(3), part: part))
        }
        for count in [-5, Int.min, Int.max] { out.append(.recordAck(workflow: mine, count: count)) }
        for wf in [mine, theirs, stranger] { out += [.ownerCheck(workflow: wf), .notOwner(workflow: wf), .release(workflow: stranger)] }
        return out
    }

    @Test func everyMessageKindOutOfRangeIsDroppedOrIgnoredAndTheWorkflowStillFinishes() throws {
        let plan = try WorkflowPlan(
            WorkflowSpec(
                name: "two", dataCount: 2,
                tasks: [W.task([(0, .inout)]), W.task([(1, .commutative)]), W.task([(1, .commutative)])]))
        var m = W.machine(1, slots: 1, replicas: 2)
        for p in [2, 3] { _ = m.on(.peerUp(W.p(UInt64(p))), now: W.t0) }
        // It backs up p3's workflow, and owns its own.
        _ = m.on(
            .message(.recordCreate(workflow: Self.theirs, owner: W.p(3), backups: [W.p(1)], plan: plan, initial: W.initial(plan)), from: W.p(3)),
            now: W.t0)
        var out = m.on(.submit(workflow: Self.mine, plan: plan, initial: W.initial(plan)), now: W.t0)
        for message in Self.hostile(plan: plan) {
            for from in [W.p(2), W.p(3), W.p(.max)] { _ = m.on(.message(message, from: from), now: W.t0) }
        }
        #expect(m.counters.messagesDropped >= 12 + 10 * 3, "\(m.counters)")
        #expect(m.counters.resultsApplied == 0, "no hostile result counted")
        // p3 dies: this peer takes its workflow over from the record, garbage log included.
        _ = m.on(.peerDown(W.p(3)), now: W.t0)
        #expect(m.ownedWorkflows.contains(Self.theirs))
        // Its own workflow still runs to its end, one task at a time.
        var finished = false
        for _ in 0..<20 where !finished {
            guard let (task, inputs) = W.executions(out).first(where: { $0.0.workflow == Self.mine }) else { break }
            out = m.on(.executed(task: task, outputs: W.outputs(plan, task, inputs)), now: W.t0)
            finished = out.contains { if case .workflowCompleted(Self.mine, _, _) = $0 { true } else { false } }
        }
        #expect(finished)
    }

    @Test func aFinishedWorkflowLeavesTheOwnersTableAndItsIdIsRemembered() throws {
        let plan = try WorkflowPlan(WorkflowSpec(name: "one", dataCount: 1, tasks: [W.task([(0, .inout)])]))
        var s = WorkSettings()
        s.slots = 1
        s.retiredMemory = 2
        var m = WorkMachine(id: W.p(1), settings: s)
        _ = m.on(.peerUp(W.p(2)), now: W.t0)
        for n in 1...3 {
            let wf = WorkflowID(raw: UInt64(n))
            let out = m.on(.submit(workflow: wf, plan: plan, initial: W.initial(plan)), now: W.t0)
            let (task, inputs) = try #require(W.executions(out).first)
            _ = m.on(.executed(task: task, outputs: W.outputs(plan, task, inputs)), now: W.t0)
        }
        // The next event compacts: no record is kept, only the ids of the last two.
        var out = m.on(.message(.ownerCheck(workflow: WorkflowID(raw: 3)), from: W.p(2)), now: W.t0)
        #expect(m.ownedRecordCount == 0)
        #expect(out.contains { if case .send(.release(WorkflowID(raw: 3)), _) = $0 { true } else { false } })
        out = m.on(.message(.ownerCheck(workflow: WorkflowID(raw: 1)), from: W.p(2)), now: W.t0)
        #expect(out.contains { if case .send(.notOwner(WorkflowID(raw: 1)), _) = $0 { true } else { false } })
        // A finished workflow is not run again if it is submitted again.
        out = m.on(.submit(workflow: WorkflowID(raw: 3), plan: plan, initial: W.initial(plan)), now: W.t0)
        #expect(W.executions(out).isEmpty && m.ownedRecordCount == 0)
    }

    static func recordCreates(_ out: [WorkDirective]) -> [(to: PeerID, backups: [PeerID])] {
        out.compactMap { if case .send(.recordCreate(_, _, let b, _, _), let to) = $0 { (to, b) } else { nil } }
    }

    static func recordAcks(_ out: [WorkDirective]) -> [Int] {
        out.compactMap { if case .send(.recordAck(_, let count), _) = $0 { count } else { nil } }
    }

    /// A backup keeps at most `maxBackupRecords` records of others' workflows: a create for one more
    /// is refused with `recordAck(count: RecordAck.refused)`, and the owner takes the next backup
    /// in rendezvous order instead (never one that refused), rather than send its create to the
    /// full one for ever. Its workflow runs on.
    @Test func aFullBackupRefusesARecordAndTheOwnerChoosesAnother() throws {
        let plan = try WorkflowPlan(WorkflowSpec(name: "one", dataCount: 1, tasks: [W.task([(0, .inout)])]))
        var owner = W.machine(1, slots: 1, replicas: 2)
        for p in [2, 3, 4] { _ = owner.on(.peerUp(W.p(UInt64(p))), now: W.t0) }
        let first = owner.on(.submit(workflow: Self.mine, plan: plan, initial: W.initial(plan)), now: W.t0)
        let chosen = try #require(Self.recordCreates(first).first?.to)
        // The chosen backup is full: it keeps one record, of another owner's workflow.
        var s = WorkSettings()
        s.maxBackupRecords = 1
        var backup = WorkMachine(id: chosen, settings: s)
        _ = backup.on(.peerUp(W.p(9)), now: W.t0)
        let other = WorkflowID(raw: 77)
        var out = backup.on(
            .message(.recordCreate(workflow: other, owner: W.p(9), backups: [chosen], plan: plan, initial: W.initial(plan)), from: W.p(9)),
            now: W.t0)
        #expect(Self.recordAcks(out) == [0])
        // Before the bound, every create was kept: 20,000 of them from one owner, 20,000 records.
        for n in UInt64(1_000)..<1_100 {
            _ = backup.on(
                .message(.recordCreate(workflow: WorkflowID(raw: n), owner: W.p(9), backups: [chosen], plan: plan, initial: W.initial(plan)), from: W.p(9)),
                now: W.t0)
        }
        #expect(backup.backedUpWorkflows == [other] && backup.counters.recordsRefused == 100)
        for case .send(let message, let to) in first where to == chosen {
            out = backup.on(.message(message, from: W.p(1)), now: W.t0)
        }
        #expect(Self.recordAcks(out) == [RecordAck.refused])
        #expect(backup.counters.recordsRefused == 101 && backup.backedUpWorkflows == [other])
        #expect(!out.contains { if case .persistRecord = $0 { true } else { false } })
        // An append for the refused record hears "no record"; a record kept is still updated.
        out = backup.on(.message(.recordAppend(workflow: Self.mine, owner: W.p(1), first: 0, entries: []), from: W.p(1)), now: W.t0)
        #expect(Self.recordAcks(out) == [RecordAck.noRecord])
        out = backup.on(
            .message(.recordCreate(workflow: other, owner: W.p(9), backups: [chosen, W.p(3)], plan: plan, initial: W.initial(plan)), from: W.p(9)),
            now: W.t0)
        #expect(Self.recordAcks(out) == [0] && backup.counters.recordsRefused == 101)
        // The owner hears the refusal: the next backup takes its place, and learns the new order.
        var refusers = [chosen]
        out = owner.on(.message(.recordAck(workflow: Self.mine, count: RecordAck.refused), from: chosen), now: W.t0)
        var next = Self.recordCreates(out)
        #expect(next.count == 1 && !refusers.contains(next[0].to) && next[0].backups == [next[0].to])
        // A duplicated refusal, or one from a peer that is no backup, changes nothing.
        #expect(owner.on(.message(.recordAck(workflow: Self.mine, count: RecordAck.refused), from: chosen), now: W.t0).isEmpty)
        // Every peer refuses in turn: the record is left with no backup, and no create goes out again.
        while let refuser = next.first?.to {
            refusers.append(refuser)
            out = owner.on(.message(.recordAck(workflow: Self.mine, count: RecordAck.refused), from: refuser), now: W.t0)
            next = Self.recordCreates(out)
            #expect(next.allSatisfy { !refusers.contains($0.to) })
        }
        #expect(Set(refusers) == [W.p(2), W.p(3), W.p(4)])
        #expect(out.contains { if case .persistRecord(.create(_, _, let b, _, _)) = $0 { b.isEmpty } else { false } })
        for ms in [100, 1_000, 10_000] {
            out = owner.on(.timer(.recordFlush), now: W.t0 + .milliseconds(Int64(ms)))
            #expect(Self.recordCreates(out).isEmpty)
        }
        // A backup that dies is replaced by none of those that refused.
        out = owner.on(.peerDown(W.p(4)), now: W.t0)
        #expect(Self.recordCreates(out).isEmpty)
        // The workflow still finishes.
        let (task, inputs) = try #require(W.executions(first).first)
        out = owner.on(.executed(task: task, outputs: W.outputs(plan, task, inputs)), now: W.t0)
        #expect(out.contains { if case .workflowCompleted(Self.mine, _, _) = $0 { true } else { false } })
        // Released records make room again.
        _ = backup.on(.message(.release(workflow: other), from: W.p(9)), now: W.t0)
        out = backup.on(
            .message(.recordCreate(workflow: Self.theirs, owner: W.p(3), backups: [chosen], plan: plan, initial: W.initial(plan)), from: W.p(3)),
            now: W.t0)
        #expect(Self.recordAcks(out) == [0] && backup.backedUpWorkflows == [Self.theirs])
        var total = WorkCounters()
        total.add(backup.counters)
        #expect(total.recordsRefused == 101)
    }

    /// Granted tasks waiting for a slot are bounded (`maxGrantedQueue`): one beyond is not taken,
    /// so no `started` confirms it, and its owner's grant lease gives it back to the owner's queue.
    @Test func grantsBeyondTheQueueBoundAreNotTakenAndGoBackToTheirOwner() throws {
        let plan = try WorkflowPlan(
            WorkflowSpec(name: "six", dataCount: 6, tasks: (0..<6).map { W.task([($0, .out)]) }))
        var owner = W.machine(1, slots: 1)
        _ = owner.on(.peerUp(W.p(2)), now: W.t0)
        _ = owner.on(.submit(workflow: Self.mine, plan: plan, initial: W.initial(plan)), now: W.t0)
        let offered = owner.stealable()
        #expect(offered.count == 5)  // one runs at the owner
        _ = owner.on(.gave(offered.map(\.id), to: W.p(2)), now: W.t0)
        var s = WorkSettings()
        s.slots = 1
        s.maxGrantedQueue = 2
        var thief = WorkMachine(id: W.p(2), settings: s)
        _ = thief.on(.peerUp(W.p(1)), now: W.t0)
        func confirmed(_ out: [WorkDirective]) -> [TaskRef] {
            out.flatMap { d -> [TaskRef] in if case .send(.started(let tasks), W.p(1)) = d { tasks } else { [] } }
        }
        #expect(confirmed(thief.on(.granted(offered), now: W.t0)).isEmpty)  // not yet: a quick result would do
        #expect(thief.counters.grantsRefused == 2 && thief.readyTasks == 2)
        // A quarter of the lease later the three taken (one runs, two wait) are confirmed.
        let quarter = W.t0 + Interval(nanoseconds: s.grantLease.nanoseconds / 4)
        let started = confirmed(thief.on(.timer(.confirmSweep), now: quarter))
        #expect(started == offered.prefix(3).map(\.id))
        // Before the bound, 100 grants of 16 tasks left 1,599 tasks queued at a one-slot peer.
        for i in 0..<100 {
            let more = (0..<16).map { StealableTask(id: TaskRef(Self.stranger, i * 16 + $0), owner: W.p(3), catalogueKey: 1) }
            _ = thief.on(.granted(more), now: quarter)
        }
        #expect(thief.readyTasks == 2 && thief.counters.grantsRefused == 2 + 1_600)
        _ = owner.on(.message(.started(tasks: started), from: W.p(2)), now: W.t0)
        _ = owner.on(.timer(.leaseCheck), now: W.t0 + owner.settings.grantLease + .milliseconds(1))
        #expect(owner.counters.tasksRequeued == 2)
        // (A task queued again is listed twice while its old queue entry is still there: `Set`.)
        #expect(Set(owner.stealable().map(\.id)) == Set(offered.suffix(2).map(\.id)))
    }
}
