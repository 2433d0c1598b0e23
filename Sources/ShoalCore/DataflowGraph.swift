/// Identifies a task inside one `DataflowGraph`. Slots are reused once a task is finished and
/// nothing refers to it any more, so an id is only meaningful while its task is live.
public struct TaskID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let raw: UInt32
    public init(raw: UInt32) { self.raw = raw }
    public static func < (a: TaskID, b: TaskID) -> Bool { a.raw < b.raw }
    public var description: String { "t\(raw)" }
}

/// Identifies a datum (a named value or file) for the whole life of a workflow.
public struct DatumID: Hashable, Sendable, Comparable, Codable, CustomStringConvertible {
    public let raw: UInt32
    public init(raw: UInt32) { self.raw = raw }
    public static func < (a: DatumID, b: DatumID) -> Bool { a.raw < b.raw }
    public var description: String { "d\(raw)" }
}

/// Identifies one version of a datum. Slots are reused after the version is released.
public struct VersionID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let raw: UInt32
    public init(raw: UInt32) { self.raw = raw }
    public static func < (a: VersionID, b: VersionID) -> Bool { a.raw < b.raw }
    public var description: String { "v\(raw)" }
    static let none = VersionID(raw: .max)
}

/// What happens when a task fails after its retries are used up (PyCOMPSs `on_failure`).
public enum FailureAction: UInt8, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    /// The workflow fails: dependants fail with the cause attached and no new task starts.
    case fail
    /// The failure is ignored: successors run; an `out` datum it should have written has no value,
    /// an `inout` or `commutative` datum keeps its previous value.
    case ignore
    /// The task's dependants (transitively) are cancelled with the cause attached; the rest of the
    /// workflow goes on.
    case cancelSuccessors

    public var description: String {
        switch self {
        case .fail: "fail"
        case .ignore: "ignore"
        case .cancelSuccessors: "cancel-successors"
        }
    }

    /// The action named `name` as written in workflow files (`fail`, `ignore`, `cancel-successors`).
    public init?(name: String) {
        guard let a = FailureAction.allCases.first(where: { $0.description == name }) else { return nil }
        self = a
    }
}

/// Per-task failure policy: retry up to `retries` more times, then apply `action`.
public struct FailurePolicy: Sendable, Hashable, Codable {
    public var retries: UInt16
    public var action: FailureAction
    public init(retries: UInt16 = 0, action: FailureAction = .fail) {
        self.retries = retries
        self.action = action
    }
    public static let `default` = FailurePolicy()

    /// What follows a failed attempt, `failedAttempts` counting it: run again while retries are
    /// left (and the workflow is not aborting), else apply `action`. The one decision the local
    /// graph and a cluster workflow's owner both take.
    public func decision(afterFailedAttempts failedAttempts: Int, aborting: Bool = false) -> FailureDecision {
        failedAttempts <= Int(retries) && !aborting ? .retry : .apply(action)
    }
}

/// See `FailurePolicy.decision`.
public enum FailureDecision: Sendable, Hashable {
    case retry
    case apply(FailureAction)
}

/// One access of a task after dependency analysis: which version it reads and which it writes.
///
/// For `commutative` and `concurrent` accesses, `read` is the version before the group and
/// `written` is the group's version, shared by every member: the shell initialises the group's
/// value from `read` when the first member runs, and members then read and write the group value.
public struct ResolvedAccess: Sendable, Hashable {
    public var datum: DatumID
    public var direction: Direction
    // 16 bytes in all: a pending task's accesses are most of what it costs in memory.
    private var readRaw: UInt32 = .max
    private var writtenRaw: UInt32 = .max

    public init(datum: DatumID, direction: Direction, read: VersionID?, written: VersionID?) {
        self.datum = datum
        self.direction = direction
        self.read = read
        self.written = written
    }

    /// The version read, or `nil` for `out`.
    public var read: VersionID? {
        get { readRaw == .max ? nil : VersionID(raw: readRaw) }
        set { readRaw = newValue?.raw ?? .max }
    }

