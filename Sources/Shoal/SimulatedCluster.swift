import Foundation
import ShoalCore
import ShoalSimulation
import Synchronization

/// Where `Shoal.run(simulated:)` runs a program: a whole cluster played by the simulator from a
/// scenario (its peers, network and faults; its own workflows run beside the program's), with
/// the program's registered tasks run for real on the simulated peers, on the bytes of its values.
public struct SimulatedCluster: Sendable {
    public var scenario: Scenario
    public var seed: UInt64
    /// The tasks the peers can run (every peer has all of them).
    public var registry: TaskRegistry
    /// The peer the program submits to (its workflow's owner).
    public var submitter: Int
    /// When the program starts, in virtual seconds (after the peers have joined).
    public var startSeconds: Double
    /// Virtual time each task takes (the simulator never reads a clock).
    public var taskMicros: Int64
    /// Runs the program on the local engine first, as the reference: the simulator then checks
    /// that each of the cluster's answers to the program's waits and barriers is the local run's
    /// (byte for byte, in the binary value encoding) and that the workflow completes exactly when
    /// the local run did; a difference is a violation in the report. The program runs twice, so
    /// it must decide only from what it waits for.
    public var checkAgainstLocalRun: Bool
    /// Most calls the program's side holds before it hands them to the owner as a batch (it also
    /// hands over what it holds at every wait, barrier and at the end). 1 to 1,048,576.
    public var maxBatchCalls: Int

    public init(
        scenario: Scenario, seed: UInt64 = 1, registry: TaskRegistry, submitter: Int = 0, startSeconds: Double = 1,
        taskMicros: Int64 = 10_000, checkAgainstLocalRun: Bool = true, maxBatchCalls: Int = 4_096
    ) {
        self.maxBatchCalls = min(max(1, maxBatchCalls), 1 << 20)
        self.scenario = scenario
        self.seed = seed
        self.registry = registry
        self.submitter = submitter
        self.startSeconds = startSeconds
        self.taskMicros = taskMicros
        self.checkAgainstLocalRun = checkAgainstLocalRun
    }
}

/// Why a program on a simulated cluster could not go on.
public struct SimulatedClusterError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A program's side of a simulated cluster: it collects the program's calls and new data into a
/// batch, hands the batch to the owner peer when the program waits (or at a barrier, or at the
/// end), and plays the cluster in virtual time until the wait is answered. The program's values
/// cross as bytes (`PeerValues`); a closure task, or a task the peers do not have, is refused at
/// submission, and the refusal is thrown at the next wait.
/// (Unchecked: the runner is used only under the state lock, by the simulation it runs in.)
final class SimulatedClusterClient: @unchecked Sendable {
    private struct State: @unchecked Sendable {
        var simulation: ClusterSimulation
        var workflow = -1
        /// Data defined since the last batch (their bytes; empty for a placeholder), by datum.
        var newData: [[UInt8]] = []
        var dataCount = 0
        var calls: [WorkflowTaskSpec] = []
        /// The first problem with what the program submitted (thrown at its next wait).
        var refused: String?
        var report: SimulationReport?
    }
    private let state: Mutex<State>
    let cluster: SimulatedCluster
    /// Runs the tasks' bodies; kept for the life of the run (it owns a scratch folder).
    private let runner: CallRunner

    init(_ cluster: SimulatedCluster, name: String, expected: ProgramWorkflow.Expected?) throws {
        self.cluster = cluster
        runner = try CallRunner(registry: cluster.registry)
        var simulation = ClusterSimulation(scenario: cluster.scenario, seed: cluster.seed, runner: runner)
        simulation.begin()
        let start = Instant(nanoseconds: Int64(cluster.startSeconds * 1e9))
        _ = simulation.advance { $0.virtualTime >= start }
        let w = simulation.submitProgram(
            name: name, submitter: cluster.submitter, initial: [], taskMicros: cluster.taskMicros, expected: expected)
        state = Mutex(State(simulation: simulation, workflow: w))
    }

    /// A new datum with `value` (nil: a placeholder a task writes).
    func define(_ datum: DatumID, value: (any Sendable)?) {
        state.withLock { s in
            let bytes: [UInt8]
            do { bytes = try value.map(PeerValues.encode) ?? [] } catch {
                if s.refused == nil { s.refused = "\(error)" }
                bytes = []
            }
            Self.define(datum, bytes, in: &s)
        }
    }

