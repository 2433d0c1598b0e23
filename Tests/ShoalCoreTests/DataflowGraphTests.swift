import Testing

@testable import ShoalCore

/// Drives a `DataflowGraph` by hand. Every operation returns the directives it emitted.
private struct Machine {
    var graph: DataflowGraph
    private var out: [Directive] = []

    init(slots: Int = 8) {
        graph = DataflowGraph(settings: SchedulerSettings(slots: slots))
    }

    mutating func define(_ d: UInt32) -> VersionID {
        defer { out.removeAll() }
        return graph.define(DatumID(raw: d), into: &out)
    }

    /// Submits a task and returns its id and the directives of the submission.
    mutating func submit(_ accesses: [(UInt32, Direction)], policy: FailurePolicy = .default) -> (TaskID, [Directive]) {
        defer { out.removeAll() }
        let t = graph.submit(accesses.map { (datum: DatumID(raw: $0.0), direction: $0.1) }, policy: policy, into: &out)
        return (t, out)
    }

    /// Submits a task and returns its id only.
    mutating func task(_ accesses: [(UInt32, Direction)], policy: FailurePolicy = .default) -> TaskID {
        submit(accesses, policy: policy).0
    }

    mutating func take(_ max: Int = 100) -> [TaskID] {
        var taken: [TaskID] = []
        graph.take(max: max, into: &taken)
        return taken
    }

    @discardableResult
    mutating func complete(_ t: TaskID) -> [Directive] {
        defer { out.removeAll() }
        graph.complete(t, into: &out)
        return out
    }

    @discardableResult
    mutating func fail(_ t: TaskID, _ message: String = "boom") -> [Directive] {
        defer { out.removeAll() }
        graph.fail(t, label: "task-\(t.raw)", message: message, into: &out)
        return out
    }

    mutating func pin(_ d: UInt32) -> VersionID? {
        defer { out.removeAll() }
        return graph.pinCurrent(DatumID(raw: d), into: &out)
    }

    mutating func unpin(_ v: VersionID) -> [Directive] {
        defer { out.removeAll() }
        graph.unpin(v, into: &out)
        return out
    }

    func read(_ t: TaskID, _ d: UInt32) -> VersionID? {
        graph.accesses(of: t).first { $0.datum == DatumID(raw: d) }?.read
    }

    func written(_ t: TaskID, _ d: UInt32) -> VersionID? {
        graph.accesses(of: t).first { $0.datum == DatumID(raw: d) }?.written
    }
}

private func readied(_ ds: [Directive]) -> [TaskID] {
    ds.compactMap { if case .ready(let t) = $0 { t } else { nil } }
}

private func outcome(of t: TaskID, in ds: [Directive]) -> TaskOutcome? {
    for d in ds { if case .finished(t, let o) = d { return o } }
    return nil
}

private func released(_ ds: [Directive]) -> [VersionID] {
    ds.compactMap { if case .releaseVersion(let v) = $0 { v } else { nil } }
}

private let failOnce = FailurePolicy(retries: 0, action: .fail)
private let ignore = FailurePolicy(retries: 0, action: .ignore)
private let cancelSuccessors = FailurePolicy(retries: 0, action: .cancelSuccessors)

@Suite struct DataflowGraphTests {
    // MARK: Dependences

    @Test func readAfterWriteOrdersTasks() {
        var m = Machine()
        _ = m.define(0)
        let (w, wDs) = m.submit([(0, .out)])
        let (r, rDs) = m.submit([(0, .in)])
        #expect(readied(wDs) == [w])
        #expect(readied(rDs).isEmpty)
        #expect(m.take() == [w])
        let ds = m.complete(w)
        #expect(ds.contains(.versionAvailable(m.read(r, 0)!)))
        #expect(readied(ds) == [r])
        #expect(m.read(r, 0) != nil)
    }

    @Test func writeAfterReadDoesNotOrder() {
        var m = Machine()
        _ = m.define(0)
        let r1 = m.task([(0, .in)])
        let r2 = m.task([(0, .in)])
        let (w, wDs) = m.submit([(0, .out)])
        #expect(readied(wDs) == [w])
        #expect(m.take() == [r1, r2, w])
        // The readers read the old version, the writer makes a new one.
        #expect(m.read(r1, 0) == m.read(r2, 0))
        #expect(m.written(w, 0) != m.read(r1, 0))
    }

