/// A cluster workflow, for its whole life and on every peer. 64-bit, unique across peers without
/// coordination: the submitting peer draws it from its seeded generator (`PeerMachine`), so a
/// restarted peer never reuses one, and a seeded simulation replays the same ids.
public struct WorkflowID: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public let raw: UInt64
    public init(raw: UInt64) { self.raw = raw }
    public static func < (a: WorkflowID, b: WorkflowID) -> Bool { a.raw < b.raw }
    public var description: String { "w" + String(raw, radix: 16) }
}

/// One task of a cluster workflow: its workflow and its index in the plan (program order), so any
/// peer can tell which workflow (and owner record) a task belongs to.
public struct TaskRef: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public let workflow: WorkflowID
    public let index: UInt32
    public init(_ workflow: WorkflowID, _ index: Int) {
        self.workflow = workflow
        self.index = UInt32(truncatingIfNeeded: index)
    }
    public var task: Int { Int(index) }
    public static func < (a: TaskRef, b: TaskRef) -> Bool { (a.workflow, a.index) < (b.workflow, b.index) }
    /// One word into the hasher, not two: task and version references key the machines' busiest
    /// tables.
    public func hash(into hasher: inout Hasher) { hasher.combine(workflow.raw &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(index)) }
    public var description: String { "task \(index) of \(workflow)" }
}

/// One version of a datum of a cluster workflow: its workflow and its number in the plan.
public struct VersionRef: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public let workflow: WorkflowID
    public let index: UInt32
    public init(_ workflow: WorkflowID, _ index: Int) {
        self.workflow = workflow
        self.index = UInt32(truncatingIfNeeded: index)
    }
    public var version: Int { Int(index) }
    public static func < (a: VersionRef, b: VersionRef) -> Bool { (a.workflow, a.index) < (b.workflow, b.index) }
    public func hash(into hasher: inout Hasher) { hasher.combine(workflow.raw &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(index)) }
    public var description: String { "version \(index) of \(workflow)" }
}

/// One data value as the work protocol carries it: the same shape (size, modelled content,
/// BLAKE2b checksum verified on every transfer) as a persistent object's value.
public typealias DataValue = ObjectValue

/// An output a task produced, as reported to the workflow's owner (the value stays with the
/// executor: outputs stay where they were produced).
public struct OutputRecord: Sendable, Hashable, Codable {
    public var version: VersionRef
    public var bytes: UInt64
    public var checksum: UInt64

    public init(version: VersionRef, bytes: UInt64, checksum: UInt64) {
        self.version = version
        self.bytes = bytes
        self.checksum = checksum
    }

    /// What a result says it was computed from: the checksums of the task's input values, in
    /// order, folded into one word. The owner compares it with the values it handed out (a group
    /// member's result counts only if it read the group's current value).
    public static func basis(_ checksums: some Sequence<UInt64>) -> UInt64 {
        var h: UInt64 = 0x6261_7369_73
        for c in checksums { h = WorkflowPlan.mix(h ^ c) &+ 0x9E37 }
        return h
    }
}

/// One change of an owner's workflow record, replicated to its backups (and written to its shard),
/// from which a backup that takes over, or the owner after a restart, rebuilds the workflow.
public struct RecordEntry: Sendable, Hashable, Codable {
    public enum Kind: UInt8, Sendable, Hashable, Codable {
        /// Task `task` made `version`, held by `holder` with `checksum` (a task with no outputs
        /// logs one entry with `version == none`).
        case made = 0
        /// `version` was lost.
        case lost = 1
        /// A group's chain of partials was cut at `version`: it and the partials made after it no
        /// longer count, and their members run again.
        case cut = 2
        /// Task `task` failed and its failure was ignored: `version`, which it should have
        /// written, takes the value of version `source` (what the task read: an `inout` datum
        /// keeps its value, a member adds nothing to its group), held by `holder`.
        case passedThrough = 3
        /// Task `task` failed and its failure was ignored: `version` (an `out`) has no value.
        case absent = 4
        /// Task `task` failed for good (`cancel-successors`): what it writes fails, and so do the
        /// tasks that read it.
        case failed = 5
        /// Attempt `source` of task `task` failed (logged for every failed attempt, so an owner
        /// that takes the workflow over goes on counting its retries where the last one stopped).
        case attemptFailed = 6
    }
    public static let none = UInt32.max
    public var kind: Kind
    /// The task's index in the plan (`none` for a loss or a cut).
    public var task: UInt32
    /// The version's number in the plan, or `none`.
    public var version: UInt32
    public var holder: PeerID
    public var checksum: UInt64
    public var bytes: UInt64
    /// For `passedThrough`: the version whose value `version` takes; for `attemptFailed`: the
    /// attempt's number.
    public var source: UInt32
    /// For `attemptFailed`: why it failed, so an owner that takes over reports the cause. (Kept
    /// in an array, empty for every other entry, so an entry stays one word larger, not five.)
    private var failures: [TaskFailure]
    public var failure: TaskFailure? { failures.first }

