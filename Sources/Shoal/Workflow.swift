import Foundation
import ShoalSimulation
import ShoalStore
import Synchronization

/// A handle on a datum of a workflow: an initial value, a task's result, or a persistent object.
///
/// Holding a `DataRef` is like holding a PyCOMPSs future: it names the datum, not one version of
/// it. `wait(on:)` returns the value after every write submitted before the wait. Handles are
/// `Codable` so they can travel inside task arguments.
public struct DataRef<Value: Sendable>: Sendable, Hashable, Codable, CustomStringConvertible {
    public let datum: DatumID
    /// The name given when the datum was created, if any (for messages and graphs).
    public let name: String?

    init(datum: DatumID, name: String?) {
        self.datum = datum
        self.name = name
    }

    public var description: String { name ?? "\(datum)" }
}

/// One data argument of a task call with its direction, as PyCOMPSs' directionality hints:
/// `.in(x)`, `.out(x)`, `.inout(x)`, `.commutative(x)`, `.concurrent(x)`.
public struct DataParameter: Sendable {
    public let datum: DatumID
    public let direction: Direction
    public let name: String?

    public static func `in`<T>(_ ref: DataRef<T>) -> DataParameter { .init(ref, .in) }
    public static func out<T>(_ ref: DataRef<T>) -> DataParameter { .init(ref, .out) }
    public static func `inout`<T>(_ ref: DataRef<T>) -> DataParameter { .init(ref, .inout) }
    public static func commutative<T>(_ ref: DataRef<T>) -> DataParameter { .init(ref, .commutative) }
    /// Tasks in a run of concurrent accesses share one instance, so the datum must be a
    /// thread-safe reference (`AnyObject & Sendable`) they mutate themselves.
    public static func concurrent<T: AnyObject>(_ ref: DataRef<T>) -> DataParameter { .init(ref, .concurrent) }

    init<T>(_ ref: DataRef<T>, _ direction: Direction) {
        datum = ref.datum
        self.direction = direction
        name = ref.name
    }

    init(datum: DatumID, direction: Direction, name: String?) {
        self.datum = datum
        self.direction = direction
        self.name = name
    }
}

/// A task: a named function of `Codable` arguments, registered by name on every peer that can run
/// it (as a COMPSs application is deployed on every worker). Its body reads and writes the data
/// it is submitted with through the `TaskContext`, and may return a result, which becomes a new
/// datum (PyCOMPSs `returns=`).
public struct TaskDefinition<Args: Codable & Sendable, Result: Sendable>: Sendable {
    public var name: String { info.name }
    public let defaultPolicy: FailurePolicy
    let body: @Sendable (Args, inout TaskContext) throws -> Result
    /// Shared by every submission: the body with its arguments type-erased. A result is written
    /// to the last parameter, where `submit` puts the result datum.
    let info: TaskInfo

    public init(
        _ name: String, policy: FailurePolicy = .default,
        _ body: @escaping @Sendable (Args, inout TaskContext) throws -> Result
    ) {
        defaultPolicy = policy
        self.body = body
        let returnsValue = Result.self != Void.self
        if let empty = Empty() as? Args {
            // No arguments: skip the per-task cast from the existential.
            info = TaskInfo(name: name) { _, context in
                let result = try body(empty, &context)
                if returnsValue { context.outputs[context.outputs.count - 1] = result }
            }
        } else {
            info = TaskInfo(name: name) { args, context in
                let result = try body(args as! Args, &context)
                if returnsValue { context.outputs[context.outputs.count - 1] = result }
            }
        }
    }
}

extension TaskDefinition where Args == Empty {
    /// A task without arguments.
    public init(_ name: String, policy: FailurePolicy = .default, _ body: @escaping @Sendable (inout TaskContext) throws -> Result) {
        self.init(name, policy: policy) { (_: Empty, context: inout TaskContext) in try body(&context) }
    }
}

/// The arguments of a task that takes none.
public struct Empty: Codable, Sendable, Hashable {
    public init() {}
}

