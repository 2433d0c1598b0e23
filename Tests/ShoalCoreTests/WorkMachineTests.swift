import Testing

@testable import ShoalCore

/// The work protocol's rules, one machine at a time (the simulator tests play whole clusters).
@Suite("Work machine")
struct WorkMachineTests {
    static func p(_ i: UInt64) -> PeerID { PeerID(raw: i) }
    static let t0 = Instant.zero

    static func task(_ accesses: [(Int, Direction)]) -> WorkflowTaskSpec {
        WorkflowTaskSpec(
            catalogueKey: 1, cost: .milliseconds(1), accesses: accesses.map { .init($0.0, $0.1) }, outputBytes: 8)
    }

    static func initial(_ plan: WorkflowPlan, workflow: UInt64 = 1) -> [DataValue] {
        (0..<plan.dataCount).map {
            DataValue(bytes: 8, content: WorkflowPlan.initialContent(workflow: workflow, datum: $0))
        }
    }

    /// The outputs a task body makes (what the simulator's shell computes).
    static func outputs(_ plan: WorkflowPlan, _ task: TaskRef, _ inputs: [DataValue]) -> [DataValue] {
        let t = task.task
        let directions = plan.accessRange(of: t).map { plan.accessDirection[$0] }
        return WorkflowPlan.modelledOutputs(task: t, catalogueKey: 1, directions: directions, inputs: inputs.map(\.content))
            .map { DataValue(bytes: 8, content: $0) }
    }

    static func executions(_ ds: [WorkDirective]) -> [(TaskRef, [DataValue])] {
        ds.compactMap { if case .execute(let t, _, let inputs, _, _) = $0 { return (t, inputs.map { $0! }) } else { return nil } }
    }

    static func machine(_ id: UInt64, slots: Int = 1, replicas: Int = 1) -> WorkMachine {
        var s = WorkSettings()
        s.slots = slots
        s.recordReplicas = replicas
        return WorkMachine(id: p(id), settings: s)
    }

    @Test func aPlanVersionsEveryWriteAndOnlyReadsWait() throws {
        // a = f(); b = g(a); h(inout a); k(a, b)
        let spec = WorkflowSpec(
            name: "p", dataCount: 2,
            tasks: [Self.task([(0, .out)]), Self.task([(0, .in), (1, .out)]), Self.task([(0, .inout)]), Self.task([(0, .in), (1, .in)])])
        let plan = try WorkflowPlan(spec)
        #expect(plan.versionCount == 2 + 3)
        #expect(Array(plan.outputs(of: 0)) == [2])
        #expect(Array(plan.inputs(of: 1)) == [2])
        #expect(Array(plan.inputs(of: 2)) == [2])  // inout reads a's version 2 ...
        #expect(Array(plan.outputs(of: 2)) == [4])  // ... and writes version 4
        #expect(Array(plan.inputs(of: 3)) == [4, 3])
        #expect(plan.producer[4] == 2 && plan.producer[0] == -1)
        #expect(Array(plan.consumers(of: 2)) == [1, 2])
        #expect(plan.finalVersion == [4, 3])
        #expect(plan.isFinal(4) && !plan.isFinal(2))
    }

    @Test func modelledBodiesDependOnEveryPlainInputAndGroupMembersCommute() throws {
        let plain = WorkflowPlan.modelledOutputs(task: 3, catalogueKey: 1, directions: [.in, .in, .out], inputs: [5, 6])
        #expect(plain != WorkflowPlan.modelledOutputs(task: 3, catalogueKey: 1, directions: [.in, .in, .out], inputs: [5, 7]))
        #expect(plain != WorkflowPlan.modelledOutputs(task: 4, catalogueKey: 1, directions: [.in, .in, .out], inputs: [5, 6]))
        // Two members adding to a group value in either order give one result.
        func member(_ t: Int, _ group: UInt64, _ x: UInt64) -> UInt64 {
            WorkflowPlan.modelledOutputs(task: t, catalogueKey: 2, directions: [.in, .commutative], inputs: [x, group])[0]
        }
        #expect(member(1, member(2, 100, 8), 9) == member(2, member(1, 100, 9), 8))
        #expect(member(1, 100, 9) != member(1, 101, 9))
    }