    public init(
        _ kind: Kind = .made, task: UInt32, version: UInt32, holder: PeerID, checksum: UInt64, bytes: UInt64,
        source: UInt32 = RecordEntry.none, failure: TaskFailure? = nil
    ) {
        self.kind = kind
        self.task = task
        self.version = version
        self.holder = holder
        self.checksum = checksum
        self.bytes = bytes
        self.source = source
        self.failures = failure.map { [$0] } ?? []
    }

    /// An entry about `version` alone (`lost`, `cut`).
    public static func about(_ kind: Kind, version: Int) -> RecordEntry {
        RecordEntry(kind, task: none, version: UInt32(version), holder: PeerID(raw: .max), checksum: 0, bytes: 0)
    }
}

/// Why a task failed, as its executor reports it to the owner and the owner to the program:
/// the error text, and for an exec task its exit status and the tail of its standard error.
/// Bounded (`maxText` bytes each), so a failure report is a small message.
public struct TaskFailure: Error, Sendable, Hashable, Codable, CustomStringConvertible {
    public static let maxText = 4_096
    public private(set) var message: String
    public private(set) var exitStatus: Int32?
    public private(set) var stderrTail: String

    public init(message: String, exitStatus: Int32? = nil, stderrTail: String = "") {
        self.message = Self.bounded(message, keepEnd: false)
        self.exitStatus = exitStatus
        self.stderrTail = Self.bounded(stderrTail, keepEnd: true)
    }

    /// The bytes of its texts (what a message carrying it grows by).
    public var textBytes: Int { message.utf8.count + stderrTail.utf8.count }

    static func bounded(_ text: String, keepEnd: Bool) -> String {
        let utf8 = Array(text.utf8)
        guard utf8.count > maxText else { return text }
        let kept = keepEnd ? utf8.suffix(maxText) : utf8.prefix(maxText)
        return String(decoding: kept, as: UTF8.self)
    }

    public var description: String {
        var s = message
        if let exitStatus { s += " (exit status \(exitStatus))" }
        if !stderrTail.isEmpty { s += "; stderr: " + stderrTail }
        return s
    }
}

/// A task's failure as the workflow's owner applied it: reported with the workflow's end.
public struct FailureReport: Sendable, Hashable, Codable, CustomStringConvertible {
    public var task: Int
    public var label: String
    public var failure: TaskFailure
    public var attempts: Int
    /// `ignore` or `cancelSuccessors` (a `fail` ends the workflow with the failure as its reason).
    public var action: FailureAction

    public init(task: Int, label: String, failure: TaskFailure, attempts: Int, action: FailureAction) {
        self.task = task
        self.label = label
        self.failure = failure
        self.attempts = attempts
        self.action = action
    }

    public var description: String { "task '\(label)' failed after \(attempts) attempts (\(action)): \(failure)" }
}

