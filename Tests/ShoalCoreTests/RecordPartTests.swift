import Testing

@testable import ShoalCore

/// A record create larger than one message (`WorkSettings.maxRecordPart`) travels in parts that
/// a backup puts back together, in any order, before it keeps the record; parts that do not tile
/// the plan are refused, and an unfinished one does not hold a backup's room for ever.
@Suite("Record creates in parts")
struct RecordPartTests {
    typealias W = WorkMachineTests

    /// 7 calls over 5 data, with marks (new data, waits) between them and at the end.
    static let spec = WorkflowSpec(
        name: "seven", dataCount: 5, initialBytes: 8,
        tasks: [
            W.task([(0, .inout)]), W.task([(0, .in), (1, .out)]), W.task([(2, .commutative)]), W.task([(2, .commutative)]),
            W.task([(1, .in), (3, .out)]), W.task([(3, .in), (4, .inout)]), W.task([(4, .in), (0, .inout)]),
        ],
        marks: [
            .init(beforeTask: 0, .newData(count: 3)), .init(beforeTask: 4, .wait(datum: 2)),
            .init(beforeTask: 4, .newData(count: 2)), .init(beforeTask: 7, .wait(datum: 0)),
        ])

    static func settings(maxPart: Int, maxRecords: Int = 16) -> WorkSettings {
        var s = WorkSettings()
        s.slots = 1
        s.recordReplicas = 2
        s.maxRecordPart = maxPart
        s.maxBackupRecords = maxRecords
        return s
    }

    static func parts(_ out: [WorkDirective]) -> [(RecordPart, to: PeerID)] {
        out.compactMap { if case .send(.recordPart(_, _, let part), let to) = $0 { (part, to) } else { nil } }
    }

    static func acks(_ out: [WorkDirective]) -> [Int] {
        out.compactMap { if case .send(.recordAck(_, let count), _) = $0 { count } else { nil } }
    }

    @Test func partsTileThePlanAndPutItBackTogetherInAnyOrder() throws {
        let plan = try WorkflowPlan(Self.spec)
        let initial = W.initial(plan)
        let parts = RecordPart.split(plan: try WorkflowPlan(Self.spec), backups: [W.p(2)], initial: initial, maxPart: 2)
        #expect(parts.count == 4)
        #expect(parts.allSatisfy { $0.tasks.count <= 2 && $0.initial.count <= 2 })
        #expect(parts.map(\.marks.count) == [1, 0, 2, 1])
        let whole = try #require(RecordPart.assemble(parts.reversed()))
        #expect(whole.spec == Self.spec && whole.initial == initial)
        #expect(try WorkflowPlan(whole.spec).spec == plan.spec)
        // A missing part, a part twice, or a part that does not start where the one before ended.
        #expect(RecordPart.assemble(Array(parts.dropLast())) == nil)
        #expect(RecordPart.assemble(parts.dropLast() + [parts[0]]) == nil)
        var shifted = parts
        shifted[2].firstTask += 1
        #expect(RecordPart.assemble(shifted) == nil)
        var otherHeader = parts
        otherHeader[1].dataCount = 6
        #expect(RecordPart.assemble(otherHeader) == nil)
        // A plan that fits is one part.
        #expect(RecordPart.split(plan: try WorkflowPlan(Self.spec), backups: [], initial: initial, maxPart: 7).count == 1)
    }

