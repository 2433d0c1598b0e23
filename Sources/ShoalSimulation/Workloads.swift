import ShoalCore

/// A workflow a scenario submits: its shape, when, and at which peer (the owner).
public struct ScenarioWorkflow: Sendable, Codable, Hashable {
    public enum Shape: Sendable, Codable, Hashable {
        /// Task Bench `stencil_1d`: `width` points, `steps` steps.
        case stencil(width: Int, steps: Int)
        /// `count` independent tasks.
        case independent(count: Int)
        /// A real program's calls with modelled bodies (for example the cross-correlation
        /// example's, `crossCorrelation: F` in a scenario file).
        case recorded(RecordedShape)
        /// A program with real bodies (a scenario's `file:` workflow): each task takes its
        /// calibrated cost (`ProgramWorkflow.costs`, by label) of virtual time, or `taskMicros`.
        case program(ProgramWorkflow)
        /// A program that grows its workflow round by round, deciding from what it waits for
        /// (`AdaptiveProgram`).
        case adaptive(rounds: Int, maxWidth: Int)
    }

    public var shape: Shape
    /// Seconds of virtual time at which it is submitted.
    public var atSeconds: Double
    /// The peer it is submitted to.
    public var submitter: Int
    /// Modelled run time of one task (a recorded shape's tasks: times their weights).
    public var taskMicros: Int64
    /// Size of each task's output (a recorded shape's tasks: times their weights).
    public var bytes: UInt64
    /// Modelled task failures, if any.
    public var failures: Failures?

    /// Every `every`-th task (tasks `every - 1`, `2 * every - 1`, ...) fails its first `attempts`
    /// attempts. Every task of the workflow has the policy (`retries`, then `action`): with
    /// `attempts > retries` the action applies, and a task that reads a value an ignored failure
    /// left absent fails every attempt.
    public struct Failures: Sendable, Codable, Hashable {
        public var every: Int
        public var attempts: UInt16
        public var policy: FailurePolicy
        public init(every: Int, attempts: UInt16, policy: FailurePolicy) {
            self.every = every
            self.attempts = attempts
            self.policy = policy
        }
    }

    public init(
        shape: Shape, atSeconds: Double = 0, submitter: Int = 0, taskMicros: Int64 = 1_000, bytes: UInt64 = 1_024,
        failures: Failures? = nil
    ) {
        self.shape = shape
        self.atSeconds = atSeconds
        self.submitter = submitter
        self.taskMicros = taskMicros
        self.bytes = bytes
        self.failures = failures
    }

    public var spec: WorkflowSpec {
        var spec = shapeSpec
        if let failures, failures.every > 0 {
            for t in spec.tasks.indices { spec.tasks[t].policy = failures.policy }
            for t in stride(from: failures.every - 1, to: spec.tasks.count, by: failures.every) {
                spec.tasks[t].failingAttempts = failures.attempts
            }
        }
        return spec
    }

    /// The growing program, if the workflow is one.
    public var adaptive: AdaptiveProgram? {
        if case .adaptive(let rounds, let maxWidth) = shape { AdaptiveProgram(rounds: rounds, maxWidth: maxWidth) } else { nil }
    }

    /// The program, if the workflow has real bodies.
    public var program: ProgramWorkflow? {
        if case .program(let p) = shape { p } else { nil }
    }

    private var shapeSpec: WorkflowSpec {
        let cost = Interval.microseconds(taskMicros)
        switch shape {
        case .adaptive:
            return adaptive!.start(name: "adaptive \(adaptive!.rounds) rounds", bytes: bytes)
        case .program(let p):
            var spec = p.spec
            for t in spec.tasks.indices {
                spec.tasks[t].cost = p.costs?[spec.tasks[t].label].map(Interval.microseconds) ?? cost
            }
            return spec
        case .stencil(let width, let steps): return .stencil(width: width, steps: steps, cost: cost, bytes: bytes)
        case .independent(let count): return .independent(count: count, cost: cost, bytes: bytes)
        case .recorded(let recorded): return recorded.spec(cost: cost, bytes: bytes)
        }
    }
}

/// How one workflow of a run ended.
public struct WorkflowOutcome: Sendable, Codable, Hashable {
    public enum Status: String, Sendable, Codable, Hashable { case completed, failed, unfinished, notSubmitted }
    public var name: String
    public var tasks: Int
    public var status: Status
    /// Seconds from submission to the (first) completion.
    public var makespanSeconds: Double?
    /// Whether the results equal the sequential program's (nil until completed).
    public var resultsMatch: Bool?
    public var reason: String?
    /// Owners over the run (the submitter, then any that took it over).
    public var owners: [Int]
}

/// Persistent objects a scenario writes while it runs: `puts` puts, one every `everySeconds`
/// from `startSeconds`, each of a key among `keys` to a random live peer (the coordinator).
public struct ObjectWorkload: Sendable, Codable, Hashable {
    public var keys: Int
    public var puts: Int
    public var startSeconds: Double
    public var everySeconds: Double
    public var bytes: UInt64
    /// Replicas per object (R).
    public var replicas: Int

    public init(keys: Int, puts: Int, startSeconds: Double = 1, everySeconds: Double = 0.05, bytes: UInt64 = 4_096, replicas: Int = 3) {
        self.keys = keys
        self.puts = puts
        self.startSeconds = startSeconds
        self.everySeconds = everySeconds
        self.bytes = bytes
        self.replicas = replicas
    }

    public var lastPut: Double { startSeconds + everySeconds * Double(max(0, puts - 1)) }
}

/// Persistent-object figures of a run.
public struct ObjectStatistics: Sendable, Codable, Hashable {
    public var putsIssued = 0
    public var putsAcknowledged = 0
    public var putsFailed = 0
    /// Keys with an acknowledged version, and how many of them a live peer still holds at the end.
    public var objectsAcknowledged = 0
    public var objectsFound = 0
    /// Re-replication transfers and their bytes, and corrupt transfers caught, over all peers.
    public var transfers = 0
    public var bytesTransferred: UInt64 = 0
    public var corruptTransfers = 0
    /// The most peers down at once (crashed, or restarted without their store in the last 5 s).
    public var mostPeersDown = 0

    public init() {}
}
