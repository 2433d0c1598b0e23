import Foundation
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
    public let name: String
    public let defaultPolicy: FailurePolicy
    let body: @Sendable (Args, inout TaskContext) throws -> Result

    public init(
        _ name: String, policy: FailurePolicy = .default,
        _ body: @escaping @Sendable (Args, inout TaskContext) throws -> Result
    ) {
        self.name = name
        defaultPolicy = policy
        self.body = body
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
    let engine: Engine
    let store: (any KeyValueShard)?
    private let nextDatum = Mutex<UInt32>(0)

    init(engine: Engine, store: (any KeyValueShard)?) {
        self.engine = engine
        self.store = store
    }

    // MARK: Data

    /// A new datum holding `value` (an initial value of the program, like a NumPy array created
    /// before the tasks are called).
    public func value<T: Sendable>(_ value: T, name: String? = nil) -> DataRef<T> {
        let ref = DataRef<T>(datum: newDatum(), name: name)
        engine.define(ref.datum, value: value)
        return ref
    }

    /// A new datum with no value yet, for a task to write as `.out`.
    public func placeholder<T: Sendable>(_ type: T.Type = T.self, name: String? = nil) -> DataRef<T> {
        DataRef<T>(datum: newDatum(), name: name)
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
        let result = DataRef<Result>(datum: newDatum(), name: nil)
        var accesses = parameters.map { (datum: $0.datum, direction: $0.direction) }
        accesses.append((result.datum, .out))
        // The result's position among the accesses the task runs with, after a datum passed
        // twice is merged into one access.
        accesses = Workflow.merged(accesses, task: task.name)
        let slot = accesses.count - 1
        let body = task.body
        enqueue(task.name, accesses, policy ?? task.defaultPolicy) { context in
            let r = try body(args, &context)
            context.outputs[slot] = r
        }
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
        let body = task.body
        enqueue(task.name, parameters.map { ($0.datum, $0.direction) }, policy ?? task.defaultPolicy) { context in
            try body(args, &context)
        }
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
        enqueue(name, parameters.map { ($0.datum, $0.direction) }, policy, body)
    }

    func enqueue(
        _ name: String, _ accesses: [(datum: DatumID, direction: Direction)], _ policy: FailurePolicy,
        labels: [String] = [], _ body: @escaping @Sendable (inout TaskContext) throws -> Void
    ) {
        engine.submit(
            Submission(
                accesses: Workflow.merged(accesses, task: name), policy: policy,
                task: PendingTask(name: name, labels: labels, body: body)))
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
        let any = try await engine.value(of: ref.datum)
        guard let value = any as? T else {
            throw ShoalError.typeMismatch(name: ref.description, expected: "\(T.self)", actual: "\(type(of: any))")
        }
        return value
    }

    /// Waits for every task submitted so far. Throws the failure that aborted the workflow, if any.
    public func barrier() async throws {
        try await engine.barrier()
    }

    /// Counters of the run so far.
    public var statistics: RunStatistics { engine.statistics }

    /// Failures that did not abort the workflow (ignored, or that cancelled their successors).
    public var failures: [FailureRecord] { engine.recordedFailures }
}

/// Options of a local run.
public struct RunOptions: Sendable {
    public var runtime: RuntimeSettings
    /// Where persistent objects live (an LMDB shard), or nil for a run without persistence.
    public var store: (any KeyValueShard)?

    public init(runtime: RuntimeSettings = RuntimeSettings(), store: (any KeyValueShard)? = nil) {
        self.runtime = runtime
        self.store = store
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
        let workflow = Workflow(engine: engine, store: options.store)
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
}
