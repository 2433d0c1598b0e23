import Testing

@testable import ShoalCore

/// Commutative groups on the cluster: one plan group per run of calls, members one at a time at
/// the owner (its lock), each reading the last member's partial, in any order.
@Suite("Cluster groups")
struct ClusterGroupTests {
    typealias W = WorkMachineTests

    /// d0 = f(); three members g(in d0, commutative d1); h(in d1, out d2).
    static let spec = WorkflowSpec(
        name: "groups", dataCount: 3,
        tasks: [
            W.task([(0, .out)]), W.task([(0, .in), (1, .commutative)]), W.task([(0, .in), (1, .commutative)]),
            W.task([(0, .in), (1, .commutative)]), W.task([(1, .in), (2, .out)]),
        ])

    @Test func aRunOfCommutativeCallsIsOneGroupWithAPartialPerMember() throws {
        let plan = try WorkflowPlan(Self.spec)
        #expect(plan.groups.count == 1)
        let g = plan.groups[0]
        #expect(g.base == 1 && g.kind == .commutative && g.members == [1, 2, 3])
        #expect(Set(g.partials).count == 3 && !g.partials.contains(g.version))
        for (m, p) in zip(g.members, g.partials) {
            #expect(plan.outputs(of: Int(m)) == [p])
            #expect(plan.producer[Int(p)] == m)
            // A member waits for its plain inputs only; the owner hands it the group's value.
            #expect(Array(plan.inputs(of: Int(m))) == [plan.outputs(of: 0)[0]])
        }
        #expect(plan.producer[Int(g.version)] == PlanGroup.producer)
        #expect(Array(plan.inputs(of: 4)) == [g.version])
        #expect(plan.finalVersion[1] == g.version)
        #expect(Array(plan.consumers(of: Int(g.version))) == [4])
    }

