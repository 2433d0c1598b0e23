import ShoalCore
import ShoalShell

/// A workflow with real bodies for the simulator (a scenario's `file:` workflow): its calls, the
/// bytes of each datum's initial value, which data it writes out, and what the local engine's run
/// of the same program produced (the checker's reference).
///
/// The simulated peers run it with its real bodies (`TaskBodyRunner`) on real bytes: each peer's
/// shell keeps the bytes of the values it holds (`PayloadStore`) and attaches them to the messages
/// that carry those values, and the receiver checks them against the value's digest.
public struct ProgramWorkflow: Sendable, Hashable, Codable {
    /// The calls (bodies, accesses, policies, labels); `dataCount` data.
    public var spec: WorkflowSpec
    /// Per datum, its initial value's bytes (a datum first written by a task starts empty).
    public var initial: [[UInt8]]
    /// The data written out at the end, by name (`DIR/<workflow name>/<name>`).
    public var outputs: [Output]
    /// What the local engine made of the same program, if it was run.
    public var expected: Expected?
    /// Where the program comes from (a workflow file's path), for messages.
    public var source: String
    /// Calibrated costs: microseconds of virtual time per task label (`shoal simulate --costs`,
    /// measured by an earlier `--record-costs` run). A task without an entry, or every task when
    /// nil, takes the scenario's `taskMicros`.
    public var costs: [String: Int64]?

    public struct Output: Sendable, Hashable, Codable {
        public var name: String
        public var datum: Int
        public init(name: String, datum: Int) {
            self.name = name
            self.datum = datum
        }
    }

    /// The local engine's run of the program: whether it failed, per output its value (nil: not
    /// written, because its task failed or was cancelled), and for a client's program what each
    /// of its waits and barriers was answered, in order.
    public struct Expected: Sendable, Hashable, Codable {
        public var fails: Bool
        public var outputs: [DataValue?]
        public var answers: [ClusterSimulation.ProgramAnswer]
        public init(fails: Bool, outputs: [DataValue?], answers: [ClusterSimulation.ProgramAnswer] = []) {
            self.fails = fails
            self.outputs = outputs
            self.answers = answers
        }
    }

    public init(
        spec: WorkflowSpec, initial: [[UInt8]], outputs: [Output], expected: Expected? = nil, source: String = "",
        costs: [String: Int64]? = nil
    ) {
        self.spec = spec
        self.source = source
        self.initial = initial
        self.outputs = outputs
        self.expected = expected
        self.costs = costs
    }
}