    /// The version written, or `nil` for `in`.
    public var written: VersionID? {
        get { writtenRaw == .max ? nil : VersionID(raw: writtenRaw) }
        set { writtenRaw = newValue?.raw ?? .max }
    }
}

/// Blocks of `ResolvedAccess` in power-of-two size classes inside one array, so a pending task's
/// accesses cost 16 bytes each and no heap allocation of their own. Freed blocks are reused by
/// the next task of the same class.
struct AccessArena: Sendable {
    private(set) var storage: [ResolvedAccess] = []
    private var free: [[UInt32]] = Array(repeating: [], count: 33)

    static func sizeClass(_ count: Int) -> Int {
        count <= 1 ? 0 : Int.bitWidth - (count - 1).leadingZeroBitCount
    }

    /// Stores `accesses` and returns where they start.
    mutating func store(_ accesses: [ResolvedAccess]) -> UInt32 {
        guard !accesses.isEmpty else { return 0 }
        let k = AccessArena.sizeClass(accesses.count)
        let start: Int
        if let reused = free[k].popLast() {
            start = Int(reused)
        } else {
            start = storage.count
            let filler = ResolvedAccess(datum: DatumID(raw: 0), direction: .in, read: nil, written: nil)
            storage.append(contentsOf: repeatElement(filler, count: 1 << k))
        }
        for (i, a) in accesses.enumerated() { storage[start + i] = a }
        return UInt32(start)
    }

    mutating func release(start: UInt32, count: Int) {
        guard count > 0 else { return }
        free[AccessArena.sizeClass(count)].append(start)
    }

    subscript(i: Int) -> ResolvedAccess { storage[i] }
}

/// A task's final state as reported to the shell.
public enum TaskOutcome: Sendable, Hashable {
    case completed
    /// Failed after its retries and the failure was ignored (`FailureAction.ignore`).
    case failedIgnored(FailureID)
    /// Failed after its retries; `FailureAction.fail` or `.cancelSuccessors` applied.
    case failed(FailureID)
    /// Never ran because an input failed or the workflow was aborted; the cause is attached.
    case cancelled(FailureID)
}

/// Index of a recorded failure (`DataflowGraph.failure(_:)`).
public struct FailureID: Hashable, Sendable, CustomStringConvertible {
    public let raw: UInt32
    public var description: String { "failure#\(raw)" }
}

/// A failure recorded by the graph: the task that failed first and why.
public struct FailureRecord: Sendable, Hashable {
    /// The shell's label of the task that failed (its name).
    public var task: String
    public var message: String
    public var attempts: Int
}

/// What the graph asks its shell to do. Produced into a caller-owned buffer so the hot path does
/// not allocate an array per event.
public enum Directive: Sendable, Hashable {
    /// A version's value is final: resolve waiters on it.
    case versionAvailable(VersionID)
    /// A version will never get a value: fail waiters on it with the cause.
    case versionFailed(VersionID, FailureID)
    /// Nothing will read this version any more: drop its value.
    case releaseVersion(VersionID)
    /// An `ignore`d failure of a task that read `from` and wrote `to`: if `to` holds no value yet,
    /// give it `from`'s value (an `inout` datum keeps its previous value; a group keeps what earlier
    /// members made of it). Comes before the version is announced.
    case passThrough(from: VersionID, to: VersionID)
    /// A task reached its final state; its slot may be reused after this directive.
    case finished(TaskID, TaskOutcome)
    /// A task failed and will run again (attempt counts from 1).
    case retrying(TaskID, attempt: Int)
    /// A task became ready (it is in the ready queue now).
    case ready(TaskID)
}

/// Settings of the local scheduler. Every queue is bounded.
public struct SchedulerSettings: Sendable, Hashable {
    /// How many tasks may run at once on this peer (usually the number of cores).
    public var slots: Int
    /// Most tasks the graph holds before submission must wait (live tasks: pending, ready, running).
    public var maxLiveTasks: Int
    public init(slots: Int, maxLiveTasks: Int = 4_000_000) {
        precondition(slots > 0, "slots must be positive, got \(slots)")
        self.slots = slots
        self.maxLiveTasks = maxLiveTasks
    }
}