    @Test func theFirstResultIsAppliedAndADuplicateIsDiscardedButAcknowledged() throws {
        let plan = try WorkflowPlan(WorkflowSpec(name: "two", dataCount: 2, tasks: [Self.task([(0, .out)]), Self.task([(1, .out)])]))
        var owner = Self.machine(1)
        var out = owner.on(.submit(workflow: WorkflowID(raw: 1), plan: plan, initial: Self.initial(plan)), now: Self.t0)
        #expect(Self.executions(out).map(\.0) == [TaskRef(WorkflowID(raw: 1), 0)])  // one slot: task 0 runs here
        let stealable = owner.stealable()
        #expect(stealable.map(\.id) == [TaskRef(WorkflowID(raw: 1), 1)])
        _ = owner.on(.gave([TaskRef(WorkflowID(raw: 1), 1)], to: Self.p(2)), now: Self.t0)
        let record = OutputRecord(version: VersionRef(WorkflowID(raw: 1), 3), bytes: 8, checksum: 42)
        for _ in 0..<2 {
            out = owner.on(.message(.result(task: TaskRef(WorkflowID(raw: 1), 1), outputs: [record], basis: 0), from: Self.p(2)), now: Self.t0)
            #expect(!out.contains { if case .send(.resultAck, _) = $0 { true } else { false } })  // gathered
            let flushed = owner.on(.timer(.ackFlush), now: Self.t0 + owner.settings.ackDelay)
            #expect(flushed.count == 1)
            #expect(flushed.contains { if case .send(.resultAck(let t), let to) = $0 { t == [TaskRef(WorkflowID(raw: 1), 1)] && to == Self.p(2) } else { false } })
        }
        #expect(owner.counters.resultsApplied == 1)
        #expect(owner.counters.duplicateResults == 1)
    }

    /// A thief is offered the ready tasks whose inputs it holds first, then the rest in queue
    /// order; a peer that holds nothing gets queue order.
    @Test func aThiefIsOfferedTheTasksWhoseInputsItHoldsFirst() throws {
        // Task 0 keeps the owner's one slot; tasks 1...4 write data 1...4; task 5...8 reads datum
        // 1...4 and writes datum 5...8.
        let wf = WorkflowID(raw: 1)
        let tasks = [Self.task([(0, .out)])] + (1...4).map { Self.task([($0, .out)]) }
            + (1...4).map { Self.task([($0, .in), ($0 + 4, .out)]) }
        let plan = try WorkflowPlan(WorkflowSpec(name: "near", dataCount: 9, tasks: tasks))
        var owner = Self.machine(1)
        for peer in [2, 3, 4] as [UInt64] { _ = owner.on(.peerUp(Self.p(peer)), now: Self.t0) }
        let out = owner.on(.submit(workflow: wf, plan: plan, initial: Self.initial(plan)), now: Self.t0)
        #expect(Self.executions(out).map(\.0) == [TaskRef(wf, 0)])
        #expect(owner.stealable().map(\.id.task) == [1, 2, 3, 4])
        // Tasks 1 and 2 ran at p2, 3 and 4 at p3.
        for (t, peer) in [(1, 2), (2, 2), (3, 3), (4, 3)] as [(Int, UInt64)] {
            _ = owner.on(.gave([TaskRef(wf, t)], to: Self.p(peer)), now: Self.t0)
            let record = OutputRecord(version: VersionRef(wf, Int(plan.outputs(of: t)[0])), bytes: 8, checksum: UInt64(t))
            _ = owner.on(.message(.result(task: TaskRef(wf, t), outputs: [record], basis: 0), from: Self.p(peer)), now: Self.t0)
        }
        #expect(owner.stealable().map(\.id.task) == [5, 6, 7, 8])
        #expect(owner.stealable(near: Self.p(3)).map(\.id.task) == [7, 8, 5, 6])
        #expect(owner.stealable(near: Self.p(2)).map(\.id.task) == [5, 6, 7, 8])
        #expect(owner.stealable(near: Self.p(4)).map(\.id.task) == [5, 6, 7, 8])
        // Given away, a task is no longer offered, near or not.
        _ = owner.on(.gave([TaskRef(wf, 7)], to: Self.p(4)), now: Self.t0)
        #expect(owner.stealable(near: Self.p(3)).map(\.id.task) == [8, 5, 6])
    }

