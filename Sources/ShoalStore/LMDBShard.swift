import CLMDB
import Foundation
import ShoalCore
import Synchronization

/// A `KeyValueShard` stored in an LMDB environment: one environment per data directory, one
/// named database per `ShardTable` (named by its raw value) plus `_shoal` for the shard's own
/// accounting (the stored-bytes counter).
///
/// Contract (beyond `KeyValueShard`):
/// - The environment is opened with `MDB_NOTLS`, so read transactions may be used from any thread
///   (Swift tasks hop threads). Reads use short read-only transactions from a small pool.
/// - `apply(_:)` is one write transaction (group commit: one fsync for the whole batch), run
///   synchronously on the calling thread and serialized by a lock. Call it from a thread that may
///   block, not from Swift's cooperative pool on a hot path.
/// - Every record is `ShardRecord` bytes (format byte, BLAKE2b checksum, value), verified on every
///   `get` and `scan`.
/// - LMDB failures surface as `ShardError.store(operation:code:message:)` with the `MDB_*` code or
///   errno and `mdb_strerror` text; a full map (`MDB_MAP_FULL`) says which setting to raise.
/// - The directory stays a plain LMDB environment, readable by `mdb_stat -a DIR` and `mdb_dump`.
public final class LMDBShard: KeyValueShard, @unchecked Sendable {
    // @unchecked Sendable: `env` and the database handles are immutable after `init` and LMDB
    // allows them on any thread with MDB_NOTLS; write transactions are serialized by `writeLock`,
    // each pooled read transaction is used by one caller at a time (taken out of `readPool`).

    /// Tunables of the environment.
    public struct Settings: Sendable, Equatable {
        /// The size of the memory map, i.e. the largest the data file may grow. Virtual address
        /// space only; the file grows as data is written. Default 64 GiB.
        public var mapSizeBytes: Int
        /// The most concurrent read transactions (LMDB reader slots), across processes.
        public var maxReaders: Int
        /// Skip the fsync at each commit (`MDB_NOSYNC`). A process crash still loses nothing that
        /// was committed, but an OS crash or power loss may lose the latest batches. Default off.
        public var noSync: Bool
        /// The most idle read transactions kept for reuse.
        public var readTransactionPoolMax: Int

        public init(
            mapSizeBytes: Int = 64 << 30, maxReaders: Int = 256, noSync: Bool = false,
            readTransactionPoolMax: Int = 16
        ) {
            self.mapSizeBytes = mapSizeBytes
            self.maxReaders = maxReaders
            self.noSync = noSync
            self.readTransactionPoolMax = readTransactionPoolMax
        }
    }

    /// The data directory holding `data.mdb` and `lock.mdb`.
    public let directory: String
    public let settings: Settings
    /// The longest key this environment accepts (`mdb_env_get_maxkeysize`, 511 by default).
    public let maxKeyLength: Int

    private let env: OpaquePointer
    private let tables: [ShardTable: MDB_dbi]
    private let metaDBI: MDB_dbi
    private let writeLock = Mutex(())
    private let readPool = Mutex(ReadPool())

    private static let metaName = "_shoal"
    private static let storedBytesKey = Array("storedBytes".utf8)

    /// Opens (creating if missing) the LMDB environment in `directory`.
    ///
    /// Throws `ShardError.store` when the directory cannot be created or LMDB cannot open it.
    public init(directory: String, settings: Settings = Settings()) throws {
        self.directory = directory
        self.settings = settings
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ShardError.store(
                operation: "create data directory '\(directory)'", code: Int32(EIO), message: "\(error)")
        }