    @Test func badCallsAreRefusedNotTrapped() {
        #expect(throws: WorkflowPlan.Invalid.self) {
            try WorkflowPlan(WorkflowSpec(name: "x", dataCount: 1, tasks: [W.task([(1, .in)])]))
        }
        #expect(throws: WorkflowPlan.Invalid.self) {
            try WorkflowPlan(WorkflowSpec(name: "x", dataCount: 1, tasks: [W.task([(-1, .out)])]))
        }
        #expect(throws: WorkflowPlan.Invalid.self) {
            try WorkflowPlan(WorkflowSpec(name: "x", dataCount: 2, tasks: [W.task([(0, .in), (0, .out)])]))
        }
    }

    @Test func theOwnerRunsMembersOneAtATimeEachOnTheLastPartial() throws {
        // Three members on an initial value, four slots: the lock lets one run at a time.
        let spec = WorkflowSpec(
            name: "members", dataCount: 1,
            tasks: [W.task([(0, .commutative)]), W.task([(0, .commutative)]), W.task([(0, .commutative)])])
        let plan = try WorkflowPlan(spec)
        var owner = W.machine(1, slots: 4)
        let initial = W.initial(plan)
        var out = owner.on(.submit(workflow: WorkflowID(raw: 1), plan: plan, initial: initial), now: W.t0)
        var value = initial[0]
        var ran: [Int] = []
        for _ in 0..<3 {
            let running = W.executions(out)
            try #require(running.count == 1, "one member at a time, got \(running.map(\.0))")
            let (task, inputs) = running[0]
            #expect(inputs == [value], "a member reads the group's current value")
            let outputs = W.outputs(plan, task, inputs)
            value = outputs[0]
            ran.append(task.task)
            out = owner.on(.executed(task: task, outputs: outputs), now: W.t0)
        }
        #expect(Set(ran) == [0, 1, 2])
        let results = out.compactMap { if case .workflowCompleted(WorkflowID(raw: 1), let r, _) = $0 { r } else { nil } }
        #expect(results == [[value]])
    }

    @Test func aMemberResultComputedFromAnotherValueIsRefused() throws {
        let spec = WorkflowSpec(name: "two", dataCount: 1, tasks: [W.task([(0, .commutative)]), W.task([(0, .commutative)])])
        let plan = try WorkflowPlan(spec)
        var owner = W.machine(1)
        _ = owner.on(.peerUp(W.p(2)), now: W.t0)
        let initial = W.initial(plan)
        var out = owner.on(.submit(workflow: WorkflowID(raw: 1), plan: plan, initial: initial), now: W.t0)
        let (first, inputs) = try #require(W.executions(out).first)
        let outputs = W.outputs(plan, first, inputs)
        let records = zip(plan.outputs(of: first.task), outputs).map {
            OutputRecord(version: VersionRef(WorkflowID(raw: 1), Int($0)), bytes: $1.bytes, checksum: $1.checksum)
        }
        // A result from a run on some other value of the group: refused, the member still runs here.
        out = owner.on(.message(.result(task: first, outputs: records, basis: 12345), from: W.p(2)), now: W.t0)
        #expect(owner.counters.resultsRefused == 1 && owner.counters.resultsApplied == 0)
        // A result naming a version the task does not write: refused too.
        let foreign = [OutputRecord(version: VersionRef(WorkflowID(raw: 1), 0), bytes: 8, checksum: 1)]
        let basis = OutputRecord.basis(inputs.map(\.checksum))
        out = owner.on(.message(.result(task: first, outputs: foreign, basis: basis), from: W.p(2)), now: W.t0)
        #expect(owner.counters.resultsRefused == 2)
        // The real run counts, and the other member then reads its partial.
        out = owner.on(.executed(task: first, outputs: outputs), now: W.t0)
        #expect(owner.counters.resultsApplied == 1)
        let next = try #require(W.executions(out).first)
        #expect(next.1 == outputs)
    }

    @Test func aRecordWithGroupsRebuildsTheSamePlan() throws {
        let plan = try WorkflowPlan(Self.spec)
        let (key, value) = try #require(
            RecordCodec.entry(.create(workflow: WorkflowID(raw: 3), owner: W.p(1), backups: [], plan: plan, initial: W.initial(plan))))
        let shard = MemoryShard()
        try shard.put(key, value, in: .workflows)
        let rebuilt = try #require(RecordCodec.records(try shard.scan(.workflows, prefix: [], after: nil, limit: 10)).first).plan
        #expect(rebuilt.groups == plan.groups && rebuilt.accessWritten == plan.accessWritten)
        #expect(rebuilt.accessRead == plan.accessRead && rebuilt.inputs == plan.inputs)
        #expect(rebuilt.finalVersion == plan.finalVersion && rebuilt.spec == plan.spec)
    }

    @Test func aTakeoverResumesAGroupInTheOrderItsMembersRan() throws {
        let spec = WorkflowSpec(
            name: "three", dataCount: 1,
            tasks: [W.task([(0, .commutative)]), W.task([(0, .commutative)]), W.task([(0, .commutative)])])
        let plan = try WorkflowPlan(spec)
        let partials = plan.groups[0].partials
        var backup = W.machine(2, replicas: 2)
        _ = backup.on(.peerUp(W.p(1)), now: W.t0)
        _ = backup.on(.peerUp(W.p(3)), now: W.t0)
        _ = backup.on(
            .message(
                .recordCreate(workflow: WorkflowID(raw: 1), owner: W.p(1), backups: [W.p(2)], plan: plan, initial: W.initial(plan)),
                from: W.p(1)), now: W.t0)
        // Members 2 then 0 ran (p3 holds their partials); member 1 has not.
        let log = [
            RecordEntry(task: 2, version: UInt32(Int(partials[2])), holder: W.p(3), checksum: 5, bytes: 8),
            RecordEntry(task: 0, version: UInt32(Int(partials[0])), holder: W.p(3), checksum: 6, bytes: 8),
        ]
        _ = backup.on(.message(.recordAppend(workflow: WorkflowID(raw: 1), owner: W.p(1), first: 0, entries: log), from: W.p(1)), now: W.t0)
        let out = backup.on(.peerDown(W.p(1)), now: W.t0)
        #expect(backup.ownedWorkflows == [WorkflowID(raw: 1)])
        // Only member 1 runs, on member 0's partial (the last one made), fetched from p3.
        let fetches = out.compactMap { if case .send(.fetch(let v, _), let to) = $0 { (v, to) } else { nil } }
        #expect(fetches.map(\.0) == [VersionRef(WorkflowID(raw: 1), Int(partials[0]))] && fetches.map(\.1) == [W.p(3)], "\(out)")
        #expect(backup.runningJobs.hasPrefix("task 1 of w1 "), "\(backup.runningJobs)")
        #expect(backup.progress(of: WorkflowID(raw: 1))?.hasPrefix("1 tasks left") == true, "\(backup.progress(of: WorkflowID(raw: 1)) ?? "-")")
    }

    /// Found by swarm seed 113: a takeover that counted an earlier owner's partials dead cut the
    /// chain without logging it, re-ran the members, and a later owner that saw those holders
    /// alive again counted both runs of a member.
    @Test func aCutMadeAtTakeoverIsLoggedSoALaterReplayDoesNotCountAPartTwice() throws {
        let spec = WorkflowSpec(name: "two", dataCount: 1, tasks: [W.task([(0, .commutative)]), W.task([(0, .commutative)])])
        let plan = try WorkflowPlan(spec)
        let (p0, p1) = (plan.groups[0].partials[0], plan.groups[0].partials[1])
        let wf = WorkflowID(raw: 1)
        // The first owner ran member 0 then member 1; p3 holds both partials.
        let first = [
            RecordEntry(task: 0, version: UInt32(p0), holder: W.p(3), checksum: 1, bytes: 8),
            RecordEntry(task: 1, version: UInt32(p1), holder: W.p(3), checksum: 2, bytes: 8),
        ]
        // A takeover while p3 seems dead: both members run again; member 1 first, at p2.
        let second = OwnedWorkflow(workflow: wf, plan: plan, initial: W.initial(plan), owner: W.p(2))
        second.replay(first, isLive: { $0 != W.p(3) })
        #expect(second.remaining == 2)
        #expect(second.log.last?.kind == .cut && second.log.last?.version == UInt32(p0))
        let log = second.log + [RecordEntry(task: 1, version: UInt32(p1), holder: W.p(2), checksum: 3, bytes: 8)]
        // A later takeover with p3 back: member 1's second run is the only part in the value.
        let third = OwnedWorkflow(workflow: wf, plan: plan, initial: W.initial(plan), owner: W.p(4))
        third.replay(log, isLive: { _ in true })
        #expect(third.state[0] != .done && third.state[1] == .done)
        #expect(third.currentValue(of: 0) == Int(p1) && third.holder[Int(p1)] == W.p(2))
    }
}
