import ShoalCore

/// A modelled program that grows its workflow as it runs and decides from the values it waits
/// for: submit a batch, wait, decide, submit more. The scenario shape `adaptive` (value-dependent
/// control flow on the cluster).
///
/// Data 0 is an accumulator and datum 1 a commutative total. Round r defines `width` new data,
/// computes each from the accumulator, adds each to the total (a commutative group that spans all
/// rounds: nothing reads the total until the end), folds them into the accumulator, and waits on
/// it. The next round's width is the waited value modulo `maxWidth` (plus one), and an odd value
/// adds one more call: a run whose waits were answered with other values submits another program.
/// A value divisible by 3 makes the program wait at a barrier (every task so far done) before its
/// wait. After the last round the program waits on the total (which closes its group) and closes.
public struct AdaptiveProgram: Sendable, Hashable, Codable {
    public var rounds: Int
    public var maxWidth: Int

    public init(rounds: Int, maxWidth: Int) {
        self.rounds = rounds
        self.maxWidth = maxWidth
    }

    /// What the program does next, given the round and the value its last wait was answered with.
    public struct Step: Sendable, Hashable {
        public var calls: [WorkflowTaskSpec]
        /// New data the calls use (their indices follow the workflow's data so far).
        public var newData: Int
        /// It waits at a barrier first.
        public var barrier: Bool
        /// The datum it then waits on.
        public var waitOn: Int
        /// It closes the workflow once that wait is answered.
        public var closesAfter: Bool
    }

    /// The spec the program starts with: its two data and no call yet.
    public func start(name: String, bytes: UInt64) -> WorkflowSpec {
        WorkflowSpec(name: name, dataCount: 2, initialBytes: bytes, tasks: [])
    }

    /// Round `round` of a workflow with `dataCount` data so far, after a wait answered `value`
    /// (nil before the first round), or nil when the program has no round left.
    public func step(round: Int, dataCount: Int, after value: UInt64?, cost: Interval, bytes: UInt64) -> Step? {
        guard round < rounds else { return nil }
        let width = value.map { 1 + Int($0 % UInt64(max(1, maxWidth))) } ?? max(1, maxWidth)
        let first = dataCount
        var calls: [WorkflowTaskSpec] = []
        func call(_ key: UInt64, _ accesses: [WorkflowTaskSpec.Access]) {
            calls.append(WorkflowTaskSpec(catalogueKey: key, cost: cost, accesses: accesses, outputBytes: bytes))
        }
        for i in 0..<width {
            call(ModelledKeys.work, [.init(0, .in), .init(first + i, .out)])
            call(ModelledKeys.gather, [.init(first + i, .in), .init(1, .commutative)])
        }
        call(ModelledKeys.fold, (0..<width).map { .init(first + $0, .in) } + [.init(0, .inout)])
        if let value, value % 2 == 1 { call(ModelledKeys.point, [.init(0, .inout)]) }
        let last = round == rounds - 1
        let barrier = value.map { $0 % 3 == 0 } ?? false
        return Step(calls: calls, newData: width, barrier: barrier, waitOn: last ? 1 : 0, closesAfter: last)
    }
}
