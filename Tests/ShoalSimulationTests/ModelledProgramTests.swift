import Testing

@testable import ShoalCore
import ShoalExamples
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
        let spec = try CrossCorrelationWorkflow.scenarioShape.record(6).spec(cost: .milliseconds(1), bytes: 64)
        let plan = try WorkflowPlan(spec)
        #expect(plan.groups.count == 2)
        let expected = ModelledProgram.results(of: spec, workflow: 4)
        #expect(Self.run(plan, workflow: 4, fault: .none) == expected)
        for fault in [Fault.skip, .double, .stale] {
            #expect(Self.run(plan, workflow: 4, fault: fault) != expected, "\(fault) went unnoticed")
        }
        #expect(ModelledProgram.results(of: spec, workflow: 5) != expected)
    }

    @Test func failuresFollowTheLocalRules() {
        func call(_ accesses: [(Int, Direction)], failing: UInt16, _ policy: FailurePolicy) -> WorkflowTaskSpec {
            WorkflowTaskSpec(
                catalogueKey: 1, cost: .milliseconds(1), accesses: accesses.map { .init($0.0, $0.1) }, outputBytes: 8,
                policy: policy, failingAttempts: failing)
        }
        let ok = FailurePolicy()
        // Retried enough: as if it never failed.
        let retried = WorkflowSpec(name: "r", dataCount: 1, tasks: [call([(0, .inout)], failing: 2, .init(retries: 2))])
        let clean = WorkflowSpec(name: "r", dataCount: 1, tasks: [call([(0, .inout)], failing: 0, ok)])
        #expect(ModelledProgram.run(retried, workflow: 1).results == ModelledProgram.run(clean, workflow: 1).results)
        // Ignored: the inout keeps its value, the out has none, and its reader fails (ignored too).
        let ignore = FailurePolicy(action: .ignore)
        let ignored = ModelledProgram.run(
            WorkflowSpec(
                name: "i", dataCount: 3,
                tasks: [call([(0, .inout), (1, .out)], failing: 1, ignore), call([(1, .in), (2, .inout)], failing: 0, ignore)]),
            workflow: 1)
        #expect(ignored.results[0] == .content(WorkflowPlan.initialContent(workflow: 1, datum: 0)))
        #expect(ignored.results[1] == .absent)
        #expect(ignored.results[2] == .content(WorkflowPlan.initialContent(workflow: 1, datum: 2)))
        #expect(!ignored.fails)
        // Cancel-successors spreads to readers; fail fails the workflow.
        let cancel = ModelledProgram.run(
            WorkflowSpec(
                name: "c", dataCount: 2,
                tasks: [call([(0, .inout)], failing: 1, .init(action: .cancelSuccessors)), call([(0, .in), (1, .inout)], failing: 0, ok)]),
            workflow: 1)
        #expect(cancel.results == [.failed, .failed] && !cancel.fails)
        let fail = ModelledProgram.run(
            WorkflowSpec(name: "f", dataCount: 1, tasks: [call([(0, .inout)], failing: 1, ok)]), workflow: 1)
        #expect(fail.fails && fail.failingTasks == [0])
    }
}