    /// Prefetch (a real peer's `queue-depth`): jobs beyond the slots are handed to the shell at
    /// once, but they fill no slot, so the peer is not idle and offers the rest to thieves.
    @Test func prefetchedJobsAreHandedOutButAreNeitherFreeSlotsNorOffered() throws {
        let wf = WorkflowID(raw: 1)
        let plan = try WorkflowPlan(WorkflowSpec(name: "many", dataCount: 8, tasks: (0..<8).map { Self.task([($0, .out)]) }))
        var s = WorkSettings()
        s.slots = 2
        s.prefetch = 3
        var owner = WorkMachine(id: Self.p(1), settings: s)
        let out = owner.on(.submit(workflow: wf, plan: plan, initial: Self.initial(plan)), now: Self.t0)
        #expect(Self.executions(out).map(\.0.task) == [0, 1, 2, 3, 4])
        #expect(owner.freeSlots == 0 && owner.readyTasks == 3)
        #expect(owner.stealable().map(\.id.task) == [5, 6, 7])
        // One job ends: the next ready one is handed out; still no free slot.
        let next = owner.on(.executed(task: TaskRef(wf, 0), outputs: Self.outputs(plan, TaskRef(wf, 0), [])), now: Self.t0)
        #expect(Self.executions(next).map(\.0.task) == [5])
        #expect(owner.freeSlots == 0 && owner.readyTasks == 2)
    }

    /// A thief confirms a grant only if the task is not done a quarter of the lease later: a
    /// short task's result is its confirmation, and the owner keeps it assigned until then.
    @Test func aQuickResultConfirmsItsGrant() throws {
        let wf = WorkflowID(raw: 1)
        let plan = try WorkflowPlan(WorkflowSpec(name: "two", dataCount: 2, tasks: [Self.task([(0, .out)]), Self.task([(1, .out)])]))
        var owner = Self.machine(1)
        _ = owner.on(.peerUp(Self.p(2)), now: Self.t0)
        _ = owner.on(.submit(workflow: wf, plan: plan, initial: Self.initial(plan)), now: Self.t0)  // task 0 runs here
        let offered = owner.stealable()
        #expect(offered.map(\.id) == [TaskRef(wf, 1)])
        _ = owner.on(.gave(offered.map(\.id), to: Self.p(2)), now: Self.t0)
        var thief = Self.machine(2)
        _ = thief.on(.peerUp(Self.p(1)), now: Self.t0)
        let granted = thief.on(.granted(offered), now: Self.t0)
        #expect(!granted.contains { if case .send(.started, _) = $0 { true } else { false } })
        let (task, inputs) = try #require(Self.executions(granted).first)
        let done = thief.on(.executed(task: task, outputs: Self.outputs(plan, task, inputs)), now: Self.t0 + .milliseconds(5))
        let sent = done.compactMap { d -> WorkMessage? in if case .send(let m, Self.p(1)) = d { m } else { nil } }
        let result = try #require(sent.first { if case .result = $0 { true } else { false } })
        let quarter = Self.t0 + Interval(nanoseconds: thief.settings.grantLease.nanoseconds / 4)
        #expect(!thief.on(.timer(.confirmSweep), now: quarter).contains { if case .send(.started, _) = $0 { true } else { false } })
        // The result reaches the owner before the lease ends: applied, and nothing is queued again.
        _ = owner.on(.message(result, from: Self.p(2)), now: Self.t0 + .milliseconds(6))
        #expect(owner.counters.resultsApplied == 1)
        _ = owner.on(.timer(.leaseCheck), now: Self.t0 + owner.settings.grantLease + .milliseconds(1))
        #expect(owner.counters.tasksRequeued == 0)
    }

    /// An owner gathers acknowledgements per executor for `ackDelay` and sends each executor's
    /// in one message (by executor, in arrival order), or at once once it has `maxAckBatch`.
    @Test func acknowledgementsAreGatheredPerExecutor() throws {
        let wf = WorkflowID(raw: 1)
        let plan = try WorkflowPlan(WorkflowSpec(name: "six", dataCount: 6, tasks: (0..<6).map { Self.task([($0, .out)]) }))
        var s = WorkSettings()
        s.slots = 1
        s.maxAckBatch = 3
        var owner = WorkMachine(id: Self.p(1), settings: s)
        for peer in [2, 3] as [UInt64] { _ = owner.on(.peerUp(Self.p(peer)), now: Self.t0) }
        _ = owner.on(.submit(workflow: wf, plan: plan, initial: Self.initial(plan)), now: Self.t0)  // task 0 runs here
        func result(_ t: Int, from peer: UInt64) -> [WorkDirective] {
            _ = owner.on(.gave([TaskRef(wf, t)], to: Self.p(peer)), now: Self.t0)
            let record = OutputRecord(version: VersionRef(wf, Int(plan.outputs(of: t)[0])), bytes: 8, checksum: UInt64(t))
            return owner.on(.message(.result(task: TaskRef(wf, t), outputs: [record], basis: 0), from: Self.p(peer)), now: Self.t0)
        }
        func acks(_ out: [WorkDirective]) -> [(PeerID, [Int])] {
            out.compactMap { if case .send(.resultAck(let tasks), let to) = $0 { (to, tasks.map(\.task)) } else { nil } }
        }
        let first = result(3, from: 3)
        #expect(first.contains { if case .schedule(.ackFlush, s.ackDelay) = $0 { true } else { false } } && acks(first).isEmpty)
        #expect(acks(result(1, from: 2)).isEmpty && acks(result(4, from: 3)).isEmpty)
        let third = acks(result(5, from: 3))  // p3's third: sent at once
        #expect(third.map(\.0) == [Self.p(3)] && third.map(\.1) == [[3, 4, 5]])
        let flushed = acks(owner.on(.timer(.ackFlush), now: Self.t0 + s.ackDelay))
        #expect(flushed.map(\.0) == [Self.p(2)] && flushed.map(\.1) == [[1]])
        #expect(owner.counters.resultsApplied == 4)
    }

