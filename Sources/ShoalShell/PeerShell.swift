import ShoalCore

/// The one directive interpreter (design.md, "One workflow model, two shells"): it runs a peer's
/// `PeerMachine` and carries out its directives for both shells, the simulator (virtual clock,
/// simulated network, `MemoryShard`) and the real peer (`ShoalPeer`: clock, ZeroMQ, `LMDBShard`).
/// What the swarm seeds prove is what a real peer runs, because the part of a shell that decides
/// anything lives here once:
///
/// - the bytes a message carries (`attachments`) and the check of the bytes that arrive with one
///   (a value whose bytes do not match its digest is handed to the machine with a broken checksum,
///   so it fetches again; a record whose initial data do not match is dropped, as if lost);
/// - what is written to the shard, and before what (an object or a record change is on disk
///   before the directives after it are carried out: the machine's acknowledgements follow it);
/// - a task's input bytes before its body runs, and its outputs' bytes after (bounded by
///   `maxHeldBytes`);
/// - the bytes dropped when a workflow ends here.
///
/// What differs between the shells is behind `PeerShellHost`: how a message travels, how a timer
/// fires, where a body runs, and what a user (or the simulator's checker) is told.
public final class PeerShell {
    public private(set) var machine: PeerMachine
    public let shard: any KeyValueShard
    /// The bytes of the values and objects this peer holds.
    public var payloads: PayloadStore
    /// The most bytes of values held in memory; a task whose outputs would pass it fails with the
    /// reason (a bound, like every queue).
    public var maxHeldBytes: Int
    public private(set) var counters = ShellCounters()
    private var directives: [PeerDirective] = []

    public var id: PeerID { machine.id }

    /// A shell for `machine` over `shard`: the payloads the shard persisted are held again.
    public init(machine: PeerMachine, shard: any KeyValueShard, maxHeldBytes: Int = Int.max) throws {
        self.machine = machine
        self.shard = shard
        self.maxHeldBytes = maxHeldBytes
        payloads = try PayloadStore(shard: shard)
    }

    /// Starts the machine, then hands it what the shard kept from an earlier run of this peer:
    /// its persistent objects and its workflow records. Returns how many of each.
    @discardableResult
    public func start<H: PeerShellHost>(seeds: [PeerID], now: Instant, host: inout H) -> (objects: Int, records: Int) {
        step(.start(seeds: seeds), now: now, host: &host)
        let objects: [StoredObject]
        let records: [RecoveredRecord]
        do {
            objects = try shard.scan(.objects, prefix: [], after: nil, limit: Int.max).compactMap { ObjectRecord.decode($0) }
            records = RecordCodec.records(try shard.scan(.workflows, prefix: [], after: nil, limit: Int.max))
        } catch {
            host.report(.storeFailed("reading the shard at start: \(error)"), at: self)
            return (0, 0)
        }
        if !objects.isEmpty { step(.recovered(objects), now: now, host: &host) }
        if !records.isEmpty { step(.recoveredRecords(records), now: now, host: &host) }
        return (objects.count, records.count)
    }

    /// A new workflow id drawn by this peer's machine (`PeerMachine.newWorkflowID`).
    public func newWorkflowID() -> WorkflowID { machine.newWorkflowID() }

    /// Hands `event` to the machine and carries out its directives in order.
    public func step<H: PeerShellHost>(_ event: PeerEvent, now: Instant, host: inout H) {
        var out: [PeerDirective] = []
        swap(&out, &directives)
        out.removeAll(keepingCapacity: true)
        machine.on(event, now: now, into: &out)
        interpret(out, host: &host)
        swap(&out, &directives)
    }

    /// A message from `from` with the bytes that came with it: checked, then handed to the machine.
    public func receive<H: PeerShellHost>(
        _ message: PeerMessage, payloads attached: [[UInt8]], from: PeerID, now: Instant, host: inout H
    ) {
        if let checked = check(message, attached, host: host) {
            step(.message(checked, from: from), now: now, host: &host)
        }
        // Its machine dropped the ended workflow's versions: the shell drops their bytes.
        if case .work(.release(let wf)) = message { release(wf, host: &host) }
    }