    @Test func writeAfterWriteDoesNotOrderButReadersSeeTheLastWrite() {
        var m = Machine()
        _ = m.define(0)
        let w1 = m.task([(0, .out)])
        let w2 = m.task([(0, .out)])
        let r = m.task([(0, .in)])
        #expect(m.take() == [w1, w2])
        #expect(m.read(r, 0) == m.written(w2, 0))
        // Finishing the older writer does not release the reader; the newer one does.
        #expect(readied(m.complete(w1)).isEmpty)
        #expect(readied(m.complete(w2)) == [r])
    }

    @Test func inoutChainRunsStrictlyInOrder() {
        var m = Machine()
        _ = m.define(0)
        let chain = (0..<4).map { _ in m.task([(0, .inout)]) }
        for (i, t) in chain.enumerated() {
            #expect(m.take() == [t], "step \(i)")
            let ds = m.complete(t)
            #expect(readied(ds) == (i + 1 < chain.count ? [chain[i + 1]] : []), "step \(i)")
        }
        #expect(m.graph.liveTasks == 0)
    }

    @Test func aTaskWaitsForAllItsInputs() {
        var m = Machine()
        let a = m.task([(0, .out)])
        let b = m.task([(1, .out)])
        let c = m.task([(0, .in), (1, .in), (2, .out)])
        #expect(m.take() == [a, b])
        #expect(readied(m.complete(b)).isEmpty)
        #expect(readied(m.complete(a)) == [c])
    }

    // MARK: Commutative and concurrent groups

    @Test func commutativeMembersWaitForTheVersionBeforeTheGroup() {
        var m = Machine()
        let w = m.task([(0, .out)])
        let (c1, d1) = m.submit([(0, .commutative)])
        let (c2, d2) = m.submit([(0, .commutative)])
        #expect(readied(d1).isEmpty && readied(d2).isEmpty)
        // Members read the version before the group and share the group's version.
        #expect(m.read(c1, 0) == m.written(w, 0))
        #expect(m.read(c2, 0) == m.written(w, 0))
        #expect(m.written(c1, 0) == m.written(c2, 0))
        #expect(m.take() == [w])
        #expect(readied(m.complete(w)) == [c1])  // c2 waits for the lock
    }

    @Test func commutativeMembersNeverRunTwoAtOnce() {
        var m = Machine()
        _ = m.define(0)
        let members = (0..<3).map { _ in m.task([(0, .commutative)]) }
        var ran: [TaskID] = []
        for _ in members {
            let taken = m.take()
            #expect(taken.count == 1)
            #expect(m.take().isEmpty)  // still one at a time while it runs
            ran += taken
            m.complete(taken[0])
        }
        #expect(Set(ran) == Set(members))
    }

    @Test func aReaderAfterACommutativeGroupWaitsForAllMembers() {
        var m = Machine()
        _ = m.define(0)
        let members = (0..<3).map { _ in m.task([(0, .commutative)]) }
        let r = m.task([(0, .in)])
        #expect(m.read(r, 0) == m.written(members[0], 0))
        for (i, c) in members.enumerated() {
            #expect(m.take() == [c])
            let ds = m.complete(c)
            if i < members.count - 1 {
                #expect(!readied(ds).contains(r), "ready after \(i + 1) members")
            } else {
                #expect(ds.contains(.versionAvailable(m.read(r, 0)!)))
                #expect(readied(ds) == [r])
            }
        }
    }

    @Test func aSecondCommutativeGroupAfterAReaderStartsFromTheFirstGroupsResult() {
        var m = Machine()
        _ = m.define(0)
        let c1 = m.task([(0, .commutative)])
        let c2 = m.task([(0, .commutative)])
        let r = m.task([(0, .in)])
        let c3 = m.task([(0, .commutative)])
        let c4 = m.task([(0, .commutative)])
        #expect(m.written(c3, 0) == m.written(c4, 0))
        #expect(m.written(c3, 0) != m.written(c1, 0))
        #expect(m.read(c3, 0) == m.written(c1, 0))
        #expect(m.take() == [c1])
        m.complete(c1)
        #expect(m.take() == [c2])
        // The second group waits for the whole first group, but not for the reader (WAR).
        let ds = m.complete(c2)
        #expect(readied(ds) == [r, c3])
        #expect(m.take() == [r, c3])
        m.complete(c3)
        #expect(m.take() == [c4])
    }

