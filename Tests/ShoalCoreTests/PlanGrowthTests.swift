import Testing

@testable import ShoalCore

/// Plans that grow while their program runs: batches of calls, new data and waits between them,
/// a close. A grown plan is the plan of its spec built whole (what a backup rebuilds), and a group
/// spans batches until a call, a wait or the close ends it.
@Suite("Plan growth")
struct PlanGrowthTests {
    static func call(_ accesses: [(Int, Direction)], key: UInt64 = 1) -> WorkflowTaskSpec {
        WorkflowTaskSpec(catalogueKey: key, cost: .milliseconds(1), accesses: accesses.map { .init($0.0, $0.1) }, outputBytes: 8)
    }

    /// Everything the renaming decided, to compare two plans.
    static func shape(_ p: WorkflowPlan) -> [String] {
        [
            "\(p.dataCount) \(p.taskCount) \(p.versionCount) \(p.isOpen)", "\(p.accessRead)", "\(p.accessWritten)",
            "\(p.inputStart) \(p.inputs)", "\(p.producer)", "\(p.datumOf)", "\(p.finalVersion)", "\(p.initialVersion)",
            "\(p.groups)", "\((0..<p.versionCount).map { Array(p.consumers(of: $0)) })",
        ]
    }

    @Test func aGroupSpansBatchesAndAWaitEndsIt() throws {
        var plan = try WorkflowPlan(WorkflowSpec(name: "g", dataCount: 2, tasks: []), open: true)
        try plan.extend([Self.call([(0, .in), (1, .commutative)]), Self.call([(0, .in), (1, .commutative)])], newData: 0)
        #expect(plan.groups.count == 1 && !plan.groups[0].closed)
        try plan.extend([Self.call([(1, .commutative)])], newData: 0)
        #expect(plan.groups.count == 1 && plan.groups[0].members == [0, 1, 2], "the third call joins the open group")
        let (version, closed) = try plan.wait(on: 1)
        #expect(closed == 0 && plan.groups[0].closed && version == Int(plan.groups[0].version))
        let more = try plan.extend([Self.call([(1, .commutative)]), Self.call([(1, .in), (2, .out)])], newData: 1)
        #expect(plan.groups.count == 2 && plan.groups[1].members == [3], "after the wait a member opens a new group")
        #expect(more == [1], "the reader closed it")
        #expect(plan.dataCount == 3 && plan.initialVersion[2] > plan.initialVersion[1])
        #expect(plan.close().isEmpty && !plan.isOpen)
        #expect(throws: WorkflowPlan.Invalid.self) { try plan.extend([Self.call([(0, .in)])], newData: 0) }
    }

    /// The bodies of the first call and of calls after modelled ones are kept (the first real
    /// body once went missing: the shell was handed task 0 with no body).
    @Test func everyRealBodyIsKept() throws {
        var calls = [Self.call([(0, .out)]), Self.call([(0, .in), (1, .out)]), Self.call([(1, .inout)])]
        calls[0].body = .exec(command: "echo > {out:a}")
        calls[0].catalogueKey = CatalogueKey.exec
        calls[2].body = .registered(name: "t", arguments: [])
        calls[2].catalogueKey = CatalogueKey.of(task: "t")
        let whole = try WorkflowPlan(WorkflowSpec(name: "b", dataCount: 2, tasks: calls))
        #expect((0..<3).map(whole.body(of:)) == calls.map(\.body))
        var grown = try WorkflowPlan(WorkflowSpec(name: "b", dataCount: 2, tasks: [calls[1]]), open: true)
        try grown.extend([calls[2], calls[0]], newData: 0)
        #expect((0..<3).map(grown.body(of:)) == [calls[1].body, calls[2].body, calls[0].body])
    }

    @Test func aBatchThatDoesNotFitChangesNothing() throws {
        var plan = try WorkflowPlan(WorkflowSpec(name: "b", dataCount: 2, tasks: [Self.call([(0, .inout)])]), open: true)
        let before = Self.shape(plan)
        #expect(throws: WorkflowPlan.Invalid.self) {
            try plan.extend([Self.call([(1, .inout)]), Self.call([(5, .in)])], newData: 1)
        }
        #expect(Self.shape(plan) == before && plan.spec.marks.isEmpty)
        #expect(throws: WorkflowPlan.Invalid.self) { try plan.wait(on: 2) }
    }

    /// Random programs split at random into batches, with new data and waits between them: the
    /// plan grown batch by batch is the plan of its spec built whole, before and after the close.
    @Test(arguments: 1...40)
    func aGrownPlanIsThePlanOfItsSpec(seed: UInt64) throws {
        var g = SeededGenerator(seed: seed)
        func draw(_ n: Int) -> Int { Int(g.next() % UInt64(n)) }
        let directions: [Direction] = [.in, .in, .out, .inout, .commutative, .commutative, .concurrent]
        var plan = try WorkflowPlan(WorkflowSpec(name: "r\(seed)", dataCount: 1 + draw(4), tasks: []), open: true)
        for _ in 0..<(1 + draw(12)) {
            let newData = draw(3) == 0 ? 1 + draw(2) : 0
            let data = plan.dataCount + newData
            let calls = (0..<draw(15)).map { _ in
                let touched = Array(Set((0..<(1 + draw(3))).map { _ in draw(data) })).sorted()
                return Self.call(touched.map { ($0, directions[draw(directions.count)]) }, key: UInt64(1 + draw(3)))
            }
            try plan.extend(calls, newData: newData)
            for _ in 0..<draw(3) where plan.dataCount > 0 { _ = try plan.wait(on: draw(plan.dataCount)) }
            var whole = try WorkflowPlan(plan.spec, open: true)
            #expect(Self.shape(whole) == Self.shape(plan), "seed \(seed): open")
            whole.close()
        }
        let spec = plan.spec
        plan.close()
        let rebuilt = try WorkflowPlan(spec)
        #expect(Self.shape(rebuilt) == Self.shape(plan), "seed \(seed): closed")
        let allClosed = plan.groups.allSatisfy { $0.closed }
        #expect(allClosed, "seed \(seed)")
    }
}
