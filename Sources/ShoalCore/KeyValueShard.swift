/// The storage contract every peer's shard fulfils: the LMDB-backed `LMDBShard` (ShoalStore) on real
/// peers and `MemoryShard` in tests and the simulator. Both run the same conformance suite.
///
/// Contract:
/// - Keys and values are bytes. Keys sort bytewise (as LMDB's default comparator does), so
///   big-endian sequence numbers append in write order.
/// - `apply(_:)` is atomic and durable: when it returns, every operation of the batch is stored, and
///   after a crash either all of a batch is there or none of it.
/// - Every stored value carries a BLAKE2b checksum over its key and value (`ShardRecord`), written
///   with it and verified on every read; a mismatch throws `ShardError.checksumMismatch` naming the
///   table and key, never returns bad bytes. A record found under another key than the one it was
///   written under (a flipped bit in a stored key) fails the same way.
/// - `update(_:)` is a read-modify-write: its reads and its batch are one transaction, serialised
///   with every other write to the same store, in this process and in others (LMDB's writer lock
///   lives in the store's lock file). A value computed from what was read (the next version
///   number) can therefore never be computed twice from the same state.
public protocol KeyValueShard: AnyObject, Sendable {
    /// The value stored under `key`, or nil. Throws `ShardError.checksumMismatch` on corruption.
    func get(_ key: [UInt8], in table: ShardTable) throws -> [UInt8]?
    /// Applies every operation of `batch` in one atomic, durable transaction.
    func apply(_ batch: WriteBatch) throws
    /// Runs `body` inside one write transaction and applies the batch it returns in that same
    /// transaction, atomically and durably, as `apply` does.
    ///
    /// `body` reads through the `ShardReader` it is given, which sees the latest committed state
    /// (no other write, from this process or another, can commit between those reads and this
    /// batch) and verifies every record as `get` does. When `body` throws, or the batch is
    /// invalid (`ShardError.invalidKey`), nothing is written and the error is rethrown.
    ///
    /// `body` must not write to the shard itself (`apply`, `put`, `delete`, another `update`):
    /// the write transaction is already held, so that would deadlock. It should be short, since
    /// every other writer waits for it. The reader is valid only while `body` runs.
    func update(_ body: (any ShardReader) throws -> WriteBatch) throws
    /// Runs `body` with a reader on one committed state: all its reads see the same batches, so
    /// two values written together (a persistent object and its metadata) are read together,
    /// never one from before a write and one from after. Writes may commit meanwhile; the
    /// reader does not see them. Returns what `body` returns.
    ///
    /// Like `update`'s, the reader verifies every record and is valid only while `body` runs;
    /// `body` must not write to the shard (`MemoryShard` holds its writer lock for it).
    func read<R>(_ body: (any ShardReader) throws -> R) throws -> R
    /// Up to `limit` entries whose key starts with `prefix`, in key order, starting after `after`.
    ///
    /// Throws at the first entry whose record fails verification (`checksumMismatch`,
    /// `malformedRecord`). The default implementation is `scanReportingDamage` with that rule.
    func scan(_ table: ShardTable, prefix: [UInt8], after: [UInt8]?, limit: Int) throws -> [ShardEntry]
    /// Like `scan`, but an entry whose record fails verification is returned too, with the
    /// verification error in place of its value, so a listing can show every entry and mark the
    /// damaged ones. Never returns unverified bytes as a value. Throws only when the store itself
    /// fails (`ShardError.store`).
    func scanReportingDamage(_ table: ShardTable, prefix: [UInt8], after: [UInt8]?, limit: Int) throws -> [ScannedEntry]
    /// Number of entries in `table`.
    func count(_ table: ShardTable) throws -> Int
    /// Bytes of user values (not counting checksums and metadata) held in all tables.
    func storedBytes() throws -> Int
}

extension KeyValueShard {
    public func scan(_ table: ShardTable, prefix: [UInt8], after: [UInt8]?, limit: Int) throws -> [ShardEntry] {
        try scanReportingDamage(table, prefix: prefix, after: after, limit: limit).map { entry in
            ShardEntry(key: entry.key, value: try entry.value.get())
        }
    }

    public func put(_ key: [UInt8], _ value: [UInt8], in table: ShardTable) throws {
        try apply(WriteBatch([.put(table, key: key, value: value)]))
    }

    public func delete(_ key: [UInt8], in table: ShardTable) throws {
        try apply(WriteBatch([.delete(table, key: key)]))
    }
}