    @Test func aLostVersionReopensItsProducer() throws {
        // a = f() on p2; b = g(a) not yet run when p2 dies: f runs again.
        let plan = try WorkflowPlan(WorkflowSpec(name: "chain", dataCount: 2, tasks: [Self.task([(0, .out)]), Self.task([(0, .in), (1, .out)])]))
        var owner = Self.machine(1)
        _ = owner.on(.peerUp(Self.p(2)), now: Self.t0)
        var out = owner.on(.submit(workflow: WorkflowID(raw: 1), plan: plan, initial: Self.initial(plan)), now: Self.t0)
        let first = Self.executions(out)[0]
        #expect(first.0 == TaskRef(WorkflowID(raw: 1), 0))
        // Pretend task 0 ran at p2 instead: its result says p2 holds version 2.
        out = owner.on(
            .message(.result(task: first.0, outputs: [OutputRecord(version: VersionRef(WorkflowID(raw: 1), 2), bytes: 8, checksum: 7)], basis: 0), from: Self.p(2)),
            now: Self.t0)
        #expect(owner.counters.resultsApplied == 1)
        out = owner.on(.peerDown(Self.p(2)), now: Self.t0)
        #expect(out.contains { if case .taskReopened(let t) = $0 { t == first.0 } else { false } })
        #expect(owner.counters.tasksRecomputed == 1)
        #expect(owner.progress(of: WorkflowID(raw: 1))?.hasPrefix("2 tasks left") == true, "\(owner.progress(of: WorkflowID(raw: 1)) ?? "-")")
    }

    @Test func anInputFetchedWithTheWrongChecksumIsNotUsed() throws {
        var thief = Self.machine(2)
        let task = StealableTask(
            id: TaskRef(WorkflowID(raw: 1), 0), owner: Self.p(1), catalogueKey: 1,
            inputs: [DataLocation(datum: VersionRef(WorkflowID(raw: 1), 0), bytes: 8, holder: Self.p(1), checksum: 99)],
            outputs: [VersionRef(WorkflowID(raw: 1), 1)])
        var out = thief.on(.granted([task]), now: Self.t0)
        guard case .send(.fetch(let version, let rid), _)? = out.first(where: { if case .send(.fetch, _) = $0 { true } else { false } })
        else {
            Issue.record("no fetch in \(out)")
            return
        }
        var corrupt = DataValue(bytes: 8, content: 5)
        corrupt.content = 6  // damaged in flight
        out = thief.on(.message(.data(version: version, requestID: rid, value: corrupt), from: Self.p(1)), now: Self.t0)
        #expect(thief.counters.corruptTransfers == 1)
        #expect(Self.executions(out).isEmpty)
        // Intact, but not the version the owner recorded: the task is given back to the owner.
        out = thief.on(.message(.data(version: version, requestID: rid, value: DataValue(bytes: 8, content: 5)), from: Self.p(1)), now: Self.t0)
        #expect(Self.executions(out).isEmpty)
        #expect(out.contains { if case .send(.inputLost(let t, _, _, let definite), _) = $0 { t == task.id && definite } else { false } })
    }

