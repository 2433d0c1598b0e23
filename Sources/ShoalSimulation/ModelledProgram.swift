import ShoalCore

/// The results checker for modelled workflows: runs the program itself, one call after the other
/// in program order, over the data's contents, with no plan, no versions and no renaming. What it
/// computes is what every correct run of the plan must end with, so a renaming or scheduling bug
/// (a stale read, a member lost or doubled) shows as a wrong result. It shares only the modelled
/// body (`WorkflowPlan.modelledOutputs`, and that a body fails its first `failingAttempts`
/// attempts), which is the program's code, not the machinery checked.
///
/// Failures follow the local engine's rules, written here from their description, not from the
/// graph's code: a task runs again while its retries last; then `fail` fails the workflow,
/// `ignore` leaves an `inout` or group datum as it was and an `out` without a value (a task that
/// reads it fails), and `cancel-successors` fails what the task writes, so that every task that
/// reads it later is cancelled and fails what it writes in turn. A member of a group that one
/// member failed still runs (it reads the value before the group); the group's datum is failed.
enum ModelledProgram {
    enum Value: Hashable {
        case content(UInt64)
        /// Its writer failed and the failure was ignored.
        case absent
        /// Its writer failed for good, or was cancelled.
        case failed
    }

    struct Outcome {
        /// The final value of every datum, in datum order.
        var results: [Value]
        /// The tasks whose failure is `fail`: the workflow fails (on the first to run).
        var failingTasks: [Int]
        var fails: Bool { !failingTasks.isEmpty }
    }

    static func run(_ spec: WorkflowSpec, workflow: UInt64) -> Outcome {
        var value: [Value] = (0..<spec.dataCount).map {
            .content(WorkflowPlan.initialContent(workflow: workflow, datum: $0))
        }
        // Per datum: the kind of the run of group calls it is in, the value before the run, and
        // whether a member of the run failed it.
        var groupKind = [Direction?](repeating: nil, count: spec.dataCount)
        var before = value
        var failedByMember = [Bool](repeating: false, count: spec.dataCount)
        var failing: [Int] = []
        for (t, call) in spec.tasks.enumerated() {
            for a in call.accesses {
                let d = Int(a.datum)
                if groupKind[d] != a.direction || !a.direction.isGroup {
                    groupKind[d] = a.direction.isGroup ? a.direction : nil
                    before[d] = value[d]
                    failedByMember[d] = false
                }
            }
            // What the call reads: a member reads the group's value, or the one before it when a
            // member failed the group.
            let reads: [Value] = call.accesses.filter(\.direction.reads).map { a in
                let d = Int(a.datum)
                return a.direction.isGroup && failedByMember[d] ? before[d] : value[d]
            }
            let writes = call.accesses.filter(\.direction.writes)
            // What a task that fails for good, or is cancelled, writes fails; a member of a group
            // fails its group, whose later members still run on the value before it.
            func failWrites() {
                for a in writes {
                    value[Int(a.datum)] = .failed
                    if a.direction.isGroup { failedByMember[Int(a.datum)] = true }
                }
            }
            if reads.contains(.failed) {
                failWrites()  // cancelled
                continue
            }
            let readsAbsent = reads.contains(.absent)
            let attemptsFailing = readsAbsent ? Int.max : Int(call.failingAttempts)
            if attemptsFailing <= Int(call.policy.retries) {
                let inputs = reads.map { (v: Value) -> UInt64 in if case .content(let c) = v { c } else { 0 } }
                let outputs = WorkflowPlan.modelledOutputs(
                    task: t, catalogueKey: call.catalogueKey, directions: call.accesses.map(\.direction), inputs: inputs)
                for (a, c) in zip(writes, outputs) {
                    let d = Int(a.datum)
                    // A member of a group another member failed adds to a datum that stays failed.
                    if !(a.direction.isGroup && failedByMember[d]) { value[d] = .content(c) }
                }
                continue
            }
            switch call.policy.action {
            case .fail:
                failing.append(t)
            case .ignore:
                for a in writes where !a.direction.reads { value[Int(a.datum)] = .absent }
            case .cancelSuccessors:
                failWrites()
            }
        }
        return Outcome(results: value, failingTasks: failing)
    }

    /// The final content of every datum (a program without failures).
    static func results(of spec: WorkflowSpec, workflow: UInt64) -> [UInt64] {
        run(spec, workflow: workflow).results.map { (v: Value) -> UInt64 in if case .content(let c) = v { c } else { 0 } }
    }
}
