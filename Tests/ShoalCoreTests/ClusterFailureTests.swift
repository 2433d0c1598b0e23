import Testing

@testable import ShoalCore

/// Task failures on the cluster: the owner applies the local engine's policy (the shared
/// `FailurePolicy.decision`), and the cause reaches the workflow's end.
@Suite("Cluster failures")
struct ClusterFailureTests {
    typealias W = WorkMachineTests
    static let wf = WorkflowID(raw: 1)

    static func task(_ accesses: [(Int, Direction)], _ policy: FailurePolicy, label: String = "") -> WorkflowTaskSpec {
        WorkflowTaskSpec(
            catalogueKey: 1, cost: .milliseconds(1), accesses: accesses.map { .init($0.0, $0.1) }, outputBytes: 8,
            policy: policy, label: label)
    }

    static func attempts(_ out: [WorkDirective]) -> [(TaskRef, Int, [DataValue?])] {
        out.compactMap { if case .execute(let t, _, let inputs, let a, _) = $0 { (t, a, inputs) } else { nil } }
    }

    static let boom = TaskFailure(message: "boom", exitStatus: 3, stderrTail: "it broke")

    @Test func theSharedDecisionRetriesThenApplies() {
        let p = FailurePolicy(retries: 2, action: .ignore)
        #expect(p.decision(afterFailedAttempts: 1) == .retry)
        #expect(p.decision(afterFailedAttempts: 2) == .retry)
        #expect(p.decision(afterFailedAttempts: 3) == .apply(.ignore))
        #expect(p.decision(afterFailedAttempts: 1, aborting: true) == .apply(.ignore))
    }

    @Test func aFailedAttemptRunsAgainWithTheNextAttemptNumber() throws {
        let plan = try WorkflowPlan(WorkflowSpec(name: "one", dataCount: 1, tasks: [Self.task([(0, .inout)], .init(retries: 1))]))
        var owner = W.machine(1)
        var out = owner.on(.submit(workflow: Self.wf, plan: plan, initial: W.initial(plan)), now: W.t0)
        #expect(Self.attempts(out).map(\.1) == [1])
        out = owner.on(.failed(task: TaskRef(Self.wf, 0), failure: Self.boom), now: W.t0)
        #expect(Self.attempts(out).map(\.1) == [2])
        #expect(owner.counters.tasksRetried == 1)
        let inputs = Self.attempts(out)[0].2.map { $0! }
        out = owner.on(.executed(task: TaskRef(Self.wf, 0), outputs: W.outputs(plan, TaskRef(Self.wf, 0), inputs)), now: W.t0)
        #expect(out.contains { if case .workflowCompleted(_, let r, let f) = $0 { r.allSatisfy { $0 != nil } && f.isEmpty } else { false } })
    }

    @Test func failEndsTheWorkflowWithTheCause() throws {
        let plan = try WorkflowPlan(
            WorkflowSpec(name: "one", dataCount: 1, tasks: [Self.task([(0, .inout)], .init(retries: 0), label: "convert")]))
        var owner = W.machine(1)
        _ = owner.on(.submit(workflow: Self.wf, plan: plan, initial: W.initial(plan)), now: W.t0)
        let out = owner.on(.failed(task: TaskRef(Self.wf, 0), failure: Self.boom), now: W.t0)
        let failed = out.compactMap { if case .workflowFailed(_, let reason, let cause) = $0 { (reason, cause) } else { nil } }
        let (reason, cause) = try #require(failed.first)
        #expect(reason.contains("task 'convert' failed after 1 attempts: boom (exit status 3); stderr: it broke"), "\(reason)")
        #expect(cause?.task == 0 && cause?.failure == Self.boom)
    }

    @Test func ignoreKeepsAnInoutValueAndLeavesAnOutWithoutOne() throws {
        // t0 fails, ignored: d0 (inout) keeps its value, d1 (out) has none; t1 reads d1 and fails
        // (ignored too); t2 reads d0 and runs on the initial value.
        let ignore = FailurePolicy(retries: 0, action: .ignore)
        let plan = try WorkflowPlan(
            WorkflowSpec(
                name: "ignore", dataCount: 3,
                tasks: [
                    Self.task([(0, .inout), (1, .out)], ignore), Self.task([(1, .in), (2, .out)], ignore),
                    Self.task([(0, .in), (2, .inout)], ignore),
                ]))
        var owner = W.machine(1)
        let initial = W.initial(plan)
        var out = owner.on(.submit(workflow: Self.wf, plan: plan, initial: initial), now: W.t0)
        out = owner.on(.failed(task: TaskRef(Self.wf, 0), failure: Self.boom), now: W.t0)
        let second = try #require(Self.attempts(out).first)
        #expect(second.0 == TaskRef(Self.wf, 1) && second.2 == [nil], "t1 is given d1 as absent")
        out = owner.on(.failed(task: TaskRef(Self.wf, 1), failure: TaskFailure(message: "no value")), now: W.t0)
        let third = try #require(Self.attempts(out).first)
        #expect(third.0 == TaskRef(Self.wf, 2) && third.2 == [initial[0], nil])
        out = owner.on(.failed(task: TaskRef(Self.wf, 2), failure: TaskFailure(message: "no value")), now: W.t0)
        let end = out.compactMap { if case .workflowCompleted(_, let r, let f) = $0 { (r, f) } else { nil } }
        let (results, failures) = try #require(end.first)
        #expect(results == [initial[0], nil, nil])
        #expect(failures.map(\.task) == [0, 1, 2] && failures.allSatisfy { $0.action == .ignore })
    }

