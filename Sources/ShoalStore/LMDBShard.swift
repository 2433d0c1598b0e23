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
/// - `apply(_:)` and `update(_:)` are one write transaction each (group commit: one fsync for the
///   whole batch), run synchronously on the calling thread and serialized by a lock in this
///   process and by LMDB's writer lock across processes. Call them from a thread that may block,
///   not from Swift's cooperative pool on a hot path.
/// - Every record is `ShardRecord` bytes (format byte, BLAKE2b checksum of key and value, value),
///   verified on every `get` and `scan`.
/// - A damaged store is reported, never crashed on and never re-created: `init` refuses, with
///   `ShardError.damaged(directory:reason:)`, a `data.mdb` that is empty, too short for its meta
///   pages, not an LMDB file, or shorter than the pages its B-trees use (a truncated file, which
///   LMDB would otherwise map and fault on with SIGBUS). Only a directory with no `data.mdb` at
///   all becomes a new store. See `LMDBDataFile`.
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

    /// Opens the LMDB environment in `directory`, creating the directory and a new, empty store
    /// when it holds no `data.mdb`.
    ///
    /// Throws `ShardError.damaged` when `data.mdb` exists but is not a whole LMDB file (empty, too
    /// short, foreign, truncated), leaving it untouched, and `ShardError.store` when the directory
    /// cannot be created or LMDB cannot open it.
    public init(directory: String, settings: Settings = Settings()) throws {
        self.directory = directory
        self.settings = settings
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ShardError.store(
                operation: "create data directory '\(directory)'", code: Int32(EIO), message: "\(error)")
        }
        // Before LMDB sees the file: it would re-create an empty one and reject a foreign one
        // with a bare MDB_INVALID.
        let dataFile = LMDBDataFile(directory: directory)
        try dataFile.checkBeforeOpen()

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
                // First, before any B-tree page is read through the map: inside this write
                // transaction we hold LMDB's writer lock, so the meta page cannot change under
                // the check.
                try dataFile.checkLength(env)
                for table in ShardTable.allCases {
                    var dbi: MDB_dbi = 0
                    try Self.check(
                        mdb_dbi_open(txn, table.rawValue, UInt32(MDB_CREATE), &dbi), "mdb_dbi_open '\(table.rawValue)'")
                    opened[table] = dbi
                }
                try Self.check(
                    mdb_dbi_open(txn, Self.metaName, UInt32(MDB_CREATE), &meta), "mdb_dbi_open '\(Self.metaName)'")
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
        return try withReadTransaction("get") { txn in try verifiedValue(txn, table, key) }
    }

    public func apply(_ batch: WriteBatch) throws {
        try validateKeys(batch)
        guard !batch.isEmpty else { return }
        try write("apply") { txn, storedBytes in try self.applyOperations(batch, txn, &storedBytes) }
    }

    /// One write transaction (`write`): LMDB's writer lock, taken by `mdb_txn_begin` and shared
    /// through `lock.mdb` by every process with this store open, is held from `body`'s first read
    /// to the commit, so the reads see the latest committed state and nothing commits in between.
    public func update(_ body: (any ShardReader) throws -> WriteBatch) throws {
        try write("update") { txn, storedBytes in
            let reader = TransactionReader(shard: self, txn: txn)
            defer { reader.close() }
            let batch = try body(reader)
            try self.validateKeys(batch)
            try self.applyOperations(batch, txn, &storedBytes)
        }
    }

    /// One read-only transaction: LMDB gives it one snapshot, the latest committed when it began.
    public func read<R>(_ body: (any ShardReader) throws -> R) throws -> R {
        try withReadTransaction("read") { txn in
            let reader = TransactionReader(shard: self, txn: txn)
            defer { reader.close() }
            return try body(reader)
        }
    }

    /// The reader `update` and `read` pass their body: `get` inside their transaction, verified
    /// as `LMDBShard.get` is. Refuses to read once the body has returned (the transaction is gone).
    private final class TransactionReader: ShardReader {
        private let shard: LMDBShard
        private let txn: OpaquePointer
        private var open = true
        init(shard: LMDBShard, txn: OpaquePointer) {
            self.shard = shard
            self.txn = txn
        }
        func close() { open = false }

        func get(_ key: [UInt8], in table: ShardTable) throws -> [UInt8]? {
            precondition(open, "a ShardReader was used after the update or read it was given to ended")
            try ShardRecord.validate(key: key, maxLength: shard.maxKeyLength)
            return try shard.verifiedValue(txn, table, key)
        }
    }

    public func scanReportingDamage(_ table: ShardTable, prefix: [UInt8], after: [UInt8]?, limit: Int) throws
        -> [ScannedEntry]
    {
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
                    k = MDB_val(
                        mv_size: startBytes.count, mv_data: UnsafeMutableRawPointer(mutating: startBytes.baseAddress))
                    return mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE)
                }
            }
            var found: [ScannedEntry] = []
            while rc == 0, found.count < limit {
                let key = [UInt8](Self.bytes(k))
                guard key.starts(with: prefix) else { break }
                if let after, !after.lexicographicallyPrecedes(key) {
                    // key <= after: not yet past the resume point.
                } else {
                    found.append(
                        ScannedEntry(key: key, value: ShardRecord.verify(Self.bytes(v), table: table, key: key)))
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
                throw ShardError.store(
                    operation: "\(operation): mdb_txn_begin", code: -1, message: "no transaction returned")
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

    // MARK: - Record operations inside a transaction

    /// The verified value under `key` in `txn` (read-only or write), or nil.
    private func verifiedValue(_ txn: OpaquePointer, _ table: ShardTable, _ key: [UInt8]) throws -> [UInt8]? {
        try key.withUnsafeBytes { keyBytes -> [UInt8]? in
            var k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            var v = MDB_val()
            let rc = mdb_get(txn, tables[table]!, &k, &v)
            if rc == MDB_NOTFOUND { return nil }
            try Self.check(rc, "mdb_get in '\(table.rawValue)'")
            return try ShardRecord.decode(Self.bytes(v), table: table, key: key)
        }
    }

    /// Throws `ShardError.invalidKey` for the first key of `batch` this environment cannot store.
    private func validateKeys(_ batch: WriteBatch) throws {
        for operation in batch.operations {
            switch operation {
            case .put(_, let key, _), .delete(_, let key):
                try ShardRecord.validate(key: key, maxLength: maxKeyLength)
            }
        }
    }

    /// Carries out every operation of `batch` in the write transaction `txn`, in order.
    private func applyOperations(_ batch: WriteBatch, _ txn: OpaquePointer, _ storedBytes: inout Int) throws {
        for operation in batch.operations {
            switch operation {
            case .put(let table, let key, let value):
                try value.withUnsafeBytes { valueBytes in
                    try putRecord(
                        txn, table, key, byteCount: ShardRecord.headerByteCount + valueBytes.count,
                        storedBytes: &storedBytes
                    ) {
                        ShardRecord.encode(key: key, value: valueBytes, into: $0)
                    }
                }
            case .delete(let table, let key):
                try deleteRecord(txn, table, key, storedBytes: &storedBytes)
            }
        }
    }

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
    private func recordSize(_ txn: OpaquePointer, _ dbi: MDB_dbi, _ k: inout MDB_val, _ table: ShardTable) throws
        -> Int?
    {
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
            try Self.check(
                mdb_put(txn, dbi, &k, &v, UInt32(MDB_RESERVE)), "mdb_put in '\(table.rawValue)'", settings: settings)
            fill(UnsafeMutableRawBufferPointer(start: v.mv_data, count: byteCount))
            storedBytes += ShardRecord.valueByteCount(ofRecordBytes: byteCount)
        }
    }

    private func deleteRecord(_ txn: OpaquePointer, _ table: ShardTable, _ key: [UInt8], storedBytes: inout Int) throws
    {
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
                var k = MDB_val(
                    mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
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

// MARK: - Checking data.mdb before LMDB maps it

#if !(arch(x86_64) || arch(arm64))
    #error("LMDBDataFile reads LMDB's meta and B-tree pages with the 64-bit little-endian layout only")
#endif

/// The checks that keep a damaged `data.mdb` from being re-created or crashed on.
///
/// LMDB maps the whole file and trusts it. Three kinds of damage hurt:
/// - An empty `data.mdb` is taken for a new environment and silently initialised, so lost data
///   looks like an empty store.
/// - A file that is not LMDB's (or whose meta pages were overwritten) fails with a bare
///   `MDB_INVALID`.
/// - A truncated file opens fine, and the first read of a page past the end of the file is a
///   SIGBUS that kills the process.
///
/// `checkBeforeOpen()` reads the two meta pages with `pread` before `mdb_env_open` and refuses
/// anything that is not two valid LMDB 0.9 meta pages. `checkLength(_:)` runs after the
/// environment is open, inside the first write transaction (so under LMDB's writer lock, and
/// before any B-tree page is read through the map): the file must reach the end of the last page
/// the meta page says is used, `(mdb_env_info.me_last_pgno + 1) * mdb_env_stat.ms_psize` bytes.
///
/// That bound alone would refuse healthy stores: LMDB never writes pages that one transaction
/// both allocated and freed (loose pages, overflow pages of a value put and deleted in one
/// batch), so the file can end before `me_last_pgno` with only free pages missing (mdb.c says so
/// at `mm_last_pg`). When the file is shorter, every page the B-trees reach (the free-page list
/// and main tree of the meta page in use, every named table, every overflow run) is visited with
/// `pread`, never through the map; if
/// all of them lie inside the file the store is healthy, and the file is extended with zeros
/// (sparse) to the used length so the next open takes the cheap check again. Extending is safe
/// under the writer lock: no other writer can be growing the file, and pages past the old end are
/// free, so nobody reads them before LMDB writes them.
///
/// Layout (lmdb 0.9, mdb.c, 64-bit, native little-endian): a page starts with `MDB_page`
/// (`mp_pgno` 8 bytes, `mp_pad` 2, `mp_flags` 2, then `mp_lower`/`mp_upper` 2+2 or, in an
/// overflow page, `mp_pages` 4: `PAGEHDRSZ` = 16) followed by `mp_ptrs`, 2-byte node offsets.
/// Pages 0 and 1 hold `MDB_meta` at offset 16: `mm_magic` (0xBEEFC0DE), `mm_version` (1),
/// `mm_address`, `mm_mapsize`, `mm_dbs[2]` (free list, main; `MDB_db` is 48 bytes: `md_pad`,
/// which holds the page size in the free-list entry, flags, depth, three page counts, entries,
/// `md_root` at 40), `mm_last_pg`, `mm_txnid`. LMDB uses the meta page with the larger txnid.
/// A node is `mn_lo`, `mn_hi`, `mn_flags`, `mn_ksize` (2 bytes each), then the key, then the
/// data; a branch node's child page number is `mn_lo | mn_hi << 16 | mn_flags << 32`.
/// `LMDBShardTests` check this reading against `mdb_env_info` and `mdb_env_stat`.
///
/// The checks hold for the moment of opening. A file truncated while a store is open, or a
/// flipped bit inside a page, is outside what they can see; record checksums catch the latter in
/// keys and values.
struct LMDBDataFile {
    let directory: String
    let path: String

    init(directory: String) {
        self.directory = directory
        self.path = directory + "/data.mdb"
    }

    // Page header (MDB_page).
    static let pageHeaderBytes = 16
    static let flagsOffset = 10
    static let lowerOffset = 12
    static let overflowPagesOffset = 12
    // MDB_meta, from the start of its page.
    static let metaOffset = pageHeaderBytes
    static let magicOffset = metaOffset + 0
    static let versionOffset = metaOffset + 4
    static let freeDBOffset = metaOffset + 24
    static let mainDBOffset = metaOffset + 72
    static let lastPageOffset = metaOffset + 120
    static let txnidOffset = metaOffset + 128
    static let metaEnd = metaOffset + 136
    // MDB_db.
    static let dbBytes = 48
    static let dbRootOffset = 40
    // Node header (MDB_node).
    static let nodeHeaderBytes = 8

    static let magic: UInt32 = 0xBEEF_C0DE
    static let dataVersion: UInt32 = 1
    static let metaPageCount = 2
    static let pageBranch: UInt16 = 0x01
    static let pageLeaf: UInt16 = 0x02
    static let pageOverflow: UInt16 = 0x04
    static let pageMeta: UInt16 = 0x08
    static let pageLeaf2: UInt16 = 0x20
    static let nodeBigData: UInt16 = 0x01
    static let nodeSubData: UInt16 = 0x02
    static let invalidPage = UInt64.max

    /// What a meta page records.
    struct Meta: Equatable {
        var pageSize: Int
        var freeRoot: UInt64
        var mainRoot: UInt64
        var lastPage: UInt64
        var txnid: UInt64
    }

    // MARK: Before mdb_env_open

    /// Refuses an existing `data.mdb` that is not two valid LMDB meta pages; does nothing when
    /// there is no `data.mdb` (a new store). Never writes to the file.
    ///
    /// A file shorter than its meta pages may also be one that another process is creating at
    /// this moment (LMDB creates the file, then writes both meta pages, holding an exclusive
    /// lock on byte 0 of `lock.mdb`), so while that lock is held the check waits, up to 5 s.
    func checkBeforeOpen() throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let code = errno
            if code == ENOENT { return }
            throw ShardError.store(operation: "open '\(path)'", code: code, message: String(cString: strerror(code)))
        }
        defer { close(fd) }
        let deadline = Date().addingTimeInterval(5)
        while true {
            do {
                _ = try readMeta(fd, fileBytes: try fileBytes(fd))
                return
            } catch let error as ShardError {
                guard case .damaged = error, Date() < deadline, anotherProcessIsCreatingTheStore() else { throw error }
                usleep(5_000)
            }
        }
    }

    /// The meta page LMDB would use (the valid one with the larger txnid); both must be valid,
    /// as LMDB requires.
    func readMeta(_ fd: Int32, fileBytes: Int) throws -> Meta {
        if fileBytes == 0 {
            throw damaged(
                "data.mdb is empty (0 bytes); a new store has no data.mdb, so this one has lost its contents "
                    + "(move the file away to start an empty store)")
        }
        let first = try meta(fd, at: 0, index: 0, fileBytes: fileBytes)
        let pageSize = first.pageSize
        guard fileBytes >= Self.metaPageCount * pageSize else {
            throw damaged(
                "data.mdb is \(fileBytes) bytes, shorter than its two meta pages (\(Self.metaPageCount * pageSize) bytes)"
            )
        }
        let second = try meta(fd, at: pageSize, index: 1, fileBytes: fileBytes)
        guard second.pageSize == pageSize else {
            throw damaged("data.mdb's meta pages disagree on the page size (\(pageSize) and \(second.pageSize) bytes)")
        }
        return second.txnid > first.txnid ? second : first
    }

    private func meta(_ fd: Int32, at offset: Int, index: Int, fileBytes: Int) throws -> Meta {
        let which = index == 0 ? "first" : "second"
        let bytes = try read(fd, offset: offset, count: Self.metaEnd)
        guard bytes.count == Self.metaEnd else {
            throw damaged("data.mdb is only \(fileBytes) bytes, too short for LMDB's \(which) meta page")
        }
        guard Self.u16(bytes, Self.flagsOffset) & Self.pageMeta != 0, Self.u32(bytes, Self.magicOffset) == Self.magic
        else {
            throw damaged(
                index == 0
                    ? "data.mdb is not an LMDB file (its first page is not an LMDB meta page)"
                    : "data.mdb's second meta page (at byte \(offset)) is not an LMDB meta page")
        }
        let version = Self.u32(bytes, Self.versionOffset)
        guard version == Self.dataVersion else {
            throw damaged(
                "data.mdb has LMDB data format version \(version); this build reads version \(Self.dataVersion)")
        }
        // mm_psize is the free-list MDB_db's md_pad.
        let pageSize = Int(Self.u32(bytes, Self.freeDBOffset))
        guard pageSize >= 512, pageSize <= 65_536, pageSize & (pageSize - 1) == 0 else {
            throw damaged("data.mdb's \(which) meta page records an impossible page size of \(pageSize) bytes")
        }
        return Meta(
            pageSize: pageSize,
            freeRoot: Self.u64(bytes, Self.freeDBOffset + Self.dbRootOffset),
            mainRoot: Self.u64(bytes, Self.mainDBOffset + Self.dbRootOffset),
            lastPage: Self.u64(bytes, Self.lastPageOffset),
            txnid: Self.u64(bytes, Self.txnidOffset))
    }

    /// Whether another process holds the exclusive lock LMDB takes on byte 0 of `lock.mdb` while
    /// it initialises an environment (`F_GETLK`; a process's own locks never show).
    ///
    /// Only called when `data.mdb` fails the check: opening and closing `lock.mdb` here would
    /// drop this process's own fcntl locks on it, which only a process that has this store open
    /// holds, and such a store has valid meta pages.
    private func anotherProcessIsCreatingTheStore() -> Bool {
        let fd = open(directory + "/lock.mdb", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        lock.l_start = 0
        lock.l_len = 1
        guard fcntl(fd, F_GETLK, &lock) == 0 else { return false }
        return lock.l_type == Int16(F_WRLCK)
    }

    // MARK: After mdb_env_open, under the writer lock

    /// Refuses a `data.mdb` shorter than the pages its B-trees use; see the type's documentation.
    /// Call inside a write transaction, before anything reads a B-tree page.
    func checkLength(_ env: OpaquePointer) throws {
        var info = MDB_envinfo()
        var stat = MDB_stat()
        var fd: mdb_filehandle_t = -1
        guard mdb_env_info(env, &info) == 0, mdb_env_stat(env, &stat) == 0, mdb_env_get_fd(env, &fd) == 0 else {
            throw ShardError.store(
                operation: "mdb_env_info '\(directory)'", code: EINVAL, message: "cannot read the environment's info")
        }
        let pageSize = Int(stat.ms_psize)
        let lastPage = UInt64(info.me_last_pgno)
        let bytes = try fileBytes(fd)
        // In whole pages, so that a corrupt page number cannot overflow a byte count.
        if lastPage < UInt64(bytes / pageSize) { return }

        // Short: tell free pages LMDB never wrote from lost ones.
        let meta = try readMeta(fd, fileBytes: bytes)
        guard meta.pageSize == pageSize, meta.lastPage == lastPage else {
            throw damaged(
                "data.mdb's meta page reads as \(meta.pageSize)-byte pages up to page \(meta.lastPage), but LMDB "
                    + "reads \(pageSize)-byte pages up to page \(lastPage)")
        }
        var walk = PageWalk(file: self, fd: fd, pageSize: pageSize, fileBytes: bytes, lastPage: lastPage)
        try walk.visit(root: meta.freeRoot, of: "LMDB's free-page list", named: false)
        try walk.visit(root: meta.mainRoot, of: "LMDB's main database", named: true)
        // Healthy. Extend (sparse) so the next open needs no walk; failing to is harmless.
        let (pages, overflow) = lastPage.addingReportingOverflow(1)
        let (usedBytes, overflowBytes) = pages.multipliedReportingOverflow(by: UInt64(pageSize))
        if !overflow, !overflowBytes, usedBytes <= UInt64(Int64.max) { _ = ftruncate(fd, off_t(usedBytes)) }
    }

    /// Visits every page the B-trees reach, with `pread`, and throws `damaged` for the first one
    /// that lies past the end of the file, past the last used page, or is not the page it should be.
    private struct PageWalk {
        let file: LMDBDataFile
        let fd: Int32
        let pageSize: Int
        let fileBytes: Int
        let lastPage: UInt64
        /// Pages read so far: more than `lastPage + 1` means a cycle.
        var visited: UInt64 = 0

        /// Walks the tree rooted at `root`; in the main database (`named`), leaves with sub-data
        /// are named tables whose trees are walked too.
        mutating func visit(root: UInt64, of owner: String, named: Bool) throws {
            var pending: [(page: UInt64, owner: String, named: Bool)] = []
            if root != LMDBDataFile.invalidPage { pending.append((root, owner, named)) }
            while let (number, owner, named) = pending.popLast() {
                let page = try read(number, of: owner)
                let flags = LMDBDataFile.u16(page, LMDBDataFile.flagsOffset)
                let isBranch = flags & LMDBDataFile.pageBranch != 0
                guard isBranch != (flags & LMDBDataFile.pageLeaf != 0) else {
                    throw file.damaged(
                        "page \(number) of \(owner) is neither a branch nor a leaf page (flags \(flags))")
                }
                if flags & LMDBDataFile.pageLeaf2 != 0 { continue }  // fixed-size keys only, no page references
                for node in try nodes(of: page, number: number, owner: owner) {
                    let lo = UInt64(LMDBDataFile.u16(page, node))
                    let hi = UInt64(LMDBDataFile.u16(page, node + 2))
                    let nodeFlags = LMDBDataFile.u16(page, node + 4)
                    if isBranch {
                        pending.append((lo | hi << 16 | UInt64(nodeFlags) << 32, owner, named))
                        continue
                    }
                    let keyBytes = Int(LMDBDataFile.u16(page, node + 6))
                    let data = node + LMDBDataFile.nodeHeaderBytes + keyBytes
                    if nodeFlags & LMDBDataFile.nodeBigData != 0 {
                        guard data + 8 <= pageSize else {
                            throw file.damaged("page \(number) of \(owner) has a node past its end")
                        }
                        try checkOverflow(LMDBDataFile.u64(page, data), of: owner)
                    } else if nodeFlags & LMDBDataFile.nodeSubData != 0 {
                        guard data + LMDBDataFile.dbBytes <= pageSize else {
                            throw file.damaged("page \(number) of \(owner) has a node past its end")
                        }
                        let subRoot = LMDBDataFile.u64(page, data + LMDBDataFile.dbRootOffset)
                        let name = KeyText.escaped(Array(page[(node + LMDBDataFile.nodeHeaderBytes)..<data]))
                        let subOwner = named ? "table '\(name)'" : "a duplicate set in \(owner)"
                        if subRoot != LMDBDataFile.invalidPage { pending.append((subRoot, subOwner, false)) }
                    }
                }
            }
        }

        /// The offsets of the nodes on `page`, each with room for a node header.
        private func nodes(of page: [UInt8], number: UInt64, owner: String) throws -> [Int] {
            let lower = Int(LMDBDataFile.u16(page, LMDBDataFile.lowerOffset))
            guard lower >= LMDBDataFile.pageHeaderBytes, lower <= pageSize else {
                throw file.damaged("page \(number) of \(owner) has an impossible header (lower bound \(lower))")
            }
            return try stride(from: LMDBDataFile.pageHeaderBytes, to: lower - 1, by: 2).map { slot in
                let offset = Int(LMDBDataFile.u16(page, slot))
                guard offset >= lower, offset + LMDBDataFile.nodeHeaderBytes <= pageSize else {
                    throw file.damaged("page \(number) of \(owner) has a node offset (\(offset)) outside the page")
                }
                return offset
            }
        }

        /// A value's run of overflow pages: its first page must be an overflow page and the
        /// whole run must lie inside the file.
        private mutating func checkOverflow(_ first: UInt64, of owner: String) throws {
            let header = try read(first, of: "a large value in \(owner)")
            guard LMDBDataFile.u16(header, LMDBDataFile.flagsOffset) & LMDBDataFile.pageOverflow != 0 else {
                throw file.damaged("page \(first), a large value in \(owner), is not an overflow page")
            }
            let count = UInt64(LMDBDataFile.u32(header, LMDBDataFile.overflowPagesOffset))
            let (last, overflow) = first.addingReportingOverflow(max(count, 1) - 1)
            guard !overflow else {
                throw file.damaged("page \(first), a large value in \(owner), runs past 2^64 pages")
            }
            try requireInFile(last, of: "a large value in \(owner)")
        }

        /// Page `number` after checking it is inside the file and carries its own number.
        private mutating func read(_ number: UInt64, of owner: String) throws -> [UInt8] {
            guard visited <= lastPage else { throw file.damaged("the page tree of \(owner) has a cycle") }
            visited += 1
            try requireInFile(number, of: owner)
            let page = try file.read(fd, offset: Int(number) * pageSize, count: pageSize)
            guard page.count == pageSize else { throw file.damaged("page \(number) of \(owner) cannot be read whole") }
            let recorded = LMDBDataFile.u64(page, 0)
            guard recorded == number else {
                throw file.damaged("page \(number) of \(owner) holds page \(recorded)'s header")
            }
            return page
        }

        private func requireInFile(_ number: UInt64, of owner: String) throws {
            guard number <= lastPage else {
                throw file.damaged("\(owner) refers to page \(number), past the last page in use (\(lastPage))")
            }
            guard number < UInt64(fileBytes / pageSize) else {
                let (next, overflow) = number.addingReportingOverflow(1)
                let (end, overflowEnd) = next.multipliedReportingOverflow(by: UInt64(pageSize))
                throw file.damaged(
                    "data.mdb is \(fileBytes) bytes, but page \(number) of \(owner) ends at byte "
                        + "\(overflow || overflowEnd ? "2^64 or later" : "\(end)") (the file has lost its end: truncated?)"
                )
            }
        }
    }

    // MARK: Helpers

    func damaged(_ reason: String) -> ShardError { .damaged(directory: directory, reason: reason) }

    private func fileBytes(_ fd: Int32) throws -> Int {
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            let code = errno
            throw ShardError.store(operation: "fstat '\(path)'", code: code, message: String(cString: strerror(code)))
        }
        guard status.st_mode & S_IFMT == S_IFREG else { throw damaged("data.mdb is not a regular file") }
        return Int(status.st_size)
    }

    /// Up to `count` bytes at `offset`; fewer only at the end of the file.
    func read(_ fd: Int32, offset: Int, count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes {
                pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done))
            }
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                throw ShardError.store(
                    operation: "read '\(path)'", code: code, message: String(cString: strerror(code)))
            }
            if n == 0 { break }
            done += n
        }
        return Array(bytes.prefix(done))
    }

    static func u16(_ bytes: [UInt8], _ offset: Int) -> UInt16 {
        UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
    }

    static func u32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 | UInt32(bytes[offset + $1]) << (8 * $1) }
    }

    static func u64(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
        (0..<8).reduce(0) { $0 | UInt64(bytes[offset + $1]) << (8 * $1) }
    }
}