/// Messages of the work protocol: data transfer, task results and the replicated owner record.
/// The network may drop, duplicate or reorder any of them: fetches and record updates are
/// idempotent, results are deduplicated by the owner's task states, acknowledgements are
/// idempotent.
public enum WorkMessage: Sendable {
    /// "Send me your copy of `version`."
    case fetch(version: VersionRef, requestID: UInt64)
    case data(version: VersionRef, requestID: UInt64, value: DataValue)
    /// The peer does not hold `version` (an authoritative loss: it was restarted without its store).
    case noData(version: VersionRef, requestID: UInt64)
    /// Thief to owner: it received these granted tasks (ends their grant lease).
    case started(tasks: [TaskRef])
    /// Executor to owner: the task ran on inputs whose checksums fold to `basis`
    /// (`OutputRecord.basis`); its outputs stay with the executor.
    case result(task: TaskRef, outputs: [OutputRecord], basis: UInt64)
    /// Executor to owner: attempt `attempt` of the task failed (acknowledged by `resultAck`).
    /// (Indirect: a failure is rare, and its text would make every message of the protocol larger.)
    indirect case failure(task: TaskRef, attempt: UInt16, failure: TaskFailure)
    /// Owner to executor: the results (or failures) of these tasks arrived; the executor stops
    /// sending them again. Batched per executor: sent `WorkSettings.ackDelay` after the first
    /// result it acknowledges, or at once when it holds `WorkSettings.maxAckBatch`.
    case resultAck(tasks: [TaskRef])
    /// Owner to executor: "what became of these tasks I believe you run?" (an audit of tasks
    /// assigned for longer than `auditInterval`). The executor answers `started` for those it
    /// runs or queues, `result` for those it finished (from its recent results), and `unknown`
    /// for the rest, which the owner queues again.
    case query(tasks: [TaskRef])
    case unknown(tasks: [TaskRef])
    /// Executor to owner: `version` could not be fetched from `holder` (`definite`: the holder said
    /// it does not have it; otherwise every attempt timed out).
    case inputLost(task: TaskRef, version: VersionRef, holder: PeerID, definite: Bool)
    /// Owner to backup: the workflow's plan and initial data; the backup keeps the record.
    /// `backups` in takeover order (the first live one takes over).
    indirect case recordCreate(workflow: WorkflowID, owner: PeerID, backups: [PeerID], plan: WorkflowPlan, initial: [DataValue])
    /// Owner to backup: one part of a record create too large for one message (a plan of more
    /// than `WorkSettings.maxRecordPart` calls, or as many data). The backup keeps the parts until
    /// it has them all, then acts as on `recordCreate` with the plan they make.
    indirect case recordPart(workflow: WorkflowID, owner: PeerID, part: RecordPart)
    /// Owner to backup: entries `first..<first+entries.count` of the record's log.
    case recordAppend(workflow: WorkflowID, owner: PeerID, first: Int, entries: [RecordEntry])
    /// Backup to owner: it holds the log up to `count` entries (and the create); -1
    /// (`RecordAck.noRecord`): it holds no record of the workflow (the owner sends the create
    /// again); -2 (`RecordAck.refused`): it refuses to keep one (it keeps `maxBackupRecords`
    /// already), and the owner chooses another backup in its place.
    case recordAck(workflow: WorkflowID, count: Int)
    /// The workflow ended: holders may drop its intermediate versions; backups drop the record.
    case release(workflow: WorkflowID)
    /// Backup to owner, every `ownerCheckInterval`: "do you still own this workflow?" An owner
    /// that restarted without its store answers `notOwner`, and the backups take it over.
    case ownerCheck(workflow: WorkflowID)
    case notOwner(workflow: WorkflowID)

    /// Estimated encoded size, for a simulated network's bandwidth model (values count their
    /// bytes: that is what moving data costs).
    public var byteSize: Int {
        switch self {
        case .fetch, .noData, .recordAck, .release, .ownerCheck, .notOwner: return 32
        case .data(_, _, let value): return 40 + Int(clamping: value.bytes)
        case .started(let tasks), .query(let tasks), .unknown(let tasks), .resultAck(let tasks): return 16 + 8 * tasks.count
        case .result(_, let outputs, _): return 32 + 24 * outputs.count
        case .failure(_, _, let failure): return 40 + failure.textBytes
        case .inputLost: return 40
        case .recordCreate(_, _, _, let plan, let initial):
            return 64 + 24 * plan.taskCount + 8 * plan.inputs.count
                + initial.reduce(0) { $0 + 24 + Int(clamping: $1.bytes) }
        case .recordAppend(_, _, _, let entries):
            return 32 + 36 * entries.count
                + entries.reduce(0) { $0 + ($1.failure.map { 8 + $0.textBytes } ?? 0) }
        case .recordPart(_, _, let part):
            return 96 + 24 * part.tasks.count + 16 * part.marks.count
                + part.initial.reduce(0) { $0 + 24 + Int(clamping: $1.bytes) }
        }
    }
}