    @Test func aWaitClosesTheCommutativeGroup() {
        var m = Machine()
        _ = m.define(0)
        let c1 = m.task([(0, .commutative)])
        let v = m.pin(0)
        #expect(v == m.written(c1, 0))
        #expect(m.graph.status(of: v!) == .pending)
        let c2 = m.task([(0, .commutative)])
        #expect(m.read(c2, 0) == v)  // a new group
        #expect(m.take() == [c1])
        let ds = m.complete(c1)
        #expect(ds.contains(.versionAvailable(v!)))
        #expect(readied(ds) == [c2])
    }

    @Test func aMemberJoiningAfterTheOthersFinishedStillReadsTheGroupsBase() {
        var m = Machine()
        let v0 = m.define(0)
        let c1 = m.task([(0, .commutative)])
        #expect(m.take() == [c1])
        #expect(released(m.complete(c1)).isEmpty)  // the group is open: v0 may gain a member
        let (c2, ds) = m.submit([(0, .commutative)])
        #expect(readied(ds) == [c2])
        #expect(m.read(c2, 0) == v0)
        #expect(m.graph.status(of: v0) == .available)
        #expect(m.take() == [c2])
        m.complete(c2)
        // Closing the group releases the base.
        let (_, rDs) = m.submit([(0, .in)])
        #expect(released(rDs) == [v0])
    }

    @Test func concurrentGroupMembersCanBeTakenTogether() {
        var m = Machine()
        _ = m.define(0)
        let members = (0..<3).map { _ in m.task([(0, .concurrent)]) }
        let r = m.task([(0, .in)])
        #expect(m.take() == members)
        #expect(m.written(members[0], 0) == m.written(members[2], 0))
        #expect(readied(m.complete(members[1])).isEmpty)
        #expect(readied(m.complete(members[0])).isEmpty)
        #expect(readied(m.complete(members[2])) == [r])
    }

    // MARK: Slots

    @Test func freeSlotsBoundTake() {
        var m = Machine(slots: 2)
        let ts = (0..<5).map { m.task([(UInt32($0), .out)]) }
        #expect(m.graph.readyCount == 5)
        #expect(m.take(10) == [ts[0], ts[1]])
        #expect(m.take(10).isEmpty)
        #expect(m.graph.freeSlots == 0 && m.graph.running == 2)
        m.complete(ts[0])
        #expect(m.take(10) == [ts[2]])
        #expect(m.take(1).isEmpty)
        m.complete(ts[1])
        m.complete(ts[2])
        #expect(m.take(1) == [ts[3]])
        #expect(m.graph.readyCount == 1)
    }

    // MARK: Failure policy

    @Test func retriesRequeueTheTaskAndCountAttempts() {
        var m = Machine()
        _ = m.define(0)
        let t = m.task([(0, .inout)], policy: FailurePolicy(retries: 2, action: .fail))
        let r = m.task([(0, .in)])
        for attempt in 1...2 {
            #expect(m.take() == [t])
            #expect(m.graph.attempts(of: t) == attempt)
            let ds = m.fail(t)
            #expect(ds == [.retrying(t, attempt: attempt + 1)])
            #expect(m.graph.readyCount == 1 && m.graph.abortCause == nil)
        }
        #expect(m.take() == [t])
        let ds = m.fail(t, "third time")
        guard case .failed(let f) = outcome(of: t, in: ds) else {
            Issue.record("expected t to fail: \(ds)")
            return
        }
        #expect(m.graph.failure(f) == FailureRecord(task: "task-\(t.raw)", message: "third time", attempts: 3))
        #expect(outcome(of: r, in: ds) == .cancelled(f))
    }

    @Test func aRetriedTaskThatSucceedsLetsItsDependantsRun() {
        var m = Machine()
        _ = m.define(0)
        let t = m.task([(0, .inout)], policy: FailurePolicy(retries: 1, action: .fail))
        let r = m.task([(0, .in)])
        #expect(m.take() == [t])
        #expect(m.fail(t) == [.retrying(t, attempt: 2)])
        #expect(m.take() == [t])
        let ds = m.complete(t)
        #expect(outcome(of: t, in: ds) == .completed)
        #expect(readied(ds) == [r])
        #expect(m.graph.failures.isEmpty)
    }