    /// The outcome of a body the host ran for `job`: its outputs' bytes are kept (within
    /// `maxHeldBytes`) and become the values the machine is told of, or the failure stands.
    public func finish<H: PeerShellHost>(
        _ job: TaskJob, outputs: Result<[[UInt8]], TaskFailure>, host: inout H
    ) -> Result<[DataValue], TaskFailure> {
        guard case .success(let bytes) = outputs else { return outputs.map { _ in [] } }
        let values = bytes.map(PayloadDigest.value(of:))
        let adding = payloads.bytesToKeep(values)
        let held = payloads.heldBytes
        guard held + adding <= maxHeldBytes else {
            counters.payloadsRefused += 1
            host.report(.heldBytesRefused(task: job.task), at: self)
            return .failure(
                TaskFailure(
                    message: "\(id) holds \(held) bytes of values; this task's \(adding) more would pass its limit (maxHeldBytes \(maxHeldBytes))"))
        }
        for (b, value) in zip(bytes, values) { payloads.keep(b, as: value, for: job.task.workflow) }
        return .success(values)
    }

    // MARK: The directive switch

    private func interpret<H: PeerShellHost>(_ directives: [PeerDirective], host: inout H) {
        for d in directives {
            switch d {
            case .send(let message, let to):
                host.send(message, payloads: attachments(of: message), to: to, from: self)
            case .schedule(let timer, let after):
                host.schedule(timer, after: after, at: self)
            case .statusChanged(let peer, let status):
                host.report(.statusChanged(peer, status), at: self)
            case .execute(let task, let key, let inputs, let attempt, let call):
                host.execute(job(task, catalogueKey: key, inputs: inputs, attempt: attempt, call: call, host: &host), at: self)
            case .barrierReached(let wf, let rid):
                host.report(.barrierReached(workflow: wf, requestID: rid), at: self)
            case .waited(let wf, let rid, let value):
                host.report(.waited(workflow: wf, requestID: rid, value: value), at: self)
            case .workflowCompleted(let wf, let results, let failures):
                host.report(.completed(workflow: wf, results: results, failures: failures), at: self)
                release(wf, host: &host)  // the owner drops the workflow's data as it ends
            case .workflowFailed(let wf, let reason, let cause):
                host.report(.failed(workflow: wf, reason: reason, cause: cause), at: self)
                release(wf, host: &host)
            case .resultApplied(let task):
                host.report(.resultApplied(task: task), at: self)
            case .taskReopened(let task):
                host.report(.taskReopened(task: task), at: self)
            case .tookOver(let wf, let from):
                host.report(.tookOver(workflow: wf, from: from), at: self)
            case .persist(let o):
                // On disk before the next directive is carried out (the machine's ack).
                do {
                    try shard.put(ObjectRecord.key(o.key), ObjectRecord.encode(o), in: .objects)
                    try payloads.persistObject(o.value.content)
                } catch {
                    host.report(.storeFailed("persisting object \(o.key): \(error)"), at: self)
                    return
                }
            case .persistRecord(let write):
                do { try persist(write) } catch {
                    host.report(.storeFailed("writing a workflow record: \(error)"), at: self)
                    return
                }
            case .putAcknowledged(let rid, let key, let version):
                host.report(.putAcknowledged(requestID: rid, key: key, version: version), at: self)
            case .putFailed(let rid, let key, let reason):
                host.report(.putFailed(requestID: rid, key: key, reason: reason), at: self)
            case .getResult(let rid, let object):
                host.report(.getResult(requestID: rid, object: object), at: self)
            case .getFailed(let rid, let key, let reason):
                host.report(.getFailed(requestID: rid, key: key, reason: reason), at: self)
            }
        }
    }

    private func persist(_ write: RecordWrite) throws {
        if case .create(let wf, _, _, _, let initial) = write { try payloads.persist(initial, for: wf) }
        if let (key, value) = RecordCodec.entry(write) {
            try shard.put(key, value, in: .workflows)
        } else if case .drop(let wf) = write {
            var batch = WriteBatch()
            for e in try shard.scan(.workflows, prefix: RecordCodec.prefix(wf), after: nil, limit: Int.max) {
                batch.delete(e.key, in: .workflows)
            }
            try shard.apply(batch)
        }
    }

    private func release<H: PeerShellHost>(_ workflow: WorkflowID, host: inout H) {
        do { try payloads.release(workflow) } catch {
            host.report(.storeFailed("dropping the values of workflow \(workflow): \(error)"), at: self)
        }
    }