/// Part `index` of `parts` of a record create (`WorkMessage.recordPart`): the plan's header, calls
/// `firstTask..<firstTask + tasks.count`, the marks before them, and the initial values of data
/// `firstDatum..<firstDatum + initial.count`. Every part repeats the header, so the parts may
/// arrive in any order; together they tile the calls and the data exactly.
public struct RecordPart: Sendable, Hashable {
    public var index: Int
    public var parts: Int
    public var backups: [PeerID]
    public var name: String
    public var dataCount: Int
    public var initialBytes: UInt64
    public var taskCount: Int
    public var firstTask: Int
    public var tasks: [WorkflowTaskSpec]
    public var marks: [WorkflowSpec.Mark]
    public var firstDatum: Int
    public var initial: [DataValue]

    public init(
        index: Int, parts: Int, backups: [PeerID], name: String, dataCount: Int, initialBytes: UInt64, taskCount: Int,
        firstTask: Int, tasks: [WorkflowTaskSpec], marks: [WorkflowSpec.Mark], firstDatum: Int, initial: [DataValue]
    ) {
        self.index = index
        self.parts = parts
        self.backups = backups
        self.name = name
        self.dataCount = dataCount
        self.initialBytes = initialBytes
        self.taskCount = taskCount
        self.firstTask = firstTask
        self.tasks = tasks
        self.marks = marks
        self.firstDatum = firstDatum
        self.initial = initial
    }

    /// The parts of a record create whose parts hold at most `maxPart` calls and data each (one
    /// part when it fits).
    public static func split(plan: WorkflowPlan, backups: [PeerID], initial: [DataValue], maxPart: Int) -> [RecordPart] {
        let n = max(1, maxPart)
        let taskCount = plan.taskCount, dataCount = initial.count
        let parts = max(1, (taskCount + n - 1) / n, (dataCount + n - 1) / n)
        var marks = Array(repeating: [WorkflowSpec.Mark](), count: parts)
        for mark in plan.marks { marks[min(max(0, Int(mark.beforeTask)) / n, parts - 1)].append(mark) }
        return (0..<parts).map { k in
            let tasks = min(k * n, taskCount)..<min((k + 1) * n, taskCount)
            let data = min(k * n, dataCount)..<min((k + 1) * n, dataCount)
            return RecordPart(
                index: k, parts: parts, backups: backups, name: plan.name, dataCount: plan.dataCount,
                initialBytes: plan.initialBytes, taskCount: taskCount, firstTask: tasks.lowerBound,
                tasks: plan.calls(tasks), marks: marks[k], firstDatum: data.lowerBound, initial: Array(initial[data]))
        }
    }

    /// The spec and initial values `parts` (one of each index, in any order) make, or nil when
    /// they do not tile the calls and data of their header exactly.
    public static func assemble(_ parts: [RecordPart]) -> (spec: WorkflowSpec, initial: [DataValue])? {
        guard let first = parts.first, parts.count == first.parts else { return nil }
        let sorted = parts.sorted { $0.index < $1.index }
        var tasks: [WorkflowTaskSpec] = [], marks: [WorkflowSpec.Mark] = [], initial: [DataValue] = []
        tasks.reserveCapacity(first.taskCount)
        initial.reserveCapacity(first.dataCount)
        for (k, part) in sorted.enumerated() {
            guard part.index == k, part.parts == first.parts, part.name == first.name, part.dataCount == first.dataCount,
                part.initialBytes == first.initialBytes, part.taskCount == first.taskCount, part.backups == first.backups,
                part.firstTask == tasks.count, part.firstDatum == initial.count
            else { return nil }
            tasks += part.tasks
            marks += part.marks
            initial += part.initial
        }
        guard tasks.count == first.taskCount, initial.count == first.dataCount else { return nil }
        return (
            WorkflowSpec(name: first.name, dataCount: first.dataCount, initialBytes: first.initialBytes, tasks: tasks, marks: marks),
            initial
        )
    }
}

/// The counts of a `recordAck` that are not a log length.
public enum RecordAck {
    /// "I hold no record of this workflow": the owner sends the create again.
    public static let noRecord = -1
    /// "I will not keep a record of this workflow" (the backup holds `maxBackupRecords` records of
    /// other owners' workflows): the owner takes the next backup in rendezvous order instead.
    public static let refused = -2
}