/// A workflow being run: the object a sequential program submits its tasks to.
///
/// Submitting returns at once; the task runs when the versions it reads are available. Calls are
/// meant to come from one sequential program (as in PyCOMPSs): submissions from several threads
/// are safe but their order, and so the dependences between them, is whatever order they arrive in.
public final class Workflow: Sendable {
    /// Where the program's tasks run: this peer's engine, or a simulated cluster; or nowhere,
    /// while its calls are recorded (`Shoal.record`).
    enum Backend: Sendable {
        case local(Engine)
        case simulated(SimulatedClusterClient)
        case recording(CallRecorder)
    }
    let backend: Backend
    /// The local engine (only a local run has one).
    var engine: Engine {
        guard case .local(let engine) = backend else { preconditionFailure("a workflow on a cluster has no local engine") }
        return engine
    }
    var cluster: SimulatedClusterClient? {
        if case .simulated(let client) = backend { client } else { nil }
    }
    /// The shard persistent objects are written to and opened from, if the run has one.
    public let store: (any KeyValueShard)?
    /// The workflow's name (recorded with what it persists).
    public let name: String?
    private let nextDatum = Mutex<UInt32>(0)
    /// One `TaskInfo` per name of closure tasks, so the engine keeps a bounded number of them.
    private let closureInfos = Mutex<[String: TaskInfo]>([:])
    /// For each persistent object this run persists: the datum that orders its persists and opens.
    private let storedObjects = Mutex<[String: DataRef<Empty>]>([:])

    /// The datum standing for the stored object `name` (created, with no value to read, on first use).
    func storedObject(_ name: String) -> DataRef<Empty> {
        storedObjects.withLock { objects in
            if let ref = objects[name] { return ref }
            let ref = DataRef<Empty>(datum: newDatum(), name: "stored:\(name)")
            engine.define(ref.datum, value: Empty())
            objects[name] = ref
            return ref
        }
    }

    func persistedInThisRun(_ name: String) -> DataRef<Empty>? {
        storedObjects.withLock { $0[name] }
    }

    /// What this program's waits and barriers were answered, in order, when it runs as the
    /// reference a simulated cluster's run is checked against.
    let answers: AnswerLog?

    init(engine: Engine, store: (any KeyValueShard)?, name: String?, answers: AnswerLog? = nil) {
        self.backend = .local(engine)
        self.store = store
        self.name = name
        self.answers = answers
    }

    init(cluster: SimulatedClusterClient, name: String?) {
        self.backend = .simulated(cluster)
        self.store = nil
        self.name = name
        self.answers = nil
    }

    init(recorder: CallRecorder, name: String?) {
        self.backend = .recording(recorder)
        self.store = nil
        self.name = name
        self.answers = nil
    }

    // MARK: Data

    /// A new datum holding `value` (an initial value of the program, like a NumPy array created
    /// before the tasks are called).
    public func value<T: Sendable>(_ value: T, name: String? = nil) -> DataRef<T> {
        let ref = DataRef<T>(datum: newDatum(), name: name)
        switch backend {
        case .local(let engine): engine.define(ref.datum, value: value)
        case .simulated(let cluster): cluster.define(ref.datum, value: value)
        case .recording(let recorder): recorder.define(ref.datum)
        }
        return ref
    }

    /// A new datum with no value yet, for a task to write as `.out`.
    public func placeholder<T: Sendable>(_ type: T.Type = T.self, name: String? = nil) -> DataRef<T> {
        let ref = DataRef<T>(datum: newDatum(), name: name)
        switch backend {
        case .local: break
        case .simulated(let cluster): cluster.define(ref.datum, value: nil)
        case .recording(let recorder): recorder.define(ref.datum)
        }
        return ref
    }

    func newDatum() -> DatumID {
        nextDatum.withLock { n in
            defer { n += 1 }
            return DatumID(raw: n)
        }
    }

    // MARK: Tasks