    @Test func cancelSuccessorsFailsOnlyTheDependants() throws {
        // t0 fails for good; t1 reads it (cancelled), t2 reads t1 (cancelled); t3 is independent.
        let cancel = FailurePolicy(retries: 0, action: .cancelSuccessors)
        let plan = try WorkflowPlan(
            WorkflowSpec(
                name: "cancel", dataCount: 3,
                tasks: [
                    Self.task([(0, .out)], cancel), Self.task([(0, .in), (1, .out)], cancel),
                    Self.task([(1, .in), (0, .out)], cancel), Self.task([(2, .inout)], cancel),
                ]))
        var owner = W.machine(1, slots: 2)
        var out = owner.on(.submit(workflow: Self.wf, plan: plan, initial: W.initial(plan)), now: W.t0)
        #expect(Set(Self.attempts(out).map(\.0.task)) == [0, 3])
        out = owner.on(.failed(task: TaskRef(Self.wf, 0), failure: Self.boom), now: W.t0)
        #expect(Self.attempts(out).isEmpty, "its dependants never run")
        let inputs = [W.initial(plan)[2]]
        out = owner.on(.executed(task: TaskRef(Self.wf, 3), outputs: W.outputs(plan, TaskRef(Self.wf, 3), inputs)), now: W.t0)
        let end = out.compactMap { if case .workflowCompleted(_, let r, let f) = $0 { (r, f) } else { nil } }
        let (results, failures) = try #require(end.first)
        #expect(results[0] == nil && results[1] == nil && results[2] != nil)
        #expect(failures.map(\.task) == [0] && failures[0].action == .cancelSuccessors)
    }

    @Test func aDuplicatedFailureReportCountsOnce() throws {
        let plan = try WorkflowPlan(WorkflowSpec(name: "one", dataCount: 1, tasks: [Self.task([(0, .inout)], .init(retries: 3))]))
        var owner = W.machine(1)
        _ = owner.on(.peerUp(W.p(2)), now: W.t0)
        _ = owner.on(.submit(workflow: Self.wf, plan: plan, initial: W.initial(plan)), now: W.t0)
        // The task runs here (attempt 1); reports from p2, or a stale attempt, are not counted.
        _ = owner.on(.message(.failure(task: TaskRef(Self.wf, 0), attempt: 1, failure: Self.boom), from: W.p(2)), now: W.t0)
        #expect(owner.counters.tasksRetried == 0)
        _ = owner.on(.failed(task: TaskRef(Self.wf, 0), failure: Self.boom), now: W.t0)
        _ = owner.on(.message(.failure(task: TaskRef(Self.wf, 0), attempt: 1, failure: Self.boom), from: W.p(1)), now: W.t0)
        #expect(owner.counters.tasksRetried == 1)
    }

    @Test func aRecordKeepsPoliciesLabelsAndFailureEntries() throws {
        var spec = WorkflowSpec(name: "r", dataCount: 1, tasks: [Self.task([(0, .inout)], .init(retries: 7, action: .ignore), label: "étape")])
        spec.tasks[0].failingAttempts = 4
        let plan = try WorkflowPlan(spec)
        let shard = MemoryShard()
        let entries = [
            RecordEntry(.passedThrough, task: 0, version: 1, holder: W.p(1), checksum: 9, bytes: 8, source: 0),
            RecordEntry(.failed, task: 0, version: RecordEntry.none, holder: W.p(1), checksum: 0, bytes: 0),
            RecordEntry(.attemptFailed, task: 0, version: RecordEntry.none, holder: W.p(1), checksum: 0, bytes: 0, source: 3, failure: Self.boom),
            RecordEntry(.attemptFailed, task: 0, version: RecordEntry.none, holder: W.p(1), checksum: 0, bytes: 0, source: 4),
            RecordEntry.about(.cut, version: 1),
        ]
        for write in [
            RecordWrite.create(workflow: Self.wf, owner: W.p(1), backups: [], plan: plan, initial: W.initial(plan)),
            .append(workflow: Self.wf, first: 0, entries: entries),
        ] {
            let (key, value) = try #require(RecordCodec.entry(write))
            try shard.put(key, value, in: .workflows)
        }
        let r = try #require(RecordCodec.records(try shard.scan(.workflows, prefix: [], after: nil, limit: 10)).first)
        #expect(r.plan.spec == spec && r.log == entries)
    }

