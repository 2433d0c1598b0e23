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
        for t in tasks {
            out += [
                .result(task: t, outputs: [OutputRecord(version: versions[0], bytes: .max, checksum: 0)], basis: 0),
                .result(task: t, outputs: [], basis: .max),
                .failure(task: t, attempt: 0, failure: TaskFailure(message: String(repeating: "x", count: 100_000))),
                .failure(task: t, attempt: .max, failure: TaskFailure(message: "")),
                .resultAck(task: t), .query(tasks: [t]), .unknown(tasks: [t]),
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
        #expect(m.counters.messagesDropped >= 12, "\(m.counters)")
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
}
