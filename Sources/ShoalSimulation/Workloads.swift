import ShoalCore

/// A workflow a scenario submits: its shape, when, and at which peer (the owner).
public struct ScenarioWorkflow: Sendable, Codable, Hashable {
    public enum Shape: Sendable, Codable, Hashable {
        /// Task Bench `stencil_1d`: `width` points, `steps` steps.
        case stencil(width: Int, steps: Int)
        /// `count` independent tasks.
        case independent(count: Int)
        /// The cross-correlation example's DAG with `fragments` fragments.
        case crossCorrelation(fragments: Int)
    }

    public var shape: Shape
    /// Seconds of virtual time at which it is submitted.
    public var atSeconds: Double
    /// The peer it is submitted to.
    public var submitter: Int
    /// Modelled run time of one task (cross-correlation: of one fragment; generating the trains
    /// costs 5 times that, a gather a quarter).
    public var taskMicros: Int64
    /// Size of each task's output (cross-correlation: of a fragment's result; the trains and the
    /// matrices are 4 times that).
    public var bytes: UInt64

    public init(shape: Shape, atSeconds: Double = 0, submitter: Int = 0, taskMicros: Int64 = 1_000, bytes: UInt64 = 1_024)
    {
        self.shape = shape
        self.atSeconds = atSeconds
        self.submitter = submitter
        self.taskMicros = taskMicros
        self.bytes = bytes
    }

    public var spec: WorkflowSpec {
        let cost = Interval.microseconds(taskMicros)
        switch shape {
        case .stencil(let width, let steps): return .stencil(width: width, steps: steps, cost: cost, bytes: bytes)
        case .independent(let count): return .independent(count: count, cost: cost, bytes: bytes)
        case .crossCorrelation(let fragments):
            return .crossCorrelation(
                fragments: fragments, generateCost: cost * 5, fragmentCost: cost,
                gatherCost: Interval(nanoseconds: cost.nanoseconds / 4), trainsBytes: bytes * 4, fragmentBytes: bytes,
                matrixBytes: bytes * 4)
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

/// Work figures summed over every peer of a run (crashed peers' included).
public struct WorkStatistics: Sendable, Codable, Hashable {
    public var tasksRun = 0
    public var resultsApplied = 0
    public var duplicateResults = 0
    public var tasksRecomputed = 0
    public var tasksRequeued = 0
    public var fetches = 0
    public var bytesFetched: UInt64 = 0
    public var corruptTransfers = 0
    public var takeovers = 0
    public var stealsTried = 0
    public var stealsGranted = 0
    public var tasksStolen = 0
    public var stealTimeouts = 0
    /// Tasks run per peer: least, median, most (over peers that ever ran).
    public var tasksPerPeer: [Int] = []

    public init() {}

    mutating func add(_ w: WorkCounters, _ s: StealCounters) {
        tasksRun += w.tasksRun
        resultsApplied += w.resultsApplied
        duplicateResults += w.duplicateResults
        tasksRecomputed += w.tasksRecomputed
        tasksRequeued += w.tasksRequeued
        fetches += w.fetches
        bytesFetched &+= w.bytesFetched
        corruptTransfers += w.corruptTransfers
        takeovers += w.takeovers
        stealsTried += s.stealsTried
        stealsGranted += s.stealsGranted
        tasksStolen += s.tasksStolen
        stealTimeouts += s.timeouts
    }
}
