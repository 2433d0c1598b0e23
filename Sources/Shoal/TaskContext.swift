/// A value held by the runtime: one box per data version, shared by readers, never copied on the
/// hot path. Values stay in memory unencoded on the peer that produced them.
final class ValueBox: @unchecked Sendable {
    /// Written once before the version is announced, or taken by the one task allowed to consume it.
    var value: Any?
    init(_ value: Any) { self.value = value }
}

/// What a running task sees: the values of the data it reads and the slots for those it writes.
///
/// A task body reads with `read(_:)`, writes with `write(_:_:)` and modifies in place with
/// `update(_:_:)`, naming the data by the `DataRef`s it was submitted with. Workflow-file tasks
/// address their data by position instead (`input(at:as:)`, `setOutput(at:_:)`).
public struct TaskContext {
    /// The task's name as submitted (for messages).
    public let taskName: String
    /// 1 for the first attempt, 2 for the first retry, ...
    public let attempt: Int
    let accesses: [ResolvedAccess]
    var inputs: [ValueBox?]
    var outputs: [Any?]
    /// Data by position as the task lists them (workflow files), if different from `accesses`.
    let labels: [String]

    init(taskName: String, attempt: Int, accesses: [ResolvedAccess], inputs: [ValueBox?], labels: [String] = []) {
        self.taskName = taskName
        self.attempt = attempt
        self.accesses = accesses
        self.inputs = inputs
        self.outputs = accesses.isEmpty ? [] : Array(repeating: nil, count: accesses.count)
        self.labels = labels
    }

    /// The number of data parameters.
    public var parameterCount: Int { accesses.count }
    /// The direction of the parameter at `position`.
    public func direction(at position: Int) -> Direction { accesses[position].direction }

    func position(of datum: DatumID, _ what: String) throws(TaskContextError) -> Int {
        guard let i = accesses.firstIndex(where: { $0.datum == datum }) else {
            throw TaskContextError(task: taskName, message: "\(what) \(datum) which the task was not submitted with")
        }
        return i
    }

    /// The value of a datum the task reads (`in`, `inout`, `commutative`, `concurrent`).
    public func read<T>(_ ref: DataRef<T>) throws -> T {
        try input(at: position(of: ref.datum, "reads"), as: T.self)
    }

    /// Sets the new value of a datum the task writes (`out`, `inout`, `commutative`).
    public mutating func write<T: Sendable>(_ ref: DataRef<T>, _ value: T) throws {
        try setOutput(at: position(of: ref.datum, "writes"), value)
    }

    /// Modifies a datum the task reads and writes (`inout`, `commutative`) in place. When the task
    /// is the last reader of the old version, the value is moved, not copied.
    public mutating func update<T: Sendable>(_ ref: DataRef<T>, _ body: (inout T) throws -> Void) throws {
        let i = try position(of: ref.datum, "updates")
        guard accesses[i].direction.reads && accesses[i].direction.writes else {
            throw TaskContextError(
                task: taskName, message: "updates \(describe(i)) which it accesses as '\(accesses[i].direction)'")
        }
        var value: T = try takeInput(at: i)
        try body(&value)
        outputs[i] = value
    }

    /// The value of the parameter at `position`.
    public func input<T>(at position: Int, as type: T.Type = T.self) throws -> T {
        guard position < accesses.count, accesses[position].direction.reads else {
            throw TaskContextError(task: taskName, message: "reads \(describe(position)) which it does not read")
        }
        if let pending = outputs[position] {
            guard let v = pending as? T else { throw typeMismatch(position, T.self, pending) }
            return v
        }
        guard let box = inputs[position], let any = box.value else {
            throw TaskContextError(
                task: taskName,
                message: "reads \(describe(position)), which has no value (its writer failed and the failure was ignored)")
        }
        if let v = any as? T { return v }
        guard let encoded = any as? EncodedValue else { throw typeMismatch(position, T.self, any) }
        // Bytes from another peer: decoded once, as the type the task reads (`PeerValues`).
        do {
            let v = try PeerValues.decode(encoded.bytes, as: T.self)
            box.value = v
            return v
        } catch {
            throw TaskContextError(
                task: taskName, message: "reads \(describe(position)) as \(T.self), but its bytes do not decode as one: \(error)")
        }
    }

    /// Takes the input at `position` for modification, moving it out of its box when this task is
    /// the only one that can still read it.
    mutating func takeInput<T>(at position: Int) throws -> T {
        if let pending = outputs[position] {
            outputs[position] = nil
            guard let v = pending as? T else { throw typeMismatch(position, T.self, pending) }
            return v
        }
        let v: T = try input(at: position)
        // Check the array's own reference: binding the box to a local first would hold a second
        // one, and the value would never be found unique (always copied).
        if isKnownUniquelyReferenced(&inputs[position]) {
            inputs[position]?.value = nil
        }
        return v
    }

    /// Sets the new value of the parameter at `position`.
    public mutating func setOutput<T: Sendable>(at position: Int, _ value: T) throws {
        guard position < accesses.count, accesses[position].direction.writes else {
            throw TaskContextError(task: taskName, message: "writes \(describe(position)) which it does not write")
        }
        outputs[position] = value
    }

    func describe(_ position: Int) -> String {
        position < labels.count ? "'\(labels[position])'" : "parameter \(position) (\(accesses[position].datum))"
    }

    func typeMismatch(_ position: Int, _ expected: Any.Type, _ actual: Any) -> TaskContextError {
        TaskContextError(
            task: taskName, message: "reads \(describe(position)) as \(expected) but it holds \(type(of: actual))")
    }
}

/// A task body used its data in a way it was not submitted with (a programmer error reported as
/// the task's failure).
public struct TaskContextError: Error, CustomStringConvertible {
    public var task: String
    public var message: String
    public init(task: String, message: String) {
        self.task = task
        self.message = message
    }
    public var description: String { "task '\(task)' \(message)" }
}