/// Timers of the work machine; each comes back as `.timer(_)`. Stale ones are ignored.
public enum WorkTimer: Sendable, Hashable {
    /// Executor: fetches whose answer is `fetchTimeout` late are sent again (one sweep for all
    /// of them, on a grid of an eighth of the timeout).
    case fetchSweep
    /// Executor: results unacknowledged for `resultRetry` are sent again (one sweep, likewise).
    case resultSweep
    /// Thief: confirm (`started`) the granted tasks not finished a quarter of `grantLease` after
    /// they came (one sweep, on a grid of an eighth of that).
    case confirmSweep
    /// Owner: send the acknowledgements of results gathered for `ackDelay`.
    case ackFlush
    /// Owner: re-queue granted tasks whose thief never confirmed them.
    case leaseCheck
    /// Owner: ask executors about tasks assigned to them for a long time.
    case audit
    /// Backup: the owner of `workflow` died and the backups before this one have not taken it
    /// over (they may have lost the record): take it over if still nobody has.
    case takeoverCheck(workflow: WorkflowID)
    /// Backup: ask the owners of the records kept here whether they still own them.
    case ownerCheck
    /// Owner: send unacknowledged record entries to the backups.
    case recordFlush
}

/// Tunables of the work machine. Every queue, retry and batch is bounded.
public struct WorkSettings: Sendable, Hashable {
    /// Tasks this peer runs at once.
    public var slots: Int
    /// Jobs handed to the shell beyond `slots`: they wait in its queue for a body thread, their
    /// inputs fetched meanwhile, so a thread that finishes a body starts the next without waiting
    /// for the machine (tasks of microseconds, where the hand-over costs more than the body).
    /// They are this peer's, not offered to thieves, and not counted as free slots. Default 0
    /// (the simulator's slot model); a real peer's `queue-depth`. 0...65536.
    public var prefetch: Int
    /// A fetch without answer after this long (at most an eighth more: one sweep checks them all,
    /// `SweptDeadlines`) is sent again, up to `maxFetchAttempts` in all.
    public var fetchTimeout: Interval
    public var maxFetchAttempts: Int
    /// A result without acknowledgement is sent again after this long (at most an eighth more),
    /// up to `maxResultAttempts`.
    public var resultRetry: Interval
    public var maxResultAttempts: Int
    /// A granted task whose thief has not confirmed it (`started`) or sent its result after this
    /// long is queued again (a lost grant); a late duplicate run is discarded by the owner. A
    /// thief confirms only the tasks it has not finished a quarter of this after they came (at
    /// most an eighth of that later): a short task's result is its confirmation, and saves a
    /// message. Peers are expected to share this setting.
    public var grantLease: Interval
    /// The owner asks an executor about a task assigned to it for longer than this (a result
    /// lost for good, an executor restarted without the owner noticing), at most
    /// `maxAuditBatch` tasks per executor per audit.
    public var auditInterval: Interval
    public var maxAuditBatch: Int
    /// Owner: how long it gathers acknowledgements of results for one executor before it sends
    /// them in one message (0: each at once), and most in one message. An executor sends a
    /// result again only after `resultRetry`, so a delay well below it costs nothing; a thousand
    /// peers running 10 ms tasks on 4 slots each send their owner about 4 results per 10 ms each,
    /// so 20 ms gathers about 8. 0...1 s and 1...1,024.
    public var ackDelay: Interval
    public var maxAckBatch: Int
    /// Executor: how many recent results it remembers to answer an owner's audit.
    public var resultMemory: Int
    /// Owner: how many ended workflows it remembers (their ids only), to tell a backup that asks
    /// about one to drop its record.
    public var retiredMemory: Int
    /// Most ready tasks the owner offers to a thief at once (the victim's window; it builds no more
    /// than the thief asked for plus what it keeps for itself).
    public var stealWindow: Int
    /// A task that failed to start this many times (inputs unreachable) fails its workflow.
    public var maxTaskAttempts: Int
    /// Copies of the owner record: the owner plus `recordReplicas - 1` backups (rendezvous order).
    public var recordReplicas: Int
    /// When the owner dies, the first live backup takes over at once; the k-th waits k times this
    /// for a new owner to announce itself (a record create), then takes over itself.
    public var takeoverGrace: Interval
    /// How often a backup asks a live owner whether it still owns the workflow.
    public var ownerCheckInterval: Interval
    /// Owner record entries are sent to backups at most this often, at most `maxRecordBatch` a time.
    public var recordFlushInterval: Interval
    public var maxRecordBatch: Int
    /// Backup: most records of other owners' workflows kept here. A create for one more is refused
    /// (`WorkCounters.recordsRefused`) with `recordAck(count: RecordAck.refused)`, and its owner
    /// chooses another backup. 1...1,048,576.
    public var maxBackupRecords: Int
    /// Executor: most granted tasks waiting here for a slot. A granted task beyond it is not
    /// taken (`WorkCounters.grantsRefused`): no `started` goes to its owner, whose grant lease
    /// gives it back to the owner's ready queue, as for a lost grant. A thief asks for no more
    /// than its free slots, so only late or made-up grants reach it. 1...65,536.
    public var maxGrantedQueue: Int
    /// Most calls, and most data, one record message carries: a record create of a larger plan
    /// travels in parts (`WorkMessage.recordPart`), at most `maxRecordParts` of them, so the
    /// largest record a backup takes has `maxRecordPart × maxRecordParts` calls. The default,
    /// 1,048,576 calls, is 24-60 MB on the wire: under a 64 MiB message limit, and a million-task
    /// plan still travels whole (parts cost the owner and each backup a copy of the calls, about
    /// 20 % of the million-task scenario's run time when it was split in 16). 1...1,048,576 and
    /// 1...65,536.
    public var maxRecordPart: Int
    public var maxRecordParts: Int