/// The local dataflow machine: dependency analysis over data versions plus the ready queue and
/// slot accounting of one peer's scheduler.
///
/// Pure and synchronous: it never reads a clock, never draws random numbers, never does IO. The
/// shell calls `submit`, `take`, `complete` and `fail`; each appends the resulting directives to a
/// buffer the shell owns and clears.
///
/// Dependence rule (COMPSs renaming): every write creates a new version, readers wait for the
/// version they read to be available, writers never wait for earlier readers or writers. A
/// consecutive run of `commutative` accesses to one datum forms a group: members wait for the
/// version before the group, run one at a time (a lock per datum) in any order, and the group's
/// version becomes available when the group is closed by a later access and all members finished.
/// `concurrent` groups are the same without the lock.
public struct DataflowGraph: Sendable {
    // MARK: Storage

    enum TaskState: UInt8, Sendable {
        case free, waiting, lockWait, ready, running, cancelledTombstone
    }

    struct TaskSlot: Sendable {
        var unmet: UInt32 = 0
        var state: TaskState = .free
        var attempts: UInt16 = 0
        var policy = FailurePolicy.default
        /// The task's accesses: `accessCount` entries of `arena` from `accessStart`.
        var accessStart: UInt32 = 0
        var accessCount: UInt16 = 0

        var accessRange: Range<Int> { Int(accessStart)..<Int(accessStart) + Int(accessCount) }
    }

    enum VersionState: UInt8, Sendable {
        case free, pending, available, failed, released
    }

    struct VersionSlot: Sendable {
        var datum = DatumID(raw: 0)
        var state = VersionState.free
        /// Writers that have not finished (1 for `out`/`inout`, the members for a group).
        var pendingWriters: UInt32 = 0
        /// Tasks that will read this version and have not finished.
        var pendingReaders: UInt32 = 0
        /// Shell pins (a user waiting on it, a persist in progress).
        var pins: UInt32 = 0
        /// A newer version of the datum exists, so no new reader can arrive.
        var superseded = false
        /// An open commutative/concurrent group writes this version; it is not available until closed.
        var openGroup = false
        var failure: FailureID? = nil
        /// Tasks waiting for this version to become available.
        var waiters: [TaskID] = []
    }

    struct DatumSlot: Sendable {
        /// Its newest version and open group (the shared renaming rule, `VersionLedger`).
        var versions = DatumVersions()
        /// Commutative mutual exclusion.
        var lockHolder: TaskID? = nil
        var lockWaiters: [TaskID] = []
        var lockWaitHead = 0
    }

    public let settings: SchedulerSettings
    var tasks: [TaskSlot] = []
    var freeTasks: [UInt32] = []
    var arena = AccessArena()
    /// Reused by `submit` to resolve accesses without allocating.
    var scratch: [ResolvedAccess] = []
    /// The first failed version the task being submitted reads (set by `addReader`).
    var inputFailure: FailureID? = nil
    var versions: [VersionSlot] = []
    var freeVersions: [UInt32] = []
    var data: [DatumSlot] = []
    var readyQueue = RingBuffer<TaskID>()
    var failures: [FailureRecord] = []

    /// Tasks submitted and not finished.
    public private(set) var liveTasks = 0
    /// Tasks handed out by `take` and not yet completed or failed.
    public private(set) var running = 0
    /// Set by the first failure whose action is `.fail`: no new task starts.
    public private(set) var abortCause: FailureID? = nil

    public init(settings: SchedulerSettings) {
        self.settings = settings
    }

    // MARK: Queries