    @Test func failAbortsTheWorkflow() {
        var m = Machine(slots: 2)
        _ = m.define(0)
        let a = m.task([(0, .inout)], policy: failOnce)
        let b = m.task([(1, .out)])
        let queued = m.task([(2, .out)])
        let c = m.task([(0, .in)])
        let d = m.task([(1, .in)])
        #expect(m.take() == [a, b])
        let va = m.written(a, 0)!
        let ds = m.fail(a, "bad input")
        guard case .failed(let f) = outcome(of: a, in: ds) else {
            Issue.record("expected a to fail: \(ds)")
            return
        }
        #expect(m.graph.abortCause == f)
        #expect(ds.contains(.versionFailed(va, f)))
        #expect(outcome(of: c, in: ds) == .cancelled(f))  // a dependant
        #expect(outcome(of: queued, in: ds) == .cancelled(f))  // ready but not started
        #expect(m.take().isEmpty)
        // A task that was running finishes normally; its dependants are cancelled.
        let bDs = m.complete(b)
        #expect(outcome(of: b, in: bDs) == .completed)
        #expect(outcome(of: d, in: bDs) == .cancelled(f))
        // Later submissions are cancelled at once.
        let (late, lateDs) = m.submit([(3, .out)])
        #expect(outcome(of: late, in: lateDs) == .cancelled(f))
        #expect(m.take().isEmpty)
        #expect(m.graph.liveTasks == 0)
        #expect(m.graph.failure(f).message == "bad input")
    }

    @Test func failAbortCancelsCommutativeMembersWaitingForTheLock() {
        var m = Machine(slots: 2)
        _ = m.define(0)
        let a = m.task([(1, .out)], policy: failOnce)
        let c1 = m.task([(0, .commutative)])
        let c2 = m.task([(0, .commutative)])
        #expect(m.take() == [a, c1])
        let ds = m.fail(a)
        guard case .failed(let f) = outcome(of: a, in: ds) else {
            Issue.record("expected a to fail: \(ds)")
            return
        }
        let cDs = m.complete(c1)
        #expect(outcome(of: c1, in: cDs) == .completed)
        #expect(outcome(of: c2, in: cDs) == .cancelled(f))
        #expect(m.graph.liveTasks == 0)
    }

    @Test func cancelSuccessorsCancelsOnlyTheTransitiveDependants() {
        var m = Machine()
        _ = m.define(0)
        _ = m.define(1)
        let a = m.task([(0, .inout)], policy: cancelSuccessors)
        let b = m.task([(0, .in), (2, .out)])  // reads a's output
        let c = m.task([(2, .in)])  // reads b's output
        let x = m.task([(1, .inout)])  // unrelated
        let y = m.task([(0, .out)])  // overwrites a's datum: no dependence on a
        let z = m.task([(0, .in)])  // reads y's version
        #expect(m.take() == [a, x, y])
        let ds = m.fail(a, "flaky")
        guard case .failed(let f) = outcome(of: a, in: ds) else {
            Issue.record("expected a to fail: \(ds)")
            return
        }
        #expect(outcome(of: b, in: ds) == .cancelled(f))
        #expect(outcome(of: c, in: ds) == .cancelled(f))
        #expect(outcome(of: x, in: ds) == nil && outcome(of: y, in: ds) == nil && outcome(of: z, in: ds) == nil)
        #expect(m.graph.abortCause == nil)
        #expect(outcome(of: x, in: m.complete(x)) == .completed)
        #expect(readied(m.complete(y)) == [z])
        #expect(m.take() == [z])
        // A new reader of the failed version would be cancelled, but a/y superseded it; a new
        // task on an unrelated datum runs.
        let (n, nDs) = m.submit([(5, .out)])
        #expect(readied(nDs) == [n])
    }

    @Test func aTaskReadingAFailedVersionIsCancelledAtSubmission() {
        var m = Machine()
        let a = m.task([(0, .out)], policy: cancelSuccessors)
        #expect(m.take() == [a])
        let ds = m.fail(a)
        guard case .failed(let f) = outcome(of: a, in: ds) else {
            Issue.record("expected a to fail: \(ds)")
            return
        }
        let (r, rDs) = m.submit([(0, .in)])
        #expect(outcome(of: r, in: rDs) == .cancelled(f))
        let (w, wDs) = m.submit([(0, .out)])
        #expect(readied(wDs) == [w])
    }

