import ShoalCore

/// The results checker for modelled workflows: runs the program itself, one call after the other
/// in program order, over the data's contents, with no plan, no versions and no renaming. What it
/// computes is what every correct run of the plan must end with, so a renaming or scheduling bug
/// (a stale read, a member lost or doubled) shows as a wrong result. It shares only the modelled
/// body (`WorkflowPlan.modelledOutputs`), which is the program's code, not the machinery checked.
enum ModelledProgram {
    /// The final content of every datum, in datum order.
    static func results(of spec: WorkflowSpec, workflow: UInt64) -> [UInt64] {
        var content = (0..<spec.dataCount).map { WorkflowPlan.initialContent(workflow: workflow, datum: $0) }
        for (t, call) in spec.tasks.enumerated() {
            let reads = call.accesses.filter(\.direction.reads).map { content[Int($0.datum)] }
            let outputs = WorkflowPlan.modelledOutputs(
                task: t, catalogueKey: call.catalogueKey, directions: call.accesses.map(\.direction), inputs: reads)
            for (a, value) in zip(call.accesses.filter(\.direction.writes), outputs) { content[Int(a.datum)] = value }
        }
        return content
    }
}