    public var readyCount: Int { readyQueue.count }
    public var freeSlots: Int { max(0, settings.slots - running) }
    public var hasRoomForSubmission: Bool { liveTasks < settings.maxLiveTasks }
    public func failure(_ id: FailureID) -> FailureRecord { failures[Int(id.raw)] }
    public func accesses(of task: TaskID) -> [ResolvedAccess] {
        tasks[Int(task.raw)].accessRange.map { arena[$0] }
    }
    public func policy(of task: TaskID) -> FailurePolicy { tasks[Int(task.raw)].policy }
    public func attempts(of task: TaskID) -> Int { Int(tasks[Int(task.raw)].attempts) }

    /// The newest version of `datum`, or nil if nothing defined it yet.
    public func currentVersion(of datum: DatumID) -> VersionID? {
        let i = Int(datum.raw)
        guard i < data.count, data[i].versions.current != .none else { return nil }
        return data[i].versions.current
    }

    public enum VersionStatus: Sendable, Hashable {
        case pending, available, failed(FailureID), released
    }

    public func status(of version: VersionID) -> VersionStatus {
        let v = versions[Int(version.raw)]
        switch v.state {
        case .pending: return .pending
        case .available: return .available
        case .failed: return .failed(v.failure!)
        case .free, .released: return .released
        }
    }

    public func datum(of version: VersionID) -> DatumID { versions[Int(version.raw)].datum }

    /// Whether `t` is submitted and not finished (waiting, ready or running).
    public func isPending(_ t: TaskID) -> Bool {
        switch tasks[Int(t.raw)].state {
        case .waiting, .lockWait, .ready, .running: true
        case .free, .cancelledTombstone: false
        }
    }

    /// Whether the task that reads `v` is the only one that ever can: `v` is superseded, has one
    /// pending reader and no pin. Such a value may be moved into the task instead of copied.
    public func hasSoleReader(_ v: VersionID) -> Bool {
        let s = versions[Int(v.raw)]
        return s.superseded && s.pendingReaders == 1 && s.pins == 0
    }

    // MARK: Data definition

    /// Defines a new version of `datum` that is already available (an initial value given by the
    /// user, or a value loaded from the store). Closes any open group on the datum.
    public mutating func define(_ datum: DatumID, into out: inout [Directive]) -> VersionID {
        ensureDatum(datum)
        closeGroup(datum, effects: &out)
        let v = newVersion(datum, pendingWriters: 0)
        versions[Int(v.raw)].state = .available
        replaceCurrent(of: datum, with: v, effects: &out)
        return v
    }

    /// Pins the newest version of `datum` (a user waiting on it, or persisting it) and returns it.
    /// Closes an open group, because a wait is an access that observes the group's result.
    public mutating func pinCurrent(_ datum: DatumID, into out: inout [Directive]) -> VersionID? {
        ensureDatum(datum)
        closeGroup(datum, effects: &out)
        guard let v = currentVersion(of: datum) else { return nil }
        versions[Int(v.raw)].pins += 1
        return v
    }

    public mutating func unpin(_ version: VersionID, into out: inout [Directive]) {
        let i = Int(version.raw)
        precondition(versions[i].pins > 0, "unpin of \(version) which has no pins")
        versions[i].pins -= 1
        releaseIfDead(version, into: &out)
    }

    // MARK: Submission

    /// Adds a task that accesses `accesses` (at most one entry per datum; see `Access.merged`) and
    /// returns its id. Emits `.ready` if it can run at once, or `.finished(.cancelled)` if an input
    /// already failed or the workflow is aborted.
    public mutating func submit(
        _ accesses: some Collection<(datum: DatumID, direction: Direction)>,
        policy: FailurePolicy = .default,
        into out: inout [Directive]
    ) -> TaskID {
        let t = newTask()
        let ti = Int(t.raw)
        tasks[ti].policy = policy
        liveTasks += 1
        var resolved = scratch
        resolved.removeAll(keepingCapacity: true)
        defer { scratch = resolved }
        inputFailure = nil
        for (datum, direction) in accesses {
            ensureDatum(datum)
            guard let renamed = rename(datum, direction, by: t, effects: &out) else {
                preconditionFailure("task \(t) reads \(datum) before anything defined it")
            }
            resolved.append(
                ResolvedAccess(datum: datum, direction: direction, read: renamed.read, written: renamed.written))
        }
        precondition(resolved.count <= Int(UInt16.max), "task \(t) has \(resolved.count) accesses")
        tasks[ti].accessStart = arena.store(resolved)
        tasks[ti].accessCount = UInt16(resolved.count)
        if let cause = inputFailure ?? abortCause {
            cancel(t, cause: cause, into: &out)
        } else if tasks[ti].unmet == 0 {
            becomeRunnable(t, into: &out)
        } else {
            tasks[ti].state = .waiting
        }
        return t
    }