    /// A task to run: a real body with its inputs' bytes as this peer holds them, or a modelled
    /// one (a scenario's workflow, simulator only).
    private func job<H: PeerShellHost>(
        _ task: TaskRef, catalogueKey: UInt64, inputs: [DataValue?], attempt: Int, call: ExecutableCall?, host: inout H
    ) -> TaskJob {
        var job = TaskJob(task: task, catalogueKey: catalogueKey, inputs: inputs, attempt: attempt, call: call, inputBytes: nil)
        guard host.hasRealBytes(task.workflow) else { return job }
        guard call != nil else {
            host.report(.violation(kind: "call missing", text: "\(id) was handed task \(task.task) without its body"), at: self)
            job.inputBytes = .failure(TaskFailure(message: "task \(task.task) reached \(id) without its body"))
            return job
        }
        var bytes: [[UInt8]?] = []
        bytes.reserveCapacity(inputs.count)
        for value in inputs {
            guard let value else {
                bytes.append(nil)
                continue
            }
            guard let b = payloads.bytes(of: value) else {
                // The machine had the value (it checked its reference): the shell must have its bytes.
                host.report(
                    .violation(kind: "payload missing", text: "\(id) runs task \(task.task) without the bytes of an input it holds"),
                    at: self)
                job.inputBytes = .failure(TaskFailure(message: "an input's bytes are missing on \(id)"))
                return job
            }
            bytes.append(b)
        }
        job.inputBytes = .success(bytes)
        return job
    }

    // MARK: Payloads on messages

    /// The bytes to send with `message`: those of the real values it carries (a fetched version, a
    /// record's initial data, an object), as this peer holds them.
    func attachments(of message: PeerMessage) -> [[UInt8]] {
        // Read in place: most messages carry no value, and most simulated runs have no real bytes.
        if case .placement(let m) = message, !payloads.objects.isEmpty, let o = Self.object(in: m) {
            return payloads.objects[o.value.content].map { [$0] } ?? []
        }
        guard !payloads.memory.isEmpty, case .work(let work) = message else { return [] }
        if case .data(_, _, let value) = work { return payloads.bytes(of: value).map { [$0] } ?? [] }
        guard let initial = Self.initialData(of: work) else { return [] }
        let found = initial.compactMap { payloads.bytes(of: $0) }
        return found.count == initial.count ? found : []
    }

    /// What the machine is handed of a received message (nil: nothing, it is dropped as if lost).
    private func check<H: PeerShellHost>(_ message: PeerMessage, _ attached: [[UInt8]], host: H) -> PeerMessage? {
        if case .placement(let m) = message {
            // An object's bytes, if it has real ones (a scenario's modelled objects have none).
            guard let bytes = attached.first, var o = Self.object(in: m) else { return message }
            if PayloadDigest.of(bytes) == o.value.content && UInt64(bytes.count) == o.value.bytes {
                payloads.keepObject(bytes, content: o.value.content)
                return message
            }
            counters.corruptPayloads += 1
            o.value.checksum = ~o.value.checksum  // the machine drops it, and the sender sends it again
            switch m {
            case .store: return .placement(.store(o))
            case .fetched(let rid, let key, _): return .placement(.fetched(requestID: rid, key: key, object: o))
            default: return message
            }
        }
        guard case .work(let work) = message else { return message }
        guard !attached.isEmpty else {
            // A real value without its bytes is no value: the machine must not believe it holds it.
            switch work {
            case .data(let version, let rid, var value) where host.hasRealBytes(version.workflow):
                counters.missingPayloads += 1
                value.checksum = ~value.checksum
                return .work(.data(version: version, requestID: rid, value: value))
            default:
                guard let initial = Self.initialData(of: work), !initial.isEmpty,
                    host.hasRealBytes(Self.recordWorkflow(of: work)!)
                else { return message }
                counters.missingPayloads += 1
                return nil
            }
        }
        switch work {
        case .data(let version, let rid, var value):
            if PayloadDigest.matches(attached[0], value) {
                payloads.keep(attached[0], as: value, for: version.workflow)
            } else {
                counters.corruptPayloads += 1
                value.checksum = ~value.checksum
            }
            return .work(.data(version: version, requestID: rid, value: value))
        default:
            guard let initial = Self.initialData(of: work) else { return message }
            guard attached.count == initial.count, zip(attached, initial).allSatisfy({ PayloadDigest.matches($0, $1) }) else {
                counters.corruptPayloads += 1
                return nil
            }
            let wf = Self.recordWorkflow(of: work)!
            for (bytes, value) in zip(attached, initial) { payloads.keep(bytes, as: value, for: wf) }
            return message
        }
    }

    /// The object a placement message carries, if any.
    static func object(in message: PlacementMessage) -> StoredObject? {
        switch message {
        case .store(let o): o
        case .fetched(_, _, let o): o
        default: nil
        }
    }

    /// The workflow of a record message.
    static func recordWorkflow(of work: WorkMessage) -> WorkflowID? {
        switch work {
        case .recordCreate(let wf, _, _, _, _), .recordPart(let wf, _, _): wf
        default: nil
        }
    }