    /// Datum `datum` of the next batch has `bytes` (the data between are placeholders so far).
    private static func define(_ datum: DatumID, _ bytes: [UInt8], in s: inout State) {
        let index = Int(datum.raw) - s.dataCount
        while s.newData.count <= index { s.newData.append([]) }
        s.newData[index] = bytes
    }

    /// A call of the program: registered task `name` with its arguments.
    func submit(name: String, args: any Sendable, accesses: [(datum: DatumID, direction: Direction)], policy: FailurePolicy) {
        state.withLock { s in
            guard let encodable = args as? any Encodable else {
                if s.refused == nil {
                    s.refused = "task '\(name)' is a closure: only registered tasks run on a cluster (register it in the peers' TaskRegistry)"
                }
                return
            }
            guard cluster.registry.contains(name) else {
                if s.refused == nil { s.refused = "task '\(name)' is not registered with the cluster's peers" }
                return
            }
            let arguments: [UInt8]
            do { arguments = Array(try JSONEncoder().encode(encodable)) } catch {
                if s.refused == nil { s.refused = "the arguments of task '\(name)' do not encode: \(error)" }
                return
            }
            s.calls.append(
                WorkflowTaskSpec(
                    body: .registered(name: name, arguments: arguments),
                    accesses: accesses.map { .init(Int($0.datum.raw), $0.direction) }, policy: policy, label: name))
            // Batches stream to the owner while the program runs, each of a bounded size.
            if s.calls.count >= cluster.maxBatchCalls { Self.flush(&s) }
        }
    }

    /// Hands the batch so far to the owner.
    private static func flush(_ s: inout State) {
        guard !s.calls.isEmpty || !s.newData.isEmpty else { return }
        s.simulation.extendProgram(s.workflow, calls: s.calls, initial: s.newData)
        s.dataCount += s.newData.count
        s.newData = []
        s.calls = []
    }

    func flush() { state.withLock { Self.flush(&$0) } }

    /// Plays the cluster until request `rid` is answered (or the workflow ends, or the scenario).
    private static func answer(_ s: inout State, _ rid: UInt64) throws -> ClusterSimulation.ProgramAnswer {
        let w = s.workflow
        _ = s.simulation.advance { $0.answer(w, request: rid) != nil || $0.outcome(ofWorkflow: w).status == .failed }
        if let answer = s.simulation.answer(w, request: rid) { return answer }
        let outcome = s.simulation.outcome(ofWorkflow: w)
        throw SimulatedClusterError(
            outcome.status == .failed
                ? "the workflow failed on the simulated cluster: \(outcome.reason ?? "no reason given")"
                : "the simulated cluster did not answer within the scenario's \(s.simulation.scenario.durationSeconds) s")
    }

    /// The bytes of `datum` after every call submitted so far (nil: it has no value).
    func wait(on datum: DatumID, compared: Bool = true) throws -> [UInt8]? {
        try state.withLock { s in
            if let refused = s.refused { throw SimulatedClusterError(refused) }
            Self.flush(&s)
            let rid = s.simulation.waitProgram(s.workflow, datum: Int(datum.raw), compared: compared)
            switch try Self.answer(&s, rid) {
            case .value(let bytes): return bytes
            case .noValue, .barrier: return nil
            }
        }
    }

    /// A datum whose value is `bytes` as they are (a value read from the cluster).
    func define(_ datum: DatumID, bytes: [UInt8]) {
        state.withLock { Self.define(datum, bytes, in: &$0) }
    }

    /// Plays the cluster until object request `rid` is answered (or the scenario ends).
    private static func objectAnswer(_ s: inout State, _ rid: UInt64) throws -> ClusterSimulation.ObjectAnswer {
        _ = s.simulation.advance { $0.objectAnswer(rid) != nil }
        guard let answer = s.simulation.objectAnswer(rid) else {
            throw SimulatedClusterError("the simulated cluster did not answer within the scenario's \(s.simulation.scenario.durationSeconds) s")
        }
        return answer
    }

    /// Persists the value of `datum` (after every call so far) as the object `name`: waits for the
    /// value, then for the cluster to have it on its R replicas' disks.
    func persist(_ datum: DatumID, as name: String) throws {
        guard let bytes = try wait(on: datum, compared: false) else {
            throw SimulatedClusterError("cannot persist '\(name)': its value is missing (the task that writes it failed)")
        }
        try state.withLock { s in
            let rid = s.simulation.putObject(at: cluster.submitter, name: name, bytes: bytes)
            switch try Self.objectAnswer(&s, rid) {
            case .stored: return
            case .failed(let reason): throw SimulatedClusterError("cannot persist '\(name)': \(reason)")
            case .found, .notFound: preconditionFailure("a put is answered stored or failed")
            }
        }
    }

