/// What a task call runs: one type for every workflow on the cluster. A Swift program's or a
/// workflow file's registered task (by name, with its encoded arguments), a workflow file's exec
/// command, or, for scenarios only, a modelled body (the call's cost and output size stand for it).
///
/// The machines never look inside a body: they carry it with the call (plan, record) and hand it
/// to the shell that runs the task. Which peers can run it is its catalogue key
/// (`catalogueKey`), derived from the name.
public enum TaskBody: Sendable, Hashable, Codable {
    /// Scenarios: the call's `cost`, `outputBytes` and `failingAttempts` model the body, and the
    /// simulator computes its outputs (`WorkflowPlan.modelledOutputs`).
    case modelled
    /// A registered task (`TaskRegistry`), by name, with its arguments as the program encoded them
    /// (a workflow file's `args:` node as JSON).
    indirect case registered(name: String, arguments: [UInt8])
    /// A command template in its source syntax (`{in:x}` placeholders; see `CommandTemplate`),
    /// run with `/bin/sh` by the exec runner on the accesses' files.
    indirect case exec(command: String)

    /// The catalogue key of the body, or nil for a modelled one (its call names its own key).
    public var catalogueKey: UInt64? {
        switch self {
        case .modelled: nil
        case .registered(let name, _): CatalogueKey.of(task: name)
        case .exec: CatalogueKey.exec
        }
    }

    /// The longest registered name and the largest arguments or command a body may have: a body
    /// travels in every record create (and, on real peers, with the task to its executor).
    public static let maxName = 1_024
    public static let maxText = 1 << 20

    /// Why the body is out of bounds, or nil.
    var problem: String? {
        switch self {
        case .modelled: return nil
        case .registered(let name, let arguments):
            if name.isEmpty || name.utf8.count > Self.maxName { return "a registered task's name is empty or over \(Self.maxName) bytes" }
            if arguments.count > Self.maxText { return "its arguments are over \(Self.maxText) bytes" }
            return nil
        case .exec(let command):
            return command.utf8.count > Self.maxText ? "its command is over \(Self.maxText) bytes" : nil
        }
    }
}

/// A call as its executor needs it: what to run, its accesses (datum and direction, in argument
/// order: they match the inputs and outputs the executor is handed) and its label. It travels with
/// a task handed to a peer (`StealableTask.call`) for real bodies; a modelled body needs none (the
/// simulator models it from its scenario). Immutable and shared: a grant copies a reference.
public final class ExecutableCall: Sendable, Hashable, Codable, CustomStringConvertible {
    public let body: TaskBody
    public let accesses: [WorkflowTaskSpec.Access]
    public let label: String

    public init(body: TaskBody, accesses: [WorkflowTaskSpec.Access], label: String) {
        self.body = body
        self.accesses = accesses
        self.label = label
    }

    public static func == (a: ExecutableCall, b: ExecutableCall) -> Bool {
        a === b || (a.body == b.body && a.accesses == b.accesses && a.label == b.label)
    }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(body)
        hasher.combine(accesses)
        hasher.combine(label)
    }

    enum CodingKeys: String, CodingKey { case body, accesses, label }
    public convenience init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            body: try c.decode(TaskBody.self, forKey: .body),
            accesses: try c.decode([WorkflowTaskSpec.Access].self, forKey: .accesses),
            label: try c.decode(String.self, forKey: .label))
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(body, forKey: .body)
        try c.encode(accesses, forKey: .accesses)
        try c.encode(label, forKey: .label)
    }

    public var description: String { "call '\(label)'" }

    /// Its size in a message (for the simulated network's bandwidth model).
    var byteSize: Int {
        let text: Int
        switch body {
        case .modelled: text = 0
        case .registered(let name, let arguments): text = name.utf8.count + arguments.count
        case .exec(let command): text = command.utf8.count
        }
        return 16 + text + 5 * accesses.count + label.utf8.count
    }
}

/// Catalogue keys: which bodies a peer can run, as 64-bit keys that gossip and steal requests
/// carry. A key is derived from a name (the first 8 bytes of the BLAKE2b digest of a kind prefix
/// and the name, little-endian), so every peer computes the same key for the same task without
/// coordination; a registry refuses two names with one key (`TaskRegistry.register`).
public enum CatalogueKey {
    /// The key of the registered task `name`.
    public static func of(task name: String) -> UInt64 { derive("task:" + name) }

    /// Every exec command runs on the one exec runner: one key for all of them.
    public static let exec: UInt64 = derive("exec:/bin/sh")

    /// The key of a scenario's modelled body `name` (a shape's kinds of task).
    public static func modelled(_ name: String) -> UInt64 { derive("model:" + name) }

    static func derive(_ text: String) -> UInt64 {
        Array(text.utf8).withUnsafeBytes { Checksum.blake2bWord($0) }
    }
}

/// The 64-bit digest the machines carry for a value's real bytes (`DataValue.content`): their
/// XXH64 (`FastDigest`, why not BLAKE2b there). The shell that receives the bytes checks it on
/// every transfer.
public enum PayloadDigest {
    public static func of(_ bytes: [UInt8]) -> UInt64 {
        bytes.withUnsafeBytes { FastDigest.xxh64($0) }
    }

    /// The value reference of `bytes`: their size and digest.
    public static func value(of bytes: [UInt8]) -> DataValue {
        DataValue(bytes: UInt64(bytes.count), content: of(bytes))
    }

    /// Whether `bytes` are the value `value` refers to.
    public static func matches(_ bytes: [UInt8], _ value: DataValue) -> Bool {
        UInt64(bytes.count) == value.bytes && of(bytes) == value.content
    }
}