    /// The initial values a record message carries (a whole create, or a part of one).
    static func initialData(of work: WorkMessage) -> [DataValue]? {
        switch work {
        case .recordCreate(_, _, _, _, let initial): initial
        case .recordPart(_, _, let part): part.initial
        default: nil
        }
    }
}

/// What a shell counts of the bytes it handles.
public struct ShellCounters: Sendable, Hashable, Codable {
    /// Received bytes that did not match the digest of the value they claimed to be.
    public var corruptPayloads = 0
    /// Real values (or records with real initial data) that arrived without their bytes.
    public var missingPayloads = 0
    /// Tasks failed because their outputs would pass `maxHeldBytes`.
    public var payloadsRefused = 0
    public init() {}
}

/// A task body the host is to run, then answer with `PeerEvent.executed` or `.failed` (after
/// `PeerShell.finish` for a real body).
public struct TaskJob: Sendable {
    public let task: TaskRef
    public let catalogueKey: UInt64
    public let inputs: [DataValue?]
    public let attempt: Int
    public let call: ExecutableCall?
    /// A real body's inputs' bytes in order over its reading accesses (nil entries: absent values),
    /// or why it cannot run; nil for a modelled body.
    public var inputBytes: Result<[[UInt8]?], TaskFailure>?
}

/// What a shell tells its host: what a client or a user sees, and what a checker counts.
public enum ShellReport: Sendable {
    case statusChanged(PeerID, MemberStatus)
    /// A program's wait was answered (`value`'s bytes, if any, are in the shell's payloads now).
    case waited(workflow: WorkflowID, requestID: UInt64, value: DataValue?)
    case barrierReached(workflow: WorkflowID, requestID: UInt64)
    /// The workflow ended at its owner, here; its results' bytes are held until this report returns.
    case completed(workflow: WorkflowID, results: [DataValue?], failures: [FailureReport])
    case failed(workflow: WorkflowID, reason: String, cause: FailureReport?)
    case resultApplied(task: TaskRef)
    case taskReopened(task: TaskRef)
    case tookOver(workflow: WorkflowID, from: PeerID)
    case putAcknowledged(requestID: UInt64, key: UInt64, version: ObjectVersion)
    case putFailed(requestID: UInt64, key: UInt64, reason: String)
    /// A read's result (the object's bytes, if it has real ones, are in the shell's payloads).
    case getResult(requestID: UInt64, object: StoredObject?)
    case getFailed(requestID: UInt64, key: UInt64, reason: String)
    /// A task failed because its outputs would pass `maxHeldBytes`.
    case heldBytesRefused(task: TaskRef)
    /// The shell found a rule broken (a machine's bug): the simulator's checker counts it, a real
    /// peer logs it.
    case violation(kind: String, text: String)
    /// The shard refused a write or a read: the directives after it were not carried out (a real
    /// peer stops; what it acknowledged is on disk).
    case storeFailed(String)
}

/// What differs between the simulator and a real peer: how messages travel, how timers fire, where
/// bodies run, what is done with a report.
public protocol PeerShellHost {
    /// Whether workflow `workflow`'s values are real bytes (a real peer: every workflow's; the
    /// simulator: a program's, not a scenario's modelled workflow's).
    func hasRealBytes(_ workflow: WorkflowID) -> Bool
    mutating func send(_ message: PeerMessage, payloads: [[UInt8]], to: PeerID, from shell: PeerShell)
    mutating func schedule(_ timer: PeerTimer, after: Interval, at shell: PeerShell)
    mutating func execute(_ job: TaskJob, at shell: PeerShell)
    mutating func report(_ report: ShellReport, at shell: PeerShell)
}

/// Runs real task bodies: a shell's executor. The `Shoal` module gives one (`CallRunner`) that
/// runs exec commands through the hardened exec runner and registered tasks from a registry,
/// exactly as a local run does. The simulator runs bodies one at a time while virtual time stands
/// still; a real peer runs them on worker threads.
public protocol TaskBodyRunner {
    /// The catalogue keys of the bodies it runs (what a peer advertises).
    var catalogue: [UInt64] { get }

    /// Runs `body` once: the task `label` of the workflow named `workflow`. `accesses` are its
    /// accesses in argument order; `inputs` the bytes of what it reads, in that order over its
    /// reading accesses (nil: the value is absent, its writer's failure was ignored). Returns the
    /// bytes of every version it writes, in order over its writing accesses, or why it failed.
    func run(
        _ body: TaskBody, workflow: String, label: String, accesses: [WorkflowTaskSpec.Access], inputs: [[UInt8]?],
        attempt: Int
    ) -> Result<[[UInt8]], TaskFailure>
}