    /// Found by the cluster equivalence test's seed 52 (after steal requests began to be held):
    /// in a split brain, the owner on one side ended the workflow and released it while a body of
    /// it ran at a peer of the other side. The body finished after the release and the peer kept
    /// its output as a version it held, though its shell had dropped the workflow's bytes with the
    /// release; a later grant from the other side's owner read that version and ran without its
    /// bytes. What a body makes after its workflow was released is dropped, and a task that reads
    /// it fetches it from the holder its grant names.
    @Test func aBodyThatEndsAfterItsWorkflowWasReleasedLeavesNothingHeld() throws {
        let wf = WorkflowID(raw: 1)
        var peer = Self.machine(2)
        let first = StealableTask(id: TaskRef(wf, 0), owner: Self.p(1), catalogueKey: 1, outputs: [VersionRef(wf, 1)])
        #expect(Self.executions(peer.on(.granted([first]), now: Self.t0)).count == 1)
        _ = peer.on(.message(.release(workflow: wf), from: Self.p(1)), now: Self.t0)
        let ended = peer.on(.executed(task: first.id, outputs: [DataValue(bytes: 8, content: 5)]), now: Self.t0)
        #expect(!ended.contains { if case .send(.result, _) = $0 { true } else { false } })
        #expect(peer.counters.tasksDroppedAfterEnd == 1 && peer.freeSlots == 1)
        // Another owner (the other side of the split) grants a reader of that version: it is fetched.
        let reader = StealableTask(
            id: TaskRef(wf, 1), owner: Self.p(3), catalogueKey: 1,
            inputs: [DataLocation(datum: VersionRef(wf, 1), bytes: 8, holder: Self.p(4), checksum: DataValue(bytes: 8, content: 5).checksum)],
            outputs: [VersionRef(wf, 2)])
        let out = peer.on(.granted([reader]), now: Self.t0)
        #expect(Self.executions(out).isEmpty)
        #expect(out.contains { if case .send(.fetch(VersionRef(wf, 1), _), Self.p(4)) = $0 { true } else { false } })
    }

    /// An input whose holder is nobody (lost) is not asked of anyone: the task is given back to
    /// its owner at once as definitely lost, so the owner makes the input again.
    @Test func anInputWithNoHolderIsReportedLostNotFetched() throws {
        let wf = WorkflowID(raw: 1)
        var peer = Self.machine(2)
        let task = StealableTask(
            id: TaskRef(wf, 3), owner: Self.p(1), catalogueKey: 1,
            inputs: [DataLocation(datum: VersionRef(wf, 5), bytes: 8, holder: OwnedWorkflow.nobody, checksum: 7)],
            outputs: [VersionRef(wf, 6)])
        let out = peer.on(.granted([task]), now: Self.t0)
        #expect(!out.contains { if case .send(.fetch, _) = $0 { true } else { false } })
        #expect(out.contains { if case .send(.inputLost(TaskRef(wf, 3), VersionRef(wf, 5), _, true), Self.p(1)) = $0 { true } else { false } })
        #expect(Self.executions(out).isEmpty && peer.freeSlots == 1)
    }

    /// Found by swarm seed 2199: a thief that took the workflow over while running a task for the
    /// old owner sent the result only to the dead owner, and its own record of the task waited
    /// forever.
    @Test func aTaskRunForTheOldOwnerCountsForTheNewOne() throws {
        let plan = try WorkflowPlan(WorkflowSpec(name: "one", dataCount: 1, tasks: [Self.task([(0, .out)])]))
        var peer = Self.machine(2, replicas: 2)
        _ = peer.on(.peerUp(Self.p(1)), now: Self.t0)
        _ = peer.on(
            .message(.recordCreate(workflow: WorkflowID(raw: 1), owner: Self.p(1), backups: [Self.p(2)], plan: plan, initial: Self.initial(plan)), from: Self.p(1)),
            now: Self.t0)
        let task = StealableTask(id: TaskRef(WorkflowID(raw: 1), 0), owner: Self.p(1), catalogueKey: 1, outputs: [VersionRef(WorkflowID(raw: 1), 1)])
        let started = peer.on(.granted([task]), now: Self.t0)
        #expect(Self.executions(started).count == 1)
        _ = peer.on(.peerDown(Self.p(1)), now: Self.t0)  // takes over; the task is already running here
        #expect(peer.ownedWorkflows == [WorkflowID(raw: 1)])
        let out = peer.on(.executed(task: task.id, outputs: Self.outputs(plan, task.id, [])), now: Self.t0)
        #expect(out.contains { if case .resultApplied(let t) = $0 { t == task.id } else { false } })
        #expect(out.contains { if case .workflowCompleted(WorkflowID(raw: 1), _, _) = $0 { true } else { false } })
    }

