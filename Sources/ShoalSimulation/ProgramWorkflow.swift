import ShoalCore

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

/// Runs real task bodies for the simulated peers: the shell's executor. The `Shoal` module gives
/// one (`CallRunner`) that runs exec commands through the hardened exec runner and registered
/// tasks from a registry, exactly as a local run does.
///
/// Bodies run one at a time, synchronously, while virtual time stands still; the task's modelled
/// cost is what the simulator advances by, so a seed replays the same run.
public protocol TaskBodyRunner {
    /// The catalogue keys of the bodies it runs (what every simulated peer advertises).
    var catalogue: [UInt64] { get }

    /// Runs `body` once: the task `label` of the workflow named `workflow`. `directions` are its
    /// accesses' in argument order; `inputs` the bytes of what it reads, in that order over its
    /// reading accesses (nil: the value is absent, its writer's failure was ignored). Returns the
    /// bytes of every version it writes, in order over its writing accesses, or why it failed.
    func run(
        _ body: TaskBody, workflow: String, label: String, accesses: [WorkflowTaskSpec.Access], inputs: [[UInt8]?],
        attempt: Int
    ) -> Result<[[UInt8]], TaskFailure>
}

/// The bytes of the values one simulated peer holds, by their digest (`PayloadDigest`): what a
/// real peer keeps in its shard beside the machines' value references.
///
/// Keyed by digest rather than by version: values are immutable, so two versions with the same
/// bytes (an `inout` task that changed nothing, an ignored failure's pass-through) share one copy,
/// and the shell needs no mirror of the machine's version table. `memory` is lost with the
/// process; `disk` holds what the peer persisted (the initial data of the records it keeps) and
/// survives a restart that keeps the store.
struct PayloadStore {
    var memory: [UInt64: [UInt8]] = [:]
    var disk: [UInt64: [UInt8]] = [:]
    /// The workflows whose values have each digest's bytes (equal bytes are kept once, so two
    /// workflows may share them): the bytes go when the last of them is released.
    var users: [UInt64: Set<WorkflowID>] = [:]
    /// Bytes held in memory (what `Scenario.maxHeldBytes` bounds).
    private(set) var heldBytes = 0

    /// Persistent objects' bytes, by content digest: in memory once received, on disk once the
    /// placement machine persisted the object (a restarted peer has those).
    var objects: [UInt64: [UInt8]] = [:]
    var objectDisk: [UInt64: [UInt8]] = [:]

    mutating func keep(_ bytes: [UInt8], as value: DataValue, for workflow: WorkflowID) {
        if let old = memory.updateValue(bytes, forKey: value.content) { heldBytes -= old.count }
        heldBytes += bytes.count
        users[value.content, default: []].insert(workflow)
    }

    func bytes(of value: DataValue) -> [UInt8]? { memory[value.content] }

    /// How many more bytes keeping the bytes of `values` would hold (bytes already held are shared).
    func bytesToKeep(_ values: [DataValue]) -> Int {
        var seen = Set<UInt64>()
        var more = 0
        for v in values where memory[v.content] == nil && seen.insert(v.content).inserted { more += Int(clamping: v.bytes) }
        return more
    }

    /// Persists the bytes of `values` that are held (a record's initial data).
    mutating func persist(_ values: [DataValue]) {
        for v in values { if let b = memory[v.content] { disk[v.content] = b } }
    }

    /// Workflow `workflow` ended and this peer's machine dropped its versions: the bytes no other
    /// workflow uses go too.
    mutating func release(_ workflow: WorkflowID) {
        for (digest, var workflows) in users where workflows.contains(workflow) {
            workflows.remove(workflow)
            if workflows.isEmpty {
                users[digest] = nil
                if let old = memory.removeValue(forKey: digest) { heldBytes -= old.count }
                disk[digest] = nil
            } else {
                users[digest] = workflows
            }
        }
    }

    /// The process crashed and restarted: what was on disk is what it has (or nothing).
    mutating func restart(keepingDisk: Bool) {
        if !keepingDisk {
            disk = [:]
            objectDisk = [:]
        }
        memory = disk
        heldBytes = memory.values.reduce(0) { $0 + $1.count }
        users = users.filter { disk[$0.key] != nil }
        objects = objectDisk
    }

    /// The process crashed: what it held in memory is gone.
    mutating func crash() {
        memory = [:]
        heldBytes = 0
        objects = [:]
    }
}