        var envPointer: OpaquePointer?
        try Self.check(mdb_env_create(&envPointer), "mdb_env_create")
        guard let env = envPointer else {
            throw ShardError.store(operation: "mdb_env_create", code: -1, message: "no environment returned")
        }
        do {
            try Self.check(mdb_env_set_maxdbs(env, MDB_dbi(ShardTable.allCases.count + 1)), "mdb_env_set_maxdbs")
            try Self.check(mdb_env_set_mapsize(env, settings.mapSizeBytes), "mdb_env_set_mapsize")
            try Self.check(mdb_env_set_maxreaders(env, UInt32(settings.maxReaders)), "mdb_env_set_maxreaders")
            var flags = UInt32(MDB_NOTLS)
            if settings.noSync { flags |= UInt32(MDB_NOSYNC) }
            try Self.check(mdb_env_open(env, directory, flags, 0o644), "mdb_env_open '\(directory)'")
        } catch {
            mdb_env_close(env)
            throw error
        }
        self.env = env
        self.maxKeyLength = Int(mdb_env_get_maxkeysize(env))
        // Free reader slots left by processes that died (e.g. killed) while reading.
        var staleReaders: Int32 = 0
        _ = mdb_reader_check(env, &staleReaders)

        // Open (create) every named database in one write transaction; handles stay valid
        // for the environment's life.
        var opened: [ShardTable: MDB_dbi] = [:]
        var meta: MDB_dbi = 0
        do {
            var txn: OpaquePointer?
            try Self.check(mdb_txn_begin(env, nil, 0, &txn), "mdb_txn_begin (open databases)")
            do {
                for table in ShardTable.allCases {
                    var dbi: MDB_dbi = 0
                    try Self.check(mdb_dbi_open(txn, table.rawValue, UInt32(MDB_CREATE), &dbi), "mdb_dbi_open '\(table.rawValue)'")
                    opened[table] = dbi
                }
                try Self.check(mdb_dbi_open(txn, Self.metaName, UInt32(MDB_CREATE), &meta), "mdb_dbi_open '\(Self.metaName)'")
                // A store written without the counter (or by an older build) gets it computed once.
                if try Self.readCounter(txn, meta) == nil {
                    var total = 0
                    for table in ShardTable.allCases {
                        total += try Self.sumValueBytes(txn, opened[table]!)
                    }
                    try Self.writeCounter(txn, meta, total)
                }
            } catch {
                mdb_txn_abort(txn)
                throw error
            }
            try Self.check(mdb_txn_commit(txn), "mdb_txn_commit (open databases)")
        } catch {
            mdb_env_close(env)
            throw error
        }
        self.tables = opened
        self.metaDBI = meta
    }

    deinit {
        readPool.withLock { pool in
            for txn in pool.idle { mdb_txn_abort(txn.pointer) }
            pool.idle.removeAll()
        }
        mdb_env_close(env)
    }

    // MARK: - KeyValueShard

    public func get(_ key: [UInt8], in table: ShardTable) throws -> [UInt8]? {
        try ShardRecord.validate(key: key, maxLength: maxKeyLength)
        let dbi = tables[table]!
        return try withReadTransaction("get") { txn -> [UInt8]? in
            try key.withUnsafeBytes { keyBytes -> [UInt8]? in
                var k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
                var v = MDB_val()
                let rc = mdb_get(txn, dbi, &k, &v)
                if rc == MDB_NOTFOUND { return nil }
                try Self.check(rc, "mdb_get in '\(table.rawValue)'")
                return try ShardRecord.decode(Self.bytes(v), table: table, key: key)
            }
        }
    }

    public func apply(_ batch: WriteBatch) throws {
        for operation in batch.operations {
            switch operation {
            case .put(_, let key, _), .delete(_, let key):
                try ShardRecord.validate(key: key, maxLength: maxKeyLength)
            }
        }
        guard !batch.isEmpty else { return }
        try write("apply") { txn, storedBytes in
            for operation in batch.operations {
                switch operation {
                case .put(let table, let key, let value):
                    try value.withUnsafeBytes { valueBytes in
                        try self.putRecord(txn, table, key, byteCount: ShardRecord.headerByteCount + valueBytes.count, storedBytes: &storedBytes) {
                            ShardRecord.encode(valueBytes, into: $0)
                        }
                    }
                case .delete(let table, let key):
                    try self.deleteRecord(txn, table, key, storedBytes: &storedBytes)
                }
            }
        }
    }

    public func scan(_ table: ShardTable, prefix: [UInt8], after: [UInt8]?, limit: Int) throws -> [ShardEntry] {
        precondition(limit >= 0, "scan limit must not be negative, got \(limit)")
        guard limit > 0, prefix.count <= maxKeyLength else { return [] }
        let dbi = tables[table]!
        // Position at the first key >= start, then skip keys <= after. `after` may be longer than
        // LMDB accepts as a search key, so search with at most maxKeyLength of it.
        var start = prefix
        if let after, !after.lexicographicallyPrecedes(prefix) {
            start = Array(after.prefix(maxKeyLength))
        }
        return try withReadTransaction("scan") { txn in
            var cursor: OpaquePointer?
            try Self.check(mdb_cursor_open(txn, dbi, &cursor), "mdb_cursor_open in '\(table.rawValue)'")
            defer { mdb_cursor_close(cursor) }
            var k = MDB_val()
            var v = MDB_val()
            var rc: Int32
            if start.isEmpty {
                rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST)
            } else {
                rc = start.withUnsafeBytes { startBytes in
                    k = MDB_val(mv_size: startBytes.count, mv_data: UnsafeMutableRawPointer(mutating: startBytes.baseAddress))
                    return mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE)
                }
            }
            var found: [ShardEntry] = []
            while rc == 0, found.count < limit {
                let key = [UInt8](Self.bytes(k))
                guard key.starts(with: prefix) else { break }
                if let after, !after.lexicographicallyPrecedes(key) {
                    // key <= after: not yet past the resume point.
                } else {
                    let value = try ShardRecord.decode(Self.bytes(v), table: table, key: key)
                    found.append(ShardEntry(key: key, value: value))
                }
                rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)
            }
            if rc != 0 && rc != MDB_NOTFOUND {
                try Self.check(rc, "mdb_cursor_get in '\(table.rawValue)'")
            }
            return found
        }
    }

    public func count(_ table: ShardTable) throws -> Int {
        let dbi = tables[table]!
        return try withReadTransaction("count") { txn in
            var stat = MDB_stat()
            try Self.check(mdb_stat(txn, dbi, &stat), "mdb_stat '\(table.rawValue)'")
            return stat.ms_entries
        }
    }

    public func storedBytes() throws -> Int {
        try withReadTransaction("storedBytes") { txn in
            try Self.readCounter(txn, metaDBI) ?? 0
        }
    }

    /// Flushes the environment to disk (`mdb_env_sync(force: 1)`); useful after writing with
    /// `Settings.noSync`.
    public func sync() throws {
        try Self.check(mdb_env_sync(env, 1), "mdb_env_sync")
    }

    // MARK: - Test support

    /// TEST ONLY: replaces the raw stored record (format byte, checksum, value) under `key`
    /// without computing a checksum, to simulate corruption on disk; `nil` removes it. Returns
    /// the previous raw record. Mirrors `MemoryShard._overwriteRawRecordForTesting`.
    @discardableResult
    public func _overwriteRawRecordForTesting(_ key: [UInt8], in table: ShardTable, with record: [UInt8]?) throws
        -> [UInt8]?
    {
        try ShardRecord.validate(key: key, maxLength: maxKeyLength)
        var previous: [UInt8]?
        try write("_overwriteRawRecordForTesting") { txn, storedBytes in
            previous = try self.rawRecord(txn, table, key)
            if let record {
                try record.withUnsafeBytes { recordBytes in
                    try self.putRecord(txn, table, key, byteCount: recordBytes.count, storedBytes: &storedBytes) {
                        if recordBytes.count > 0 { $0.copyMemory(from: recordBytes) }
                    }
                }
            } else {
                try self.deleteRecord(txn, table, key, storedBytes: &storedBytes)
            }
        }
        return previous
    }

    // MARK: - Transactions

    /// Runs `body` in one write transaction with the stored-bytes counter, commits, and aborts
    /// on any error. Serialized by `writeLock`; runs on the calling thread from begin to commit.
    private func write(_ operation: String, _ body: (OpaquePointer, inout Int) throws -> Void) throws {
        try writeLock.withLock { _ in
            var txnPointer: OpaquePointer?
            try Self.check(mdb_txn_begin(env, nil, 0, &txnPointer), "\(operation): mdb_txn_begin", settings: settings)
            guard let txn = txnPointer else {
                throw ShardError.store(operation: "\(operation): mdb_txn_begin", code: -1, message: "no transaction returned")
            }
            do {
                var storedBytes = try Self.readCounter(txn, metaDBI) ?? 0
                try body(txn, &storedBytes)
                try Self.writeCounter(txn, metaDBI, storedBytes)
            } catch {
                mdb_txn_abort(txn)
                throw error
            }
            try Self.check(mdb_txn_commit(txn), "\(operation): mdb_txn_commit", settings: settings)
        }
    }

    private struct PooledTransaction: @unchecked Sendable {
        // A reset read-only transaction; owned by the pool until taken.
        let pointer: OpaquePointer
    }

    private struct ReadPool: Sendable {
        var idle: [PooledTransaction] = []
    }

    /// Runs `body` in a read-only transaction taken from the pool (renewed) or begun afresh, and
    /// resets it back into the pool afterwards.
    private func withReadTransaction<R>(_ operation: String, _ body: (OpaquePointer) throws -> R) throws -> R {
        var txn: OpaquePointer? = readPool.withLock { $0.idle.popLast()?.pointer }
        if let pooled = txn {
            let rc = mdb_txn_renew(pooled)
            if rc != 0 {
                mdb_txn_abort(pooled)
                txn = nil
            }
        }
        if txn == nil {
            try Self.check(mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn), "\(operation): mdb_txn_begin (read)")
        }
        let reader = txn!
        defer {
            mdb_txn_reset(reader)
            let kept = readPool.withLock { pool -> Bool in
                guard pool.idle.count < settings.readTransactionPoolMax else { return false }
                pool.idle.append(PooledTransaction(pointer: reader))
                return true
            }
            if !kept { mdb_txn_abort(reader) }
        }
        return try body(reader)
    }

    // MARK: - Record operations inside a write transaction

    private func rawRecord(_ txn: OpaquePointer, _ table: ShardTable, _ key: [UInt8]) throws -> [UInt8]? {
        try key.withUnsafeBytes { keyBytes -> [UInt8]? in
            var k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            var v = MDB_val()
            let rc = mdb_get(txn, tables[table]!, &k, &v)
            if rc == MDB_NOTFOUND { return nil }
            try Self.check(rc, "mdb_get in '\(table.rawValue)'")
            return [UInt8](Self.bytes(v))
        }
    }

    /// The record size under `key`, or nil.
    private func recordSize(_ txn: OpaquePointer, _ dbi: MDB_dbi, _ k: inout MDB_val, _ table: ShardTable) throws -> Int? {
        var v = MDB_val()
        let rc = mdb_get(txn, dbi, &k, &v)
        if rc == MDB_NOTFOUND { return nil }
        try Self.check(rc, "mdb_get in '\(table.rawValue)'")
        return v.mv_size
    }

    /// Puts a record of `byteCount` bytes under `key`, filled in place by `fill` (`MDB_RESERVE`),
    /// and updates the stored-bytes counter.
    private func putRecord(
        _ txn: OpaquePointer, _ table: ShardTable, _ key: [UInt8], byteCount: Int, storedBytes: inout Int,
        fill: (UnsafeMutableRawBufferPointer) -> Void
    ) throws {
        let dbi = tables[table]!
        try key.withUnsafeBytes { keyBytes in
            var k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            if let old = try recordSize(txn, dbi, &k, table) {
                storedBytes -= ShardRecord.valueByteCount(ofRecordBytes: old)
            }
            var v = MDB_val(mv_size: byteCount, mv_data: nil)
            try Self.check(mdb_put(txn, dbi, &k, &v, UInt32(MDB_RESERVE)), "mdb_put in '\(table.rawValue)'", settings: settings)
            fill(UnsafeMutableRawBufferPointer(start: v.mv_data, count: byteCount))
            storedBytes += ShardRecord.valueByteCount(ofRecordBytes: byteCount)
        }
    }

    private func deleteRecord(_ txn: OpaquePointer, _ table: ShardTable, _ key: [UInt8], storedBytes: inout Int) throws {
        let dbi = tables[table]!
        try key.withUnsafeBytes { keyBytes in
            var k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            guard let old = try recordSize(txn, dbi, &k, table) else { return }
            try Self.check(mdb_del(txn, dbi, &k, nil), "mdb_del in '\(table.rawValue)'")
            storedBytes -= ShardRecord.valueByteCount(ofRecordBytes: old)
        }
    }

    // MARK: - The stored-bytes counter

    private static func readCounter(_ txn: OpaquePointer?, _ meta: MDB_dbi) throws -> Int? {
        try storedBytesKey.withUnsafeBytes { keyBytes -> Int? in
            var k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            var v = MDB_val()
            let rc = mdb_get(txn, meta, &k, &v)
            if rc == MDB_NOTFOUND { return nil }
            try check(rc, "mdb_get '\(metaName)'")
            guard v.mv_size == 8 else {
                throw ShardError.store(
                    operation: "read stored-bytes counter", code: MDB_CORRUPTED,
                    message: "counter is \(v.mv_size) bytes, expected 8")
            }
            var bigEndian: UInt64 = 0
            withUnsafeMutableBytes(of: &bigEndian) { $0.copyMemory(from: bytes(v)) }
            return Int(UInt64(bigEndian: bigEndian))
        }
    }

    private static func writeCounter(_ txn: OpaquePointer?, _ meta: MDB_dbi, _ value: Int) throws {
        var bigEndian = UInt64(max(0, value)).bigEndian
        try storedBytesKey.withUnsafeBytes { keyBytes in
            try withUnsafeMutableBytes(of: &bigEndian) { valueBytes in
                var k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
                var v = MDB_val(mv_size: valueBytes.count, mv_data: valueBytes.baseAddress)
                try check(mdb_put(txn, meta, &k, &v, 0), "mdb_put '\(metaName)'")
            }
        }
    }

    /// Sum of value sizes in one database (used once, when the counter is missing).
    private static func sumValueBytes(_ txn: OpaquePointer?, _ dbi: MDB_dbi) throws -> Int {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(txn, dbi, &cursor), "mdb_cursor_open")
        defer { mdb_cursor_close(cursor) }
        var k = MDB_val()
        var v = MDB_val()
        var total = 0
        var rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST)
        while rc == 0 {
            total += ShardRecord.valueByteCount(ofRecordBytes: v.mv_size)
            rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)
        }
        if rc != MDB_NOTFOUND { try check(rc, "mdb_cursor_get") }
        return total
    }

    // MARK: - Helpers

    private static func bytes(_ value: MDB_val) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size)
    }

    /// Throws `ShardError.store` for a non-zero LMDB return code, with `mdb_strerror` text; a full
    /// map names the setting to raise.
    private static func check(_ rc: Int32, _ operation: String, settings: Settings? = nil) throws {
        guard rc != 0 else { return }
        var message = String(cString: mdb_strerror(rc))
        if rc == MDB_MAP_FULL {
            let size = settings.map { " of \($0.mapSizeBytes) bytes" } ?? ""
            message += ": the store's map\(size) is full; reopen it with a larger Settings.mapSizeBytes"
        }
        throw ShardError.store(operation: operation, code: rc, message: message)
    }
}