    @Test func aRecordRoundTripsThroughTheShardLayout() throws {
        // Modelled calls and the two real kinds of body, each with its policy and label.
        var calls = [Self.task([(0, .out)]), Self.task([(0, .in), (1, .inout)]), Self.task([(1, .in), (2, .commutative)])]
        calls[1].body = .exec(command: "sort {in:a} > {out:b}")
        calls[1].catalogueKey = CatalogueKey.exec
        calls[2].body = .registered(name: "merge", arguments: Array(#"{"k":1}"#.utf8))
        calls[2].catalogueKey = CatalogueKey.of(task: "merge")
        calls[2].policy = FailurePolicy(retries: 2, action: .ignore)
        calls[2].label = "merge 2"
        let plan = try WorkflowPlan(WorkflowSpec(name: "bodies", dataCount: 3, initialBytes: 77, tasks: calls))
        let initial = Self.initial(plan, workflow: 9)
        let log = (0..<7).map {
            RecordEntry(task: UInt32($0), version: UInt32(10 + $0), holder: Self.p(UInt64($0)), checksum: UInt64($0) * 3, bytes: 77)
        }
        let shard = MemoryShard()
        for write in [
            RecordWrite.create(workflow: WorkflowID(raw: 9), owner: Self.p(4), backups: [Self.p(5), Self.p(6)], plan: plan, initial: initial),
            .append(workflow: WorkflowID(raw: 9), first: 0, entries: Array(log[0..<3])), .append(workflow: WorkflowID(raw: 9), first: 3, entries: Array(log[3...])),
        ] {
            let (key, value) = try #require(RecordCodec.entry(write))
            try shard.put(key, value, in: .workflows)
        }
        let records = RecordCodec.records(try shard.scan(.workflows, prefix: [], after: nil, limit: 100))
        #expect(records.count == 1)
        let r = try #require(records.first)
        #expect(r.workflow == WorkflowID(raw: 9) && r.owner == Self.p(4) && r.backups == [Self.p(5), Self.p(6)])
        #expect(r.initial == initial && r.log == log)
        #expect(r.plan.name == plan.name && r.plan.inputs == plan.inputs && r.plan.consumers == plan.consumers)
        #expect(r.plan.finalVersion == plan.finalVersion && r.plan.producer == plan.producer && r.plan.cost == plan.cost)
        #expect(r.plan.spec == plan.spec && r.plan.bodies == calls.map(\.body))
        // A log batch with a gap before it is not taken (nothing after a hole is trusted).
        let (key, value) = try #require(RecordCodec.entry(.append(workflow: WorkflowID(raw: 9), first: 20, entries: log)))
        try shard.put(key, value, in: .workflows)
        #expect(RecordCodec.records(try shard.scan(.workflows, prefix: [], after: nil, limit: 100))[0].log == log)
    }

    @Test func theFirstLiveBackupTakesOverAndResumesFromTheRecord() throws {
        let plan = try WorkflowPlan(WorkflowSpec(name: "two", dataCount: 2, tasks: [Self.task([(0, .out)]), Self.task([(1, .out)])]))
        var backup = Self.machine(2, replicas: 2)
        _ = backup.on(.peerUp(Self.p(1)), now: Self.t0)
        _ = backup.on(
            .message(.recordCreate(workflow: WorkflowID(raw: 1), owner: Self.p(1), backups: [Self.p(2)], plan: plan, initial: Self.initial(plan)), from: Self.p(1)),
            now: Self.t0)
        let entry = RecordEntry(task: 0, version: UInt32(2), holder: Self.p(2), checksum: 3, bytes: 8)
        _ = backup.on(.message(.recordAppend(workflow: WorkflowID(raw: 1), owner: Self.p(1), first: 0, entries: [entry]), from: Self.p(1)), now: Self.t0)
        #expect(backup.backedUpWorkflows == [WorkflowID(raw: 1)])
        let out = backup.on(.peerDown(Self.p(1)), now: Self.t0)
        #expect(out.contains { if case .tookOver(WorkflowID(raw: 1), let from) = $0 { from == Self.p(1) } else { false } })
        #expect(backup.ownedWorkflows == [WorkflowID(raw: 1)])
        // Task 0 is done per the record (its output lives here); only task 1 runs.
        #expect(Self.executions(out).map(\.0) == [TaskRef(WorkflowID(raw: 1), 1)])
    }
}