    // MARK: Running

    /// Moves up to `max` ready tasks (bounded by free slots) to running and appends them to `into`.
    /// Hands out nothing once the workflow is aborted.
    public mutating func take(max: Int, into taken: inout [TaskID]) {
        guard abortCause == nil else { return }
        var n = min(max, freeSlots)
        while n > 0, let t = readyQueue.popFirst() {
            tasks[Int(t.raw)].state = .running
            tasks[Int(t.raw)].attempts += 1
            running += 1
            taken.append(t)
            n -= 1
        }
    }

    /// A running task finished successfully; its written versions now hold their values.
    public mutating func complete(_ t: TaskID, into out: inout [Directive]) {
        let ti = Int(t.raw)
        precondition(tasks[ti].state == .running, "complete(\(t)) in state \(tasks[ti].state)")
        running -= 1
        finishAccesses(of: t, failure: nil, into: &out)
        retire(t, outcome: .completed, into: &out)
    }

    /// A running task failed with `message`. Retries it if its policy allows, else applies the
    /// policy's action. `label` names the task in the failure record (its name in the workflow).
    public mutating func fail(_ t: TaskID, label: String, message: String, into out: inout [Directive]) {
        let ti = Int(t.raw)
        precondition(tasks[ti].state == .running, "fail(\(t)) in state \(tasks[ti].state)")
        running -= 1
        let policy = tasks[ti].policy
        if policy.decision(afterFailedAttempts: Int(tasks[ti].attempts), aborting: abortCause != nil) == .retry {
            tasks[ti].state = .ready
            readyQueue.append(t)
            out.append(.retrying(t, attempt: Int(tasks[ti].attempts) + 1))
            return
        }
        let cause = FailureID(raw: UInt32(failures.count))
        failures.append(
            FailureRecord(task: label, message: message, attempts: Int(tasks[ti].attempts)))
        switch policy.action {
        case .ignore:
            for i in tasks[ti].accessRange {
                let a = arena[i]
                if let w = a.written, let r = a.read {
                    out.append(.passThrough(from: r, to: w))
                }
            }
            finishAccesses(of: t, failure: nil, into: &out)
            retire(t, outcome: .failedIgnored(cause), into: &out)
        case .fail:
            if abortCause == nil { abortCause = cause }
            finishAccesses(of: t, failure: cause, into: &out)
            retire(t, outcome: .failed(cause), into: &out)
            abortQueued(cause: cause, into: &out)
        case .cancelSuccessors:
            finishAccesses(of: t, failure: cause, into: &out)
            retire(t, outcome: .failed(cause), into: &out)
        }
    }

    // MARK: Internals

    mutating func ensureDatum(_ d: DatumID) {
        let need = Int(d.raw) + 1
        if data.count < need {
            data.reserveCapacity(Swift.max(need, data.count * 2))
            while data.count < need { data.append(DatumSlot()) }
        }
    }

    mutating func newTask() -> TaskID {
        if let raw = freeTasks.popLast() {
            return TaskID(raw: raw)
        }
        tasks.append(TaskSlot())
        return TaskID(raw: UInt32(tasks.count - 1))
    }

    mutating func newVersion(_ datum: DatumID, pendingWriters: UInt32) -> VersionID {
        var slot = VersionSlot()
        slot.datum = datum
        slot.state = .pending
        slot.pendingWriters = pendingWriters
        if let raw = freeVersions.popLast() {
            versions[Int(raw)] = slot
            return VersionID(raw: raw)
        }
        versions.append(slot)
        return VersionID(raw: UInt32(versions.count - 1))
    }