    public init() {
        slots = 4
        prefetch = 0
        fetchTimeout = .milliseconds(500)
        maxFetchAttempts = 3
        resultRetry = .milliseconds(500)
        maxResultAttempts = 8
        grantLease = .seconds(2)
        stealWindow = 16
        auditInterval = .seconds(2)
        maxAuditBatch = 256
        resultMemory = 4_096
        ackDelay = .milliseconds(20)
        maxAckBatch = 1_024
        retiredMemory = 4_096
        maxTaskAttempts = 20
        recordReplicas = 3
        takeoverGrace = .seconds(2)
        ownerCheckInterval = .seconds(5)
        recordFlushInterval = .milliseconds(20)
        maxRecordBatch = 4_096
        maxBackupRecords = 4_096
        maxGrantedQueue = 1_024
        maxRecordPart = 1 << 20
        maxRecordParts = 1_024
    }

    /// Most versions one task may write (its accesses): what a result may name.
    public static let maxOutputsPerTask = Int(UInt16.max)

    public var clamped: WorkSettings {
        var s = self
        s.slots = min(max(1, slots), 4_096)
        s.prefetch = min(max(0, prefetch), 65_536)
        s.fetchTimeout = max(.microseconds(1), fetchTimeout)
        s.maxFetchAttempts = min(max(1, maxFetchAttempts), 16)
        s.resultRetry = max(.microseconds(1), resultRetry)
        s.maxResultAttempts = min(max(1, maxResultAttempts), 64)
        s.grantLease = max(.microseconds(1), grantLease)
        s.stealWindow = min(max(1, stealWindow), 4_096)
        s.auditInterval = max(.milliseconds(1), auditInterval)
        s.maxAuditBatch = min(max(1, maxAuditBatch), 65_536)
        s.resultMemory = min(max(1, resultMemory), 1 << 20)
        s.retiredMemory = min(max(1, retiredMemory), 1 << 20)
        s.maxTaskAttempts = min(max(1, maxTaskAttempts), 1_000)
        s.recordReplicas = min(max(1, recordReplicas), 8)
        s.takeoverGrace = max(.milliseconds(1), takeoverGrace)
        s.ownerCheckInterval = max(.milliseconds(1), ownerCheckInterval)
        s.recordFlushInterval = max(.microseconds(1), recordFlushInterval)
        s.ackDelay = min(max(.zero, ackDelay), .seconds(1))
        s.maxAckBatch = min(max(1, maxAckBatch), 1_024)
        s.maxRecordBatch = min(max(1, maxRecordBatch), 65_536)
        s.maxBackupRecords = min(max(1, maxBackupRecords), 1 << 20)
        s.maxGrantedQueue = min(max(1, maxGrantedQueue), 65_536)
        s.maxRecordPart = min(max(1, maxRecordPart), 1 << 20)
        s.maxRecordParts = min(max(1, maxRecordParts), 65_536)
        return s
    }
}

