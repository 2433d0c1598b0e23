/// The storage contract every peer's shard fulfils: the LMDB-backed `LMDBShard` (ShoalStore) on real
/// peers and `MemoryShard` in tests and the simulator. Both run the same conformance suite.
///
/// Contract:
/// - Keys and values are bytes. Keys sort bytewise (as LMDB's default comparator does), so
///   big-endian sequence numbers append in write order.
/// - `apply(_:)` is atomic and durable: when it returns, every operation of the batch is stored, and
///   after a crash either all of a batch is there or none of it.
/// - Every stored value carries a BLAKE2b checksum written with it and verified on every read; a
///   mismatch throws `ShardError.checksumMismatch` naming the table and key, never returns bad bytes.
public protocol KeyValueShard: AnyObject, Sendable {
    /// The value stored under `key`, or nil. Throws `ShardError.checksumMismatch` on corruption.
    func get(_ key: [UInt8], in table: ShardTable) throws -> [UInt8]?
    /// Applies every operation of `batch` in one atomic, durable transaction.
    func apply(_ batch: WriteBatch) throws
    /// Up to `limit` entries whose key starts with `prefix`, in key order, starting after `after`.
    func scan(_ table: ShardTable, prefix: [UInt8], after: [UInt8]?, limit: Int) throws -> [ShardEntry]
    /// Number of entries in `table`.
    func count(_ table: ShardTable) throws -> Int
    /// Bytes of user values (not counting checksums and metadata) held in all tables.
    func storedBytes() throws -> Int
}

extension KeyValueShard {
    public func put(_ key: [UInt8], _ value: [UInt8], in table: ShardTable) throws {
        try apply(WriteBatch([.put(table, key: key, value: value)]))
    }

    public func delete(_ key: [UInt8], in table: ShardTable) throws {
        try apply(WriteBatch([.delete(table, key: key)]))
    }
}

/// The named databases of a shard.
public enum ShardTable: String, CaseIterable, Sendable, Codable {
    /// User values: persistent objects and `shoal kv` entries, by name.
    case values
    /// Version metadata of persistent objects (version number, size, type, writer).
    case versions
    /// Workflow records: the DAG and each task's state, for recovery and takeover.
    case workflows
}

public struct ShardEntry: Sendable, Equatable {
    public var key: [UInt8]
    public var value: [UInt8]
    public init(key: [UInt8], value: [UInt8]) {
        self.key = key
        self.value = value
    }
}

/// A batch of writes applied atomically. Later operations on the same key win.
public struct WriteBatch: Sendable, Equatable {
    public enum Operation: Sendable, Equatable {
        case put(ShardTable, key: [UInt8], value: [UInt8])
        case delete(ShardTable, key: [UInt8])
    }

    public var operations: [Operation]
    public init(_ operations: [Operation] = []) { self.operations = operations }
    public var isEmpty: Bool { operations.isEmpty }
    public mutating func put(_ key: [UInt8], _ value: [UInt8], in table: ShardTable) {
        operations.append(.put(table, key: key, value: value))
    }
    public mutating func delete(_ key: [UInt8], in table: ShardTable) {
        operations.append(.delete(table, key: key))
    }
}

public enum ShardError: Error, Equatable, CustomStringConvertible {
    /// The stored checksum does not match the stored bytes.
    case checksumMismatch(table: ShardTable, key: [UInt8])
    /// A stored record is too short or has an unknown format byte.
    case malformedRecord(table: ShardTable, key: [UInt8])
    /// An empty key, or a key longer than the store allows (LMDB: 511 bytes).
    case invalidKey(length: Int, maxLength: Int)
    /// The underlying store failed; `code` is the store's own code (for LMDB an `MDB_*` or errno).
    case store(operation: String, code: Int32, message: String)

    public var description: String {
        switch self {
        case .checksumMismatch(let table, let key):
            "checksum mismatch in table '\(table.rawValue)' for key '\(ShardError.show(key))': the stored value is corrupt"
        case .malformedRecord(let table, let key):
            "malformed record in table '\(table.rawValue)' for key '\(ShardError.show(key))'"
        case .invalidKey(let length, let maxLength):
            "invalid key of \(length) bytes (keys must be 1 to \(maxLength) bytes)"
        case .store(let operation, let code, let message):
            "store error in \(operation): \(message) (code \(code))"
        }
    }

    static func show(_ key: [UInt8]) -> String {
        if let text = String(validating: key, as: UTF8.self), text.allSatisfy({ !$0.isASCII || $0.asciiValue! >= 32 }) {
            return text
        }
        return "0x" + key.map { String($0, radix: 16).leftPadded(to: 2) }.joined()
    }
}

extension String {
    func leftPadded(to width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}