/// Reads inside one transaction of a shard: in `KeyValueShard.update`, the state its batch will be
/// applied to; in `KeyValueShard.read`, one committed state. Valid only while the body it was
/// passed to runs.
public protocol ShardReader {
    /// The value stored under `key`, or nil; verified like `KeyValueShard.get` (throws
    /// `ShardError.checksumMismatch` or `.malformedRecord` on corruption, `.invalidKey` for a bad key).
    func get(_ key: [UInt8], in table: ShardTable) throws -> [UInt8]?
}

/// The named databases of a shard.
public enum ShardTable: String, CaseIterable, Sendable, Codable {
    /// User values: persistent objects (`PersistentObjects`) and `shoal kv` entries, by name.
    case values
    /// Version metadata of persistent objects (version number, size, type, writer).
    case versions
    /// Workflow records: the DAG and each task's state, for recovery and takeover.
    case workflows
    /// Replicas of persistent objects held for the cluster's placement, by object key
    /// (`ObjectRecord`). Added after the first three: `LMDBShard` creates it in a store that lacks it.
    case objects
    /// The bytes of values a peer persisted: a workflow record's initial data and persistent
    /// objects' bytes, by digest (`PayloadStore`). Created like `objects` in an older store.
    case payloads
}

public struct ShardEntry: Sendable, Equatable {
    public var key: [UInt8]
    public var value: [UInt8]
    public init(key: [UInt8], value: [UInt8]) {
        self.key = key
        self.value = value
    }
}

/// One entry of `KeyValueShard.scanReportingDamage`: a key and either its verified value or the
/// reason its record failed verification (`ShardError.checksumMismatch` or `.malformedRecord`).
public struct ScannedEntry: Sendable, Equatable {
    public var key: [UInt8]
    public var value: Result<[UInt8], ShardError>
    public init(key: [UInt8], value: Result<[UInt8], ShardError>) {
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
    /// The stored checksum does not match the stored key and value.
    case checksumMismatch(table: ShardTable, key: [UInt8])
    /// A stored record is too short or has an unknown format byte.
    case malformedRecord(table: ShardTable, key: [UInt8])
    /// An empty key, or a key longer than the store allows (LMDB: 511 bytes).
    case invalidKey(length: Int, maxLength: Int)
    /// The store in `directory` cannot be used as it is: its data file is empty, too short, not an
    /// LMDB file, or shorter than its own metadata says (truncated). The shard refuses to open it
    /// rather than re-create it or read past its end, and leaves the file as it found it.
    case damaged(directory: String, reason: String)
    /// The underlying store failed; `code` is the store's own code (for LMDB an `MDB_*` or errno).
    case store(operation: String, code: Int32, message: String)

    public var description: String {
        switch self {
        case .checksumMismatch(let table, let key):
            "checksum mismatch in table '\(table.rawValue)' for key '\(KeyText.escaped(key))': the stored record is corrupt"
        case .malformedRecord(let table, let key):
            "malformed record in table '\(table.rawValue)' for key '\(KeyText.escaped(key))'"
        case .invalidKey(let length, let maxLength):
            "invalid key of \(length) bytes (keys must be 1 to \(maxLength) bytes)"
        case .damaged(let directory, let reason):
            "the store in \(directory) is damaged: \(reason)"
        case .store(let operation, let code, let message):
            "store error in \(operation): \(message) (code \(code))"
        }
    }
}

/// How keys (bytes) are shown to people: in messages and in `shoal kv ls`.
public enum KeyText {
    /// `key` as text, never converted: printable UTF-8 as is, a backslash as `\\`, and every
    /// other byte (invalid UTF-8, control characters) as `\xHH`. Two different keys never look
    /// the same, and printable UTF-8 without a backslash looks like itself.
    public static func escaped(_ key: [UInt8]) -> String {
        var text = ""
        var parser = Unicode.UTF8.ForwardParser()
        var bytes = key.makeIterator()
        var index = 0
        func hex(_ count: Int) {
            for byte in key[index..<index + count] {
                text += "\\x" + String(byte, radix: 16, uppercase: false).leftPadded(to: 2)
            }
        }
        while true {
            switch parser.parseScalar(from: &bytes) {
            case .valid(let encoded):
                let scalar = Unicode.UTF8.decode(encoded)
                if scalar == "\\" {
                    text += "\\\\"
                } else if isPrintable(scalar) {
                    text.unicodeScalars.append(scalar)
                } else {
                    hex(encoded.count)
                }
                index += encoded.count
            case .error(let length):
                hex(length)
                index += length
            case .emptyInput:
                return text
            }
        }
    }

    /// Not a C0 or C1 control character or DEL.
    private static func isPrintable(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value >= 0x20 && !(0x7f...0x9f).contains(scalar.value)
    }
}

extension String {
    func leftPadded(to width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}