    /// Announces a version whose writers all finished (and whose group is closed).
    mutating func settleVersion(_ v: VersionID, into out: inout [Directive]) {
        let vi = Int(v.raw)
        guard versions[vi].state == .pending, versions[vi].pendingWriters == 0, !versions[vi].openGroup else {
            return
        }
        if let cause = versions[vi].failure {
            versions[vi].state = .failed
            out.append(.versionFailed(v, cause))
        } else {
            versions[vi].state = .available
            out.append(.versionAvailable(v))
        }
        let waiters = versions[vi].waiters
        let failure = versions[vi].failure
        versions[vi].waiters = []
        for w in waiters {
            let wi = Int(w.raw)
            tasks[wi].unmet -= 1
            switch tasks[wi].state {
            case .cancelledTombstone:
                if tasks[wi].unmet == 0 { freeSlot(w) }
            case .waiting:
                if let cause = failure ?? abortCause {
                    if failure != nil || tasks[wi].unmet == 0 { cancel(w, cause: cause, into: &out) }
                } else if tasks[wi].unmet == 0 {
                    becomeRunnable(w, into: &out)
                }
            default:
                preconditionFailure("\(w) waits on \(v) in state \(tasks[wi].state)")
            }
        }
        releaseIfDead(v, into: &out)
    }

    /// A task whose inputs are all available: take its commutative locks or wait for them.
    mutating func becomeRunnable(_ t: TaskID, into out: inout [Directive]) {
        let ti = Int(t.raw)
        for i in tasks[ti].accessRange where arena[i].direction == .commutative {
            let di = Int(arena[i].datum.raw)
            if let holder = data[di].lockHolder, holder != t {
                tasks[ti].state = .lockWait
                data[di].lockWaiters.append(t)
                return
            }
        }
        for i in tasks[ti].accessRange where arena[i].direction == .commutative {
            data[Int(arena[i].datum.raw)].lockHolder = t
        }
        tasks[ti].state = .ready
        readyQueue.append(t)
        out.append(.ready(t))
    }

    /// Releases `t`'s commutative locks and lets the next waiter of each try again.
    mutating func releaseLocks(of t: TaskID, into out: inout [Directive]) {
        for i in tasks[Int(t.raw)].accessRange where arena[i].direction == .commutative {
            let di = Int(arena[i].datum.raw)
            guard data[di].lockHolder == t else { continue }
            data[di].lockHolder = nil
            while data[di].lockHolder == nil, data[di].lockWaitHead < data[di].lockWaiters.count {
                let next = data[di].lockWaiters[data[di].lockWaitHead]
                data[di].lockWaitHead += 1
                if data[di].lockWaitHead == data[di].lockWaiters.count {
                    data[di].lockWaiters.removeAll(keepingCapacity: true)
                    data[di].lockWaitHead = 0
                }
                if tasks[Int(next.raw)].state == .lockWait {
                    if let cause = abortCause {
                        cancel(next, cause: cause, into: &out)
                    } else {
                        becomeRunnable(next, into: &out)
                    }
                }
            }
        }
    }

    /// Decrements reader counts of the versions `t` read and settles the versions it wrote
    /// (marking them failed with `failure` when given).
    mutating func finishAccesses(of t: TaskID, failure: FailureID?, into out: inout [Directive]) {
        releaseLocks(of: t, into: &out)
        for i in tasks[Int(t.raw)].accessRange {
            let a = arena[i]
            if let w = a.written {
                let wi = Int(w.raw)
                versions[wi].pendingWriters -= 1
                if let failure, versions[wi].failure == nil { versions[wi].failure = failure }
                settleVersion(w, into: &out)
            }
            if let r = a.read {
                versions[Int(r.raw)].pendingReaders -= 1
                releaseIfDead(r, into: &out)
            }
        }
    }