    /// Submits `task` with `args` and its data parameters; returns the task's result as a new datum.
    @discardableResult
    public func submit<Args, Result>(
        _ task: TaskDefinition<Args, Result>, _ args: Args, _ parameters: DataParameter...,
        policy: FailurePolicy? = nil
    ) -> DataRef<Result> {
        let result = placeholder(Result.self)
        var accesses = parameters.map { (datum: $0.datum, direction: $0.direction) }
        accesses.append((result.datum, .out))
        enqueue(task.info, accesses, policy ?? task.defaultPolicy, args: args)
        return result
    }

    /// Submits a task without a result.
    public func submit<Args>(
        _ task: TaskDefinition<Args, Void>, _ args: Args, _ parameters: DataParameter...,
        policy: FailurePolicy? = nil
    ) {
        submit(task, args, parameters: parameters, policy: policy)
    }

    /// Submits a task without a result, with a parameter list built at run time.
    public func submit<Args>(
        _ task: TaskDefinition<Args, Void>, _ args: Args, parameters: [DataParameter], policy: FailurePolicy? = nil
    ) {
        enqueue(task.info, parameters.map { ($0.datum, $0.direction) }, policy ?? task.defaultPolicy, args: args)
    }

    /// Submits a task without arguments or result.
    public func submit(_ task: TaskDefinition<Empty, Void>, _ parameters: DataParameter..., policy: FailurePolicy? = nil) {
        submit(task, Empty(), parameters: parameters, policy: policy)
    }

    /// Submits a closure as a task (not registered, so it can never leave this peer).
    public func submit(
        name: String, _ parameters: [DataParameter], policy: FailurePolicy = .default,
        _ body: @escaping @Sendable (inout TaskContext) throws -> Void
    ) {
        let info = closureInfos.withLock { infos in
            if let info = infos[name] { return info }
            let info = TaskInfo.closure(name: name)
            infos[name] = info
            return info
        }
        enqueue(info, parameters.map { ($0.datum, $0.direction) }, policy, args: body)
    }

    /// Submits a task: `info.run(args, context)` runs it.
    func enqueue(
        _ info: TaskInfo, _ accesses: [(datum: DatumID, direction: Direction)], _ policy: FailurePolicy,
        args: any Sendable
    ) {
        let accesses = Workflow.merged(accesses, task: info.name)
        switch backend {
        case .local(let engine):
            engine.submit(Submission(accesses: accesses, policy: policy, task: PendingTask(info: info, args: args)), info: info)
        case .simulated(let cluster): cluster.submit(name: info.name, args: args, accesses: accesses, policy: policy)
        case .recording(let recorder): recorder.submit(name: info.name, accesses: accesses)
        }
    }

    /// One entry per datum: a datum passed twice gets the combined direction (`in` + `out` = `inout`).
    static func merged(
        _ accesses: [(datum: DatumID, direction: Direction)], task: String
    ) -> [(datum: DatumID, direction: Direction)] {
        guard accesses.count > 1 else { return accesses }
        var out: [(datum: DatumID, direction: Direction)] = []
        out.reserveCapacity(accesses.count)
        for a in accesses {
            if let i = out.firstIndex(where: { $0.datum == a.datum }) {
                guard let d = out[i].direction.merged(with: a.direction) else {
                    preconditionFailure(
                        "task '\(task)' passes \(a.datum) as both '\(out[i].direction)' and '\(a.direction)'")
                }
                out[i].direction = d
            } else {
                out.append(a)
            }
        }
        return out
    }

    // MARK: Synchronisation

    /// The value of `ref` after every task submitted so far that writes it (PyCOMPSs
    /// `compss_wait_on`). Throws the cause if its writer failed.
    public func wait<T>(on ref: DataRef<T>) async throws -> T {
        if case .recording = backend { throw CallRecorder.waited(on: ref.description) }
        if let cluster {
            let datum = ref.datum
            guard let bytes = try await runOffThePool({ try cluster.wait(on: datum) }) else {
                throw SimulatedClusterError("'\(ref)' has no value: the task that writes it failed")
            }
            return try PeerValues.decode(bytes, as: T.self)
        }
        let any: Any
        do { any = try await engine.value(of: ref.datum) } catch ShoalError.noValue(let datum) {
            answers?.append(.noValue)
            throw ShoalError.noValue(datum: datum)
        }
        guard let value = any as? T else {
            throw ShoalError.typeMismatch(name: ref.description, expected: "\(T.self)", actual: "\(type(of: any))")
        }
        answers?.append(value: value)
        return value
    }