    /// The bytes of the object `name`'s newest version on the cluster.
    func open(_ name: String) throws -> [UInt8] {
        try state.withLock { s in
            if let refused = s.refused { throw SimulatedClusterError(refused) }
            let rid = s.simulation.getObject(at: cluster.submitter, name: name)
            switch try Self.objectAnswer(&s, rid) {
            case .found(let bytes, _): return bytes
            case .notFound: throw ShoalError.notFound(name: name)
            case .failed(let reason): throw SimulatedClusterError("cannot open '\(name)': \(reason)")
            case .stored: preconditionFailure("a get is answered found, not found or failed")
            }
        }
    }

    func barrier() throws {
        try state.withLock { s in
            if let refused = s.refused { throw SimulatedClusterError(refused) }
            Self.flush(&s)
            _ = try Self.answer(&s, s.simulation.barrierProgram(s.workflow))
        }
    }

    /// The program ended: closes its workflow, plays the cluster until it ends, and reports.
    func finish() throws -> SimulationReport {
        try state.withLock { s in
            if let report = s.report { return report }
            if let refused = s.refused { throw SimulatedClusterError(refused) }
            Self.flush(&s)
            s.simulation.closeProgram(s.workflow)
            let w = s.workflow
            _ = s.simulation.advance { sim in
                let status = sim.outcome(ofWorkflow: w).status
                return status == .completed || status == .failed
            }
            // The scenario's own workflows and the membership checks finish as in any run.
            _ = s.simulation.advance { $0.settled }
            let report = s.simulation.end()
            s.report = report
            let outcome = report.workflows.last
            guard outcome?.status == .completed else {
                throw SimulatedClusterError(
                    "the workflow did not complete on the simulated cluster: \(outcome?.reason ?? "\(outcome?.status.rawValue ?? "unknown")")")
            }
            return report
        }
    }

    var statistics: RunStatistics {
        state.withLock { s in
            var r = RunStatistics()
            r.submitted = s.simulation.outcome(ofWorkflow: s.workflow).tasks
            return r
        }
    }
}

/// Runs blocking work (a simulation playing many events, task bodies run in it) on a thread of
/// its own and waits for it without holding one of Swift's cooperative threads: with two cores
/// there are two, and a program (or a test beside it) needs one to go on.
public func runOffThePool<R: Sendable>(_ body: @escaping @Sendable () throws -> R) async throws -> R {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<R, any Error>) in
        let thread = Thread {
            continuation.resume(with: Result { try body() })
        }
        thread.stackSize = 8 << 20
        thread.start()
    }
}

/// What a program's waits and barriers were answered on the local engine, in order: the
/// reference its run on a simulated cluster is checked against (`SimulatedCluster.checkAgainstLocalRun`).
final class AnswerLog: Sendable {
    private let state = Mutex<(answers: [ClusterSimulation.ProgramAnswer], comparable: Bool)>(([], true))

    func append(_ answer: ClusterSimulation.ProgramAnswer) { state.withLock { $0.answers.append(answer) } }

    /// A waited value, as the bytes a peer would hold (a value that cannot cross peers makes the
    /// run incomparable: the cluster's run refuses it anyway).
    func append(value: Any) {
        do {
            let bytes = try PeerValues.encode(value)
            append(.value(bytes))
        } catch {
            state.withLock { $0.comparable = false }
        }
    }

    /// The local engine's run of `program` (nil when a waited value cannot be encoded).
    static func reference<R>(name: String, _ program: (Workflow) async throws -> R) async -> ProgramWorkflow.Expected? {
        let log = AnswerLog()
        let engine = Engine(settings: RuntimeSettings())
        engine.start()
        defer { engine.shutdown() }
        // A store of its own, empty like the simulated cluster's at the start, so the program's
        // persists and opens run as they do there.
        let workflow = Workflow(engine: engine, store: MemoryShard(), name: name, answers: log)
        var fails = false
        do {
            _ = try await program(workflow)
            try await engine.barrier()  // the run's own end, not one of the program's barriers
        } catch {
            try? await engine.barrier()
            fails = true
        }
        let (answers, comparable) = log.state.withLock { ($0.answers, $0.comparable) }
        return comparable ? ProgramWorkflow.Expected(fails: fails, outputs: [], answers: answers) : nil
    }
}