    /// Retries are counted over owners: an owner that takes a workflow over goes on from the
    /// failed attempts its record logs, so a task runs at most `retries + 1` times in all (found:
    /// a takeover used to start the count again).
    @Test func aTakeoverGoesOnCountingFailedAttempts() throws {
        let plan = try WorkflowPlan(
            WorkflowSpec(name: "one", dataCount: 1, tasks: [Self.task([(0, .inout)], .init(retries: 2), label: "flaky")]))
        var owner = W.machine(1, replicas: 2)
        var backup = W.machine(2, replicas: 2)
        _ = owner.on(.peerUp(W.p(2)), now: W.t0)
        _ = backup.on(.peerUp(W.p(1)), now: W.t0)
        func toBackup(_ out: [WorkDirective]) -> [WorkMessage] {
            out.compactMap { if case .send(let m, W.p(2)) = $0 { m } else { nil } }
        }
        var out = owner.on(.submit(workflow: Self.wf, plan: plan, initial: W.initial(plan)), now: W.t0)
        for m in toBackup(out) {
            // The backup's acknowledgement of the record goes back to the owner.
            for d in backup.on(.message(m, from: W.p(1)), now: W.t0) {
                if case .send(let ack, W.p(1)) = d { _ = owner.on(.message(ack, from: W.p(2)), now: W.t0) }
            }
        }
        // Attempts 1 and 2 fail at the owner; its record reaches the backup.
        _ = owner.on(.failed(task: TaskRef(Self.wf, 0), failure: Self.boom), now: W.t0)
        out = owner.on(.failed(task: TaskRef(Self.wf, 0), failure: Self.boom), now: W.t0)
        #expect(Self.attempts(out).map(\.1) == [3])
        out = owner.on(.timer(.recordFlush), now: W.t0 + .milliseconds(30))
        let appends = toBackup(out).filter { if case .recordAppend = $0 { true } else { false } }
        #expect(!appends.isEmpty)
        for m in appends { _ = backup.on(.message(m, from: W.p(1)), now: W.t0) }
        // The owner dies: the backup runs attempt 3, the last the policy allows.
        out = backup.on(.peerDown(W.p(1)), now: W.t0 + .seconds(1))
        #expect(Self.attempts(out).map(\.1) == [3], "\(Self.attempts(out).map(\.1))")
        out = backup.on(.failed(task: TaskRef(Self.wf, 0), failure: Self.boom), now: W.t0 + .seconds(1))
        let failed = out.compactMap { if case .workflowFailed(_, let reason, _) = $0 { reason } else { nil } }
        #expect(failed.first?.contains("task 'flaky' failed after 3 attempts") == true, "\(failed)")
    }

    /// The cause of a failure an earlier owner ignored reaches the workflow's end after a
    /// takeover: its text, exit status and stderr tail, and its attempts.
    @Test func aTakeoverReportsTheCauseOfAnIgnoredFailure() throws {
        let plan = try WorkflowPlan(
            WorkflowSpec(
                name: "two", dataCount: 1,
                tasks: [Self.task([(0, .inout)], .init(retries: 1, action: .ignore), label: "convert"), Self.task([(0, .inout)], .init())]))
        var owner = W.machine(1, replicas: 2)
        var backup = W.machine(2, replicas: 2)
        _ = owner.on(.peerUp(W.p(2)), now: W.t0)
        _ = backup.on(.peerUp(W.p(1)), now: W.t0)
        func deliver(_ out: [WorkDirective]) {
            for case .send(let m, W.p(2)) in out {
                for case .send(let ack, W.p(1)) in backup.on(.message(m, from: W.p(1)), now: W.t0) {
                    _ = owner.on(.message(ack, from: W.p(2)), now: W.t0)
                }
            }
        }
        deliver(owner.on(.submit(workflow: Self.wf, plan: plan, initial: W.initial(plan)), now: W.t0))
        // Task 0 fails twice and is ignored at the owner; the record reaches the backup.
        _ = owner.on(.failed(task: TaskRef(Self.wf, 0), failure: Self.boom), now: W.t0)
        _ = owner.on(.failed(task: TaskRef(Self.wf, 0), failure: Self.boom), now: W.t0)
        let flushed = owner.on(.timer(.recordFlush), now: W.t0 + .milliseconds(30))
        #expect(flushed.contains { if case .send(.recordAppend(_, _, _, let e), W.p(2)) = $0 { e.contains { $0.kind == .passedThrough } } else { false } }, "\(flushed)")
        deliver(flushed)
        // The owner dies while task 1 (which reads what task 0 passed through) runs: the backup
        // runs what is left and reports task 0's cause.
        var out = backup.on(.peerDown(W.p(1)), now: W.t0 + .seconds(1))
        for _ in 0..<4 {
            guard let (task, inputs) = W.executions(out).first else { break }
            out = backup.on(.executed(task: task, outputs: W.outputs(plan, task, inputs)), now: W.t0 + .seconds(1))
        }
        let completed: [[FailureReport]] = out.compactMap { if case .workflowCompleted(_, _, let f) = $0 { f } else { nil } }
        let reports = completed.first ?? []
        #expect(reports.count == 1, "\(out)")
        #expect(reports.first?.failure == Self.boom && reports.first?.attempts == 2 && reports.first?.label == "convert", "\(reports)")
    }
}