    @Test func ignoreLetsSuccessorsRunAndPassesInoutValuesThrough() {
        var m = Machine()
        let v0 = m.define(0)
        let a = m.task([(0, .inout), (1, .out)], policy: ignore)
        let b = m.task([(0, .in)])
        let c = m.task([(1, .in)])
        #expect(m.take() == [a])
        let va = m.written(a, 0)!
        let ds = m.fail(a)
        guard case .failedIgnored(let f) = outcome(of: a, in: ds) else {
            Issue.record("expected a to be ignored: \(ds)")
            return
        }
        #expect(ds.filter { if case .passThrough = $0 { true } else { false } } == [.passThrough(from: v0, to: va)])
        let pass = ds.firstIndex(of: .passThrough(from: v0, to: va))!
        let available = ds.firstIndex(of: .versionAvailable(va))!
        #expect(pass < available)
        #expect(readied(ds) == [b, c])
        #expect(m.graph.abortCause == nil)
        #expect(m.graph.failure(f).attempts == 1)
    }

    // MARK: Versions

    @Test func aVersionIsReleasedOnceSupersededAndUnread() {
        var m = Machine()
        let v0 = m.define(0)
        let r = m.task([(0, .in)])
        let (w, wDs) = m.submit([(0, .out)])
        #expect(released(wDs).isEmpty)  // r still reads v0
        #expect(m.take() == [r, w])
        #expect(released(m.complete(r)) == [v0])
        let v1 = m.written(w, 0)!
        #expect(released(m.complete(w)).isEmpty)  // current: a reader may still come
        let (_, w2Ds) = m.submit([(0, .out)])
        #expect(released(w2Ds) == [v1])
    }

    @Test func aPinnedVersionIsNeverReleased() {
        var m = Machine()
        let v0 = m.define(0)
        #expect(m.pin(0) == v0)
        let w = m.task([(0, .out)])
        #expect(m.take() == [w])
        #expect(released(m.complete(w)).isEmpty)
        #expect(m.graph.status(of: v0) == .available)
        #expect(released(m.unpin(v0)) == [v0])
    }

    @Test func aPendingSupersededVersionIsReleasedAfterItsWriterAndReaders() {
        var m = Machine()
        let w = m.task([(0, .out)])
        let r = m.task([(0, .in)])
        let w2 = m.task([(0, .out)])
        let v = m.written(w, 0)!
        #expect(m.take() == [w, w2])
        #expect(released(m.complete(w)).isEmpty)  // superseded, but r has not read it yet
        #expect(m.take() == [r])
        #expect(released(m.complete(r)) == [v])
    }

    // MARK: Slot reuse

    @Test func taskSlotsAreReusedWithoutCorruptingWaitingTasks() {
        var m = Machine()
        _ = m.define(0)
        _ = m.define(1)
        let a = m.task([(0, .inout)], policy: cancelSuccessors)
        let b = m.task([(1, .inout)])
        let c = m.task([(0, .in), (1, .in)])  // waits for a and b
        #expect(m.take() == [a, b])
        let ds = m.fail(a)
        guard case .failed(let f) = outcome(of: a, in: ds) else {
            Issue.record("expected a to fail: \(ds)")
            return
        }
        #expect(outcome(of: c, in: ds) == .cancelled(f))
        // c still waits on b's version, so its slot is not reused yet; a's is.
        let n = m.task([(1, .in)])
        let o = m.task([(1, .in)])
        #expect(n != c && o != c)
        #expect(n == a || o == a)
        let bDs = m.complete(b)
        #expect(readied(bDs) == [n, o])
        #expect(!bDs.contains { if case .finished(c, _) = $0 { true } else { false } })
        #expect(m.take() == [n, o])
        m.complete(n)
        m.complete(o)
        // Now every slot is free again, and a reused one works like new.
        let p = m.task([(1, .inout)])
        let q = m.task([(1, .in)])
        #expect(m.take() == [p])
        #expect(readied(m.complete(p)) == [q])
        #expect(m.graph.liveTasks == 1)
    }

    @Test func submissionRoomFollowsLiveTasks() {
        var m = Machine()
        m.graph = DataflowGraph(settings: SchedulerSettings(slots: 1, maxLiveTasks: 2))
        let a = m.task([(0, .out)])
        #expect(m.graph.hasRoomForSubmission)
        _ = m.task([(1, .out)])
        #expect(!m.graph.hasRoomForSubmission)
        #expect(m.take() == [a])
        m.complete(a)
        #expect(m.graph.hasRoomForSubmission)
    }
}
