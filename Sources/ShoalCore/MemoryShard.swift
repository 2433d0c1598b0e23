import Synchronization

/// An in-memory `KeyValueShard`: the stand-in for `LMDBShard` in tests and the simulator.
///
/// It keeps each table as an array sorted bytewise by key and stores every value in the same
/// record format as `LMDBShard` (`ShardRecord`: format byte, BLAKE2b checksum of key and value,
/// bytes), verified on every read, so corruption injected with `_overwriteRawRecordForTesting` behaves exactly as
/// on disk. Keys are limited to `ShardRecord.maxKeyLength` bytes, as in LMDB.
///
/// Thread-safe: every operation holds one lock; `apply(_:)` validates the whole batch before
/// changing anything, so a batch is applied entirely or not at all. Writes (`apply`, `update`)
/// are also serialised by a writer lock, held by `update` from its first read to its commit, as
/// LMDB's writer lock is, so nothing commits between an update's reads and its batch. "Durable"
/// here means "until this object is released".
public final class MemoryShard: KeyValueShard {
    private struct Entry: Sendable {
        var key: [UInt8]
        var record: [UInt8]
    }

    private struct State: Sendable {
        var tables: [ShardTable: [Entry]] = [:]
        var storedBytes = 0
    }

    private let state = Mutex(State())
    /// Held by every write: `apply` for its commit, `update` for its whole body and commit.
    /// Reads take only `state`, so a body may read through its reader (or `get`) while holding it.
    private let writer = Mutex(())

    /// The longest key accepted (the same limit as LMDB's default build).
    public let maxKeyLength = ShardRecord.maxKeyLength

    public init() {}

    public func get(_ key: [UInt8], in table: ShardTable) throws -> [UInt8]? {
        try ShardRecord.validate(key: key, maxLength: maxKeyLength)
        let record: [UInt8]? = state.withLock { state in
            let entries = state.tables[table] ?? []
            let index = Self.lowerBound(key, in: entries)
            guard index < entries.count, entries[index].key == key else { return nil }
            return entries[index].record
        }
        guard let record else { return nil }
        return try record.withUnsafeBytes { try ShardRecord.decode($0, table: table, key: key) }
    }

    public func apply(_ batch: WriteBatch) throws {
        let encoded = try encode(batch)
        writer.withLock { _ in commit(encoded) }
    }

    public func update(_ body: (any ShardReader) throws -> WriteBatch) throws {
        try writer.withLock { _ in
            let reader = Reader(shard: self)
            defer { reader.close() }
            commit(try encode(try body(reader)))
        }
    }

    /// Holds the writer lock, so no batch commits while `body` reads: the reads see one state.
    public func read<R>(_ body: (any ShardReader) throws -> R) throws -> R {
        try writer.withLock { _ in
            let reader = Reader(shard: self)
            defer { reader.close() }
            return try body(reader)
        }
    }

    /// The reader `update` and `read` pass their body; refuses to read once the body has returned.
    private final class Reader: ShardReader {
        private let shard: MemoryShard
        private var open = true
        init(shard: MemoryShard) { self.shard = shard }
        func close() { open = false }

        func get(_ key: [UInt8], in table: ShardTable) throws -> [UInt8]? {
            precondition(open, "a ShardReader was used after the update or read it was given to ended")
            return try shard.get(key, in: table)
        }
    }

    /// `batch` with every value replaced by its record, after checking every key: the part of a
    /// write that can fail, done before anything changes (and, for `apply`, outside the locks).
    private func encode(_ batch: WriteBatch) throws -> [WriteBatch.Operation] {
        for operation in batch.operations {
            switch operation {
            case .put(_, let key, _), .delete(_, let key):
                try ShardRecord.validate(key: key, maxLength: maxKeyLength)
            }
        }
        return batch.operations.map { operation in
            if case .put(let table, let key, let value) = operation {
                return .put(table, key: key, value: ShardRecord.encode(key: key, value: value))
            }
            return operation
        }
    }