/// What the work machine has done, for reports and checkers.
public struct WorkCounters: Sendable, Hashable, Codable {
    /// Tasks this peer ran (bodies executed).
    public var tasksRun = 0
    /// Owner: results applied (first result of a task's current run).
    public var resultsApplied = 0
    /// Owner: results discarded because the task was already done.
    public var duplicateResults = 0
    /// Owner: done tasks re-opened because an output they made was lost (lineage).
    public var tasksRecomputed = 0
    /// Owner: tasks queued again after their executor died or a grant lease expired.
    public var tasksRequeued = 0
    /// Owner: failed attempts run again, and tasks whose failure was applied (ignored or for
    /// good; a `fail` ends the workflow).
    public var tasksRetried = 0
    public var tasksFailed = 0
    /// Owner: results refused because they do not name the task's outputs, or because a group
    /// member ran on a value that is no longer its group's current one.
    public var resultsRefused = 0
    /// Messages from other peers dropped as out of bounds (`WorkMachine.acceptable`).
    public var messagesDropped = 0
    /// Fetches sent and bytes received by fetches.
    public var fetches = 0
    public var bytesFetched: UInt64 = 0
    /// Received values whose checksum did not match (dropped and fetched again).
    public var corruptTransfers = 0
    /// Owner: audit queries sent, and tasks queued again because their executor did not know them.
    public var auditQueries = 0
    public var tasksUnknown = 0
    /// Owner: workflows taken over after their owner died.
    public var takeovers = 0
    /// Owner: workflows it stopped because another owner ended them (across a partition, both
    /// sides owned one); executor: granted or fetching tasks dropped because their workflow ended.
    public var workflowsEndedElsewhere = 0
    public var tasksDroppedAfterEnd = 0
    /// Backup: record creates refused because this peer keeps `maxBackupRecords` records.
    public var recordsRefused = 0
    /// Executor: granted tasks not taken because `maxGrantedQueue` tasks wait here already.
    public var grantsRefused = 0

    public init() {}

    /// Adds another peer's counters (a run's totals).
    public mutating func add(_ o: WorkCounters) {
        tasksRun += o.tasksRun
        resultsApplied += o.resultsApplied
        duplicateResults += o.duplicateResults
        tasksRecomputed += o.tasksRecomputed
        tasksRequeued += o.tasksRequeued
        resultsRefused += o.resultsRefused
        messagesDropped += o.messagesDropped
        tasksRetried += o.tasksRetried
        tasksFailed += o.tasksFailed
        fetches += o.fetches
        bytesFetched &+= o.bytesFetched
        corruptTransfers += o.corruptTransfers
        auditQueries += o.auditQueries
        tasksUnknown += o.tasksUnknown
        takeovers += o.takeovers
        workflowsEndedElsewhere += o.workflowsEndedElsewhere
        tasksDroppedAfterEnd += o.tasksDroppedAfterEnd
        recordsRefused += o.recordsRefused
        grantsRefused += o.grantsRefused
    }
}

/// An owned workflow's tasks by state, for a client's progress display.
public struct WorkflowProgress: Sendable, Hashable {
    public var total: Int
    public var done = 0
    public var failed = 0
    public var ready = 0
    public var running = 0
    /// Running tasks by the peer they run at, sorted by peer.
    public var runningAt: [(peer: PeerID, tasks: Int)] = []
    public init(total: Int) { self.total = total }
    public static func == (a: Self, b: Self) -> Bool {
        a.total == b.total && a.done == b.done && a.failed == b.failed && a.ready == b.ready && a.running == b.running
            && a.runningAt.elementsEqual(b.runningAt) { $0.peer == $1.peer && $0.tasks == $1.tasks }
    }
    public func hash(into h: inout Hasher) {
        h.combine(total)
        h.combine(done)
        h.combine(running)
    }
}