    @Test func aBackupKeepsARecordThatCameInPartsAndTakesTheWorkflowOver() throws {
        let plan = try WorkflowPlan(Self.spec)
        let wf = WorkflowID(raw: 1)
        var owner = WorkMachine(id: W.p(1), settings: Self.settings(maxPart: 2))
        var backup = WorkMachine(id: W.p(2), settings: Self.settings(maxPart: 2))
        _ = owner.on(.peerUp(W.p(2)), now: W.t0)
        _ = backup.on(.peerUp(W.p(1)), now: W.t0)
        let out = owner.on(.submit(workflow: wf, plan: plan, initial: W.initial(plan)), now: W.t0)
        let sent = Self.parts(out)
        #expect(sent.count == 4 && sent.allSatisfy { $0.to == W.p(2) })
        #expect(!out.contains { if case .send(.recordCreate, _) = $0 { true } else { false } })
        // Last part first; nothing is acknowledged until every part is there.
        for (part, _) in sent.reversed().dropLast() {
            let o = backup.on(.message(.recordPart(workflow: wf, owner: W.p(1), part: part), from: W.p(1)), now: W.t0)
            #expect(Self.acks(o).isEmpty)
        }
        var o = backup.on(.message(.recordPart(workflow: wf, owner: W.p(1), part: sent[0].0), from: W.p(1)), now: W.t0)
        #expect(Self.acks(o) == [0])
        #expect(o.contains { if case .persistRecord(.create(wf, _, _, _, _)) = $0 { true } else { false } })
        // A part sent again (the owner did not hear the acknowledgement) is acknowledged again.
        o = backup.on(.message(.recordPart(workflow: wf, owner: W.p(1), part: sent[2].0), from: W.p(1)), now: W.t0)
        #expect(Self.acks(o) == [0])
        // The owner dies: the backup runs the whole plan from the record it put together.
        o = backup.on(.peerDown(W.p(1)), now: W.t0)
        #expect(backup.ownedWorkflows == [wf])
        var ran = 0
        var done = false
        for _ in 0..<20 where !done {
            guard let (task, inputs) = W.executions(o).first else { break }
            ran += 1
            o = backup.on(.executed(task: task, outputs: W.outputs(plan, task, inputs)), now: W.t0)
            done = o.contains { if case .workflowCompleted(wf, _, _) = $0 { true } else { false } }
        }
        #expect(done && ran == 7)
    }

    @Test func partsThatDoNotMakeAPlanAreDroppedAndAnUnfinishedOneGivesItsRoomBack() throws {
        let plan = try WorkflowPlan(Self.spec)
        let parts = RecordPart.split(plan: try WorkflowPlan(Self.spec), backups: [W.p(2)], initial: W.initial(plan), maxPart: 2)
        var backup = WorkMachine(id: W.p(2), settings: Self.settings(maxPart: 2, maxRecords: 1))
        for p in [3, 4] { _ = backup.on(.peerUp(W.p(UInt64(p))), now: W.t0) }
        let a = WorkflowID(raw: 7), b = WorkflowID(raw: 8)
        // Out of range: refused before anything is kept.
        var bad = parts[0]
        bad.parts = 0
        var tooBig = parts[1]
        tooBig.tasks += tooBig.tasks
        var beyond = parts[2]
        beyond.firstTask = beyond.taskCount
        let before = backup.counters.messagesDropped
        for part in [bad, tooBig, beyond] {
            _ = backup.on(.message(.recordPart(workflow: a, owner: W.p(3), part: part), from: W.p(3)), now: W.t0)
        }
        #expect(backup.counters.messagesDropped == before + 3)
        // Parts that pass one by one but do not tile the plan: dropped once all are there.
        var gap = parts
        gap[3].firstDatum = 3
        for part in gap { _ = backup.on(.message(.recordPart(workflow: a, owner: W.p(3), part: part), from: W.p(3)), now: W.t0) }
        #expect(backup.counters.messagesDropped == before + 4)
        // One part of `a` takes the backup's only room; `b`'s create is refused.
        _ = backup.on(.message(.recordPart(workflow: a, owner: W.p(3), part: parts[0]), from: W.p(3)), now: W.t0)
        let create = WorkMessage.recordCreate(workflow: b, owner: W.p(4), backups: [W.p(2)], plan: plan, initial: W.initial(plan))
        #expect(Self.acks(backup.on(.message(create, from: W.p(4)), now: W.t0)) == [RecordAck.refused])
        // Its owner dies before the rest arrives: the room is free again.
        _ = backup.on(.peerDown(W.p(3)), now: W.t0)
        #expect(Self.acks(backup.on(.message(create, from: W.p(4)), now: W.t0)) == [0])
    }
}
