import Testing

@testable import ShoalCore
@testable import ShoalSimulation

/// The results checker interprets the program without the plan; these show it tells a correct
/// run of the plan (members in any order) from a wrong one (a member lost, doubled, or run on a
/// stale value of its group).
@Suite("Modelled program checker")
struct ModelledProgramTests {
    enum Fault { case none, skip, double, stale }

    /// Runs `plan` by hand: the plain tasks in program order, then each group's members in
    /// reverse program order (the gathers of the cross-correlation DAG are read by no later call).
    static func run(_ plan: WorkflowPlan, workflow: UInt64, fault: Fault) -> [UInt64] {
        var content = [UInt64](repeating: 0, count: plan.versionCount)
        for d in 0..<plan.dataCount { content[d] = WorkflowPlan.initialContent(workflow: workflow, datum: d) }
        var current = plan.groups.map { Int($0.base) }
        func execute(_ t: Int) {
            var inputs: [UInt64] = []
            for a in plan.accessRange(of: t) where plan.accessRead[a] >= 0 {
                let g = plan.group(ofAccess: a)
                inputs.append(content[g.map { fault == .stale ? Int(plan.groups[$0].base) : current[$0] } ?? Int(plan.accessRead[a])])
            }
            let directions = plan.accessRange(of: t).map { plan.accessDirection[$0] }
            let values = WorkflowPlan.modelledOutputs(
                task: t, catalogueKey: plan.catalogueKey[t], directions: directions, inputs: inputs)
            for (v, value) in zip(plan.outputs(of: t), values) {
                content[Int(v)] = value
                if let g = plan.groupOf[v] { current[Int(g)] = Int(v) }
            }
        }
        for t in 0..<plan.taskCount where plan.groups(of: t).isEmpty { execute(t) }
        var members = Array(Set(plan.groups.flatMap(\.members))).sorted(by: >).map(Int.init)
        switch fault {
        case .skip: members.removeLast()
        case .double: members.append(members[0])
        case .none, .stale: break
        }
        for t in members { execute(t) }
        for (g, group) in plan.groups.enumerated() { content[Int(group.version)] = content[current[g]] }
        return plan.finalVersion.map { content[Int($0)] }
    }

    @Test func membersInAnyOrderGiveTheProgramsResultsAndAWrongRunDoesNot() throws {
        let spec = WorkflowSpec.crossCorrelation(
            fragments: 6, generateCost: .milliseconds(1), fragmentCost: .milliseconds(1), gatherCost: .milliseconds(1))
        let plan = try WorkflowPlan(spec)
        #expect(plan.groups.count == 2)
        let expected = ModelledProgram.results(of: spec, workflow: 4)
        #expect(Self.run(plan, workflow: 4, fault: .none) == expected)
        for fault in [Fault.skip, .double, .stale] {
            #expect(Self.run(plan, workflow: 4, fault: fault) != expected, "\(fault) went unnoticed")
        }
        #expect(ModelledProgram.results(of: spec, workflow: 5) != expected)
    }
}