    /// Stores operations `encode` made; cannot fail. Call with `writer` held.
    private func commit(_ encoded: [WriteBatch.Operation]) {
        state.withLock { state in
            for operation in encoded {
                switch operation {
                case .put(let table, let key, let record):
                    Self.store(record, at: key, in: table, state: &state)
                case .delete(let table, let key):
                    Self.store(nil, at: key, in: table, state: &state)
                }
            }
        }
    }

    public func scanReportingDamage(_ table: ShardTable, prefix: [UInt8], after: [UInt8]?, limit: Int) throws
        -> [ScannedEntry]
    {
        precondition(limit >= 0, "scan limit must not be negative, got \(limit)")
        guard limit > 0 else { return [] }
        let raw: [Entry] = state.withLock { state in
            let entries = state.tables[table] ?? []
            var index = Self.lowerBound(prefix, in: entries)
            if let after, !after.lexicographicallyPrecedes(prefix) {
                index = max(index, Self.upperBound(after, in: entries))
            }
            var found: [Entry] = []
            while index < entries.count, found.count < limit, entries[index].key.starts(with: prefix) {
                found.append(entries[index])
                index += 1
            }
            return found
        }
        // Verify outside the lock.
        return raw.map { entry in
            ScannedEntry(
                key: entry.key,
                value: entry.record.withUnsafeBytes { ShardRecord.verify($0, table: table, key: entry.key) })
        }
    }

    public func count(_ table: ShardTable) throws -> Int {
        state.withLock { $0.tables[table]?.count ?? 0 }
    }

    public func storedBytes() throws -> Int {
        state.withLock { $0.storedBytes }
    }

    /// TEST ONLY: replaces the raw stored record (format byte, checksum, value) under `key`
    /// without computing a checksum, to simulate corruption; `nil` removes it. Returns the
    /// previous raw record. Mirrors `LMDBShard._overwriteRawRecordForTesting`.
    @discardableResult
    public func _overwriteRawRecordForTesting(_ key: [UInt8], in table: ShardTable, with record: [UInt8]?) -> [UInt8]? {
        state.withLock { state in
            let entries = state.tables[table] ?? []
            let index = Self.lowerBound(key, in: entries)
            let previous = index < entries.count && entries[index].key == key ? entries[index].record : nil
            Self.store(record, at: key, in: table, state: &state)
            return previous
        }
    }

    // MARK: - Sorted-array helpers

    private static func store(_ record: [UInt8]?, at key: [UInt8], in table: ShardTable, state: inout State) {
        var entries = state.tables.removeValue(forKey: table) ?? []
        let index = lowerBound(key, in: entries)
        let exists = index < entries.count && entries[index].key == key
        if exists {
            state.storedBytes -= ShardRecord.valueByteCount(ofRecordBytes: entries[index].record.count)
        }
        if let record {
            state.storedBytes += ShardRecord.valueByteCount(ofRecordBytes: record.count)
            if exists {
                entries[index].record = record
            } else {
                entries.insert(Entry(key: key, record: record), at: index)
            }
        } else if exists {
            entries.remove(at: index)
        }
        state.tables[table] = entries
    }

    /// The first index whose key is not less than `key`.
    private static func lowerBound(_ key: [UInt8], in entries: [Entry]) -> Int {
        var low = 0
        var high = entries.count
        while low < high {
            let mid = (low + high) / 2
            if entries[mid].key.lexicographicallyPrecedes(key) { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// The first index whose key is greater than `key`.
    private static func upperBound(_ key: [UInt8], in entries: [Entry]) -> Int {
        var low = 0
        var high = entries.count
        while low < high {
            let mid = (low + high) / 2
            if key.lexicographicallyPrecedes(entries[mid].key) { high = mid } else { low = mid + 1 }
        }
        return low
    }
}