    /// Hands every buffered submission to the scheduler now, without waiting. Submissions are
    /// buffered and handed over in batches; `wait(on:)` and `barrier()` flush by themselves.
    public func flush() {
        switch backend {
        case .local(let engine): engine.flush()
        case .simulated(let cluster): cluster.flush()
        case .recording: break
        }
    }

    /// Waits for every task submitted so far. Throws the failure that aborted the workflow, if any.
    public func barrier() async throws {
        switch backend {
        case .local(let engine):
            try await engine.barrier()
            answers?.append(.barrier)
        case .simulated(let cluster): try await runOffThePool { try cluster.barrier() }
        case .recording: break  // nothing runs: every task so far is as done as it will be
        }
    }

    /// Counters of the run so far.
    public var statistics: RunStatistics {
        switch backend {
        case .local(let engine): engine.statistics
        case .simulated(let cluster): cluster.statistics
        case .recording(let recorder): recorder.statistics
        }
    }

    /// Failures that did not abort the workflow (ignored, or that cancelled their successors).
    public var failures: [FailureRecord] {
        if case .local(let engine) = backend { engine.recordedFailures } else { [] }
    }
}

/// Options of a local run.
public struct RunOptions: Sendable {
    public var runtime: RuntimeSettings
    /// Where persistent objects live (an LMDB shard), or nil for a run without persistence.
    public var store: (any KeyValueShard)?
    /// The workflow's name, recorded with what it persists.
    public var name: String?

    public init(runtime: RuntimeSettings = RuntimeSettings(), store: (any KeyValueShard)? = nil, name: String? = nil) {
        self.runtime = runtime
        self.store = store
        self.name = name
    }

    /// Options whose store is the LMDB shard in `dataDirectory` (created if missing).
    public init(runtime: RuntimeSettings = RuntimeSettings(), dataDirectory: String, name: String? = nil) throws {
        self.init(runtime: runtime, store: try LMDBShard(directory: dataDirectory), name: name)
    }
}

extension Shoal {
    /// Runs a sequential workflow program on this peer, using every core, and waits for all of its
    /// tasks. Throws the failure that aborted the workflow, if any.
    @discardableResult
    public static func run<R: Sendable>(
        _ options: RunOptions = RunOptions(),
        _ program: (Workflow) async throws -> R
    ) async throws -> R {
        let engine = Engine(settings: options.runtime)
        engine.start()
        defer { engine.shutdown() }
        let workflow = Workflow(engine: engine, store: options.store, name: options.name)
        let result: R
        do {
            result = try await program(workflow)
        } catch {
            try? await workflow.barrier()
            throw error
        }
        try await workflow.barrier()
        return result
    }

    /// Runs the same sequential program on a simulated cluster (`SimulatedCluster`: a scenario's
    /// peers, network and faults, in virtual time from a seed): its registered tasks run on the
    /// simulated peers, its waits are answered by the workflow's owner as soon as the value exists,
    /// and the run ends when its workflow does. Returns the program's result and the simulation's
    /// report. A closure task, or a value that cannot cross peers, is refused with a clear error.
    public static func run<R: Sendable>(
        simulated cluster: SimulatedCluster, name: String = "program",
        _ program: (Workflow) async throws -> R
    ) async throws -> (result: R, report: SimulationReport) {
        let expected = cluster.checkAgainstLocalRun ? await AnswerLog.reference(name: name, program) : nil
        let client = try await runOffThePool { try SimulatedClusterClient(cluster, name: name, expected: expected) }
        let workflow = Workflow(cluster: client, name: name)
        let result = try await program(workflow)
        return (result, try await runOffThePool { try client.finish() })
    }
}
