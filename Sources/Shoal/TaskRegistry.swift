import Foundation
import ShoalCore

/// The tasks a peer can run, by name: what a workflow file's `task: name` refers to, and (with the
/// cluster) what a peer advertises in gossip so it is only given tasks it can run.
public struct TaskRegistry: Sendable {
    struct Entry: Sendable {
        /// Decodes the JSON arguments once and returns the body to run; a task with a result writes
        /// it to parameter `resultSlot`.
        var make: @Sendable (_ argsJSON: [UInt8], _ resultSlot: Int?) throws -> @Sendable (inout TaskContext) throws -> Void
    }

    private var entries: [String: Entry] = [:]
    /// The name of each catalogue key (`CatalogueKey.of(task:)`), to refuse two names with one key.
    private var nameOfKey: [UInt64: String] = [:]

    public init() {}

    /// Registers `task` under its name. A task with a result writes it to the last `out` datum of
    /// a workflow-file call.
    public mutating func register<Args, Result>(_ task: TaskDefinition<Args, Result>) {
        precondition(entries[task.name] == nil, "task '\(task.name)' is registered twice")
        let key = CatalogueKey.of(task: task.name)
        if let other = nameOfKey[key] {
            preconditionFailure("tasks '\(other)' and '\(task.name)' have one catalogue key (\(key)): rename one")
        }
        nameOfKey[key] = task.name
        let body = task.body
        let returnsValue = Result.self != Void.self
        entries[task.name] = Entry(
            make: { argsJSON, resultSlot in
                let args = try JSONDecoder().decode(Args.self, from: Data(argsJSON))
                let slot = returnsValue ? resultSlot : nil
                return { context in
                    let result = try body(args, &context)
                    if let slot { try context.setOutput(at: slot, result) }
                }
            })
    }

    /// The registered names, sorted.
    public var names: [String] { entries.keys.sorted() }

    /// The catalogue keys of the registered tasks (what a peer advertises it can run).
    public var catalogue: [UInt64] { nameOfKey.keys.sorted() }

    public func contains(_ name: String) -> Bool { entries[name] != nil }

    func entry(_ name: String) -> Entry? { entries[name] }
}

/// A datum of a workflow file: an immutable file holding one version's bytes.
public struct FileValue: Sendable, Hashable {
    public let path: String
    public init(path: String) { self.path = path }

    public func bytes() throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }
}

extension TaskContext {
    /// The bytes of the parameter at `position`, for workflow-file data (a file, or bytes a
    /// registered task produced).
    public func inputBytes(at position: Int) throws -> [UInt8] {
        if let f = try? input(at: position, as: FileValue.self) { return try f.bytes() }
        return try input(at: position, as: [UInt8].self)
    }

    /// Sets the parameter at `position` to `bytes` (workflow-file data).
    public mutating func setOutputBytes(at position: Int, _ bytes: [UInt8]) throws {
        try setOutput(at: position, bytes)
    }
}