    /// Cancels a task that has not run: it never reads its inputs and its outputs fail with `cause`.
    mutating func cancel(_ t: TaskID, cause: FailureID, into out: inout [Directive]) {
        let ti = Int(t.raw)
        if tasks[ti].state == .ready {
            // Only reached when aborting; the ready queue is drained by abortQueued.
            preconditionFailure("cancel(\(t)) while ready")
        }
        finishAccesses(of: t, failure: cause, into: &out)
        liveTasks -= 1
        out.append(.finished(t, .cancelled(cause)))
        if tasks[ti].unmet == 0 {
            freeSlot(t)
        } else {
            tasks[ti].state = .cancelledTombstone
        }
    }

    /// After an abort: cancels every ready task and every task waiting for a lock.
    mutating func abortQueued(cause: FailureID, into out: inout [Directive]) {
        while let t = readyQueue.popFirst() {
            tasks[Int(t.raw)].state = .waiting
            cancel(t, cause: cause, into: &out)
        }
    }

    mutating func retire(_ t: TaskID, outcome: TaskOutcome, into out: inout [Directive]) {
        liveTasks -= 1
        out.append(.finished(t, outcome))
        freeSlot(t)
    }

    mutating func freeSlot(_ t: TaskID) {
        let ti = Int(t.raw)
        arena.release(start: tasks[ti].accessStart, count: Int(tasks[ti].accessCount))
        tasks[ti] = TaskSlot()
        freeTasks.append(t.raw)
    }

    /// Releases a version that is superseded, has no pending reader or writer and no pin.
    mutating func releaseIfDead(_ v: VersionID, into out: inout [Directive]) {
        let vi = Int(v.raw)
        let s = versions[vi]
        guard s.superseded, s.pendingReaders == 0, s.pins == 0,
            s.state == .available || s.state == .failed
        else { return }
        versions[vi] = VersionSlot()
        versions[vi].state = .free
        freeVersions.append(v.raw)
        out.append(.releaseVersion(v))
    }
}

/// The local graph's side of the renaming rule: versions are counted slots (writers, readers,
/// pins) that are released when dead and reused; a reader waits on a pending version.
extension DataflowGraph: VersionLedger {
    subscript(versionsOf datum: DatumID) -> DatumVersions {
        get { data[Int(datum.raw)].versions }
        set { data[Int(datum.raw)].versions = newValue }
    }

    mutating func makeVersion(of datum: DatumID, opensGroup: Bool, effects: inout [Directive]) -> VersionID {
        let v = newVersion(datum, pendingWriters: 1)
        if opensGroup { versions[Int(v.raw)].openGroup = true }
        return v
    }

    /// Counts `t` as a reader of `r`, and makes `t` wait if `r` is still pending.
    mutating func addReader(_ t: TaskID, of r: VersionID, datum: DatumID, effects: inout [Directive]) {
        let ri = Int(r.raw)
        versions[ri].pendingReaders += 1
        switch versions[ri].state {
        case .available: break
        case .pending:
            versions[ri].waiters.append(t)
            tasks[Int(t.raw)].unmet += 1
        case .failed:
            inputFailure = inputFailure ?? versions[ri].failure
        case .free, .released:
            preconditionFailure("task \(t) reads released version \(r) of \(datum)")
        }
    }

    mutating func addGroupWriter(_ group: VersionID) {
        versions[Int(group.raw)].pendingWriters += 1
    }

    mutating func holdGroupBase(_ base: VersionID) {
        versions[Int(base.raw)].pendingReaders += 1
    }

    mutating func supersede(_ old: VersionID, effects: inout [Directive]) {
        versions[Int(old.raw)].superseded = true
        releaseIfDead(old, into: &effects)
    }

    /// The group's version becomes available once its members finish; the group no longer holds
    /// its base.
    mutating func groupClosed(_ group: VersionID, base: VersionID, effects: inout [Directive]) {
        versions[Int(group.raw)].openGroup = false
        settleVersion(group, into: &effects)
        versions[Int(base.raw)].pendingReaders -= 1
        releaseIfDead(base, into: &effects)
    }
}
