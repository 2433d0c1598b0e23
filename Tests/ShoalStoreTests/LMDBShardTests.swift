import CLMDB
import Foundation
import ShoalCore
import Testing

@testable import ShoalStore

#if canImport(Glibc)
    import Glibc
#endif

/// What only the on-disk shard promises: persistence, a plain LMDB directory, clear limits.
@Suite struct LMDBShardTests {
    @Test func dataSurvivesCloseAndReopen() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        do {
            let shard = try LMDBShard(directory: directory.path)
            var batch = WriteBatch()
            for i in 0..<100 as Range<UInt64> { batch.put(bigEndian(i), bigEndian(i * 7), in: .workflows) }
            batch.put(bytes("name"), bytes("persistent object"), in: .values)
            batch.put(bytes("name"), bytes("v1"), in: .versions)
            try shard.apply(batch)
            try shard.delete(bigEndian(50), in: .workflows)
        }
        let reopened = try LMDBShard(directory: directory.path)
        #expect(try reopened.get(bytes("name"), in: .values) == bytes("persistent object"))
        #expect(try reopened.get(bytes("name"), in: .versions) == bytes("v1"))
        #expect(try reopened.count(.workflows) == 99)
        #expect(try reopened.get(bigEndian(50), in: .workflows) == nil)
        #expect(try reopened.get(bigEndian(99), in: .workflows) == bigEndian(99 * 7))
        #expect(try reopened.storedBytes() == 99 * 8 + 17 + 2)
    }

    /// A store written before the `objects` table existed (only `values`, `versions` and
    /// `workflows`, and no stored-bytes counter) opens: the missing tables are created
    /// (`MDB_CREATE` in the open transaction), its records read back, and it is not taken for
    /// damaged.
    @Test func storeWithoutTheObjectsTableOpensAndGainsIt() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let oldTables = ["values", "versions", "workflows"]
        do {
            var envPointer: OpaquePointer?
            try #require(mdb_env_create(&envPointer) == 0)
            let env = try #require(envPointer)
            defer { mdb_env_close(env) }
            _ = mdb_env_set_maxdbs(env, 4)
            try #require(mdb_env_open(env, directory.path, UInt32(MDB_NOTLS), 0o644) == 0)
            var txn: OpaquePointer?
            try #require(mdb_txn_begin(env, nil, 0, &txn) == 0)
            for table in oldTables {
                var dbi: MDB_dbi = 0
                try #require(mdb_dbi_open(txn, table, UInt32(MDB_CREATE), &dbi) == 0)
                var record = ShardRecord.encode(key: bytes("k"), value: bytes("from \(table)"))
                var key = bytes("k")
                let rc = key.withUnsafeMutableBytes { k in
                    record.withUnsafeMutableBytes { v in
                        var kv = MDB_val(mv_size: k.count, mv_data: k.baseAddress)
                        var vv = MDB_val(mv_size: v.count, mv_data: v.baseAddress)
                        return mdb_put(txn, dbi, &kv, &vv, 0)
                    }
                }
                try #require(rc == 0)
            }
            var missing: MDB_dbi = 0
            #expect(mdb_dbi_open(txn, ShardTable.objects.rawValue, 0, &missing) == MDB_NOTFOUND)
            try #require(mdb_txn_commit(txn) == 0)
        }

        do {
            let shard = try LMDBShard(directory: directory.path)
            for table in oldTables {
                #expect(
                    try shard.get(bytes("k"), in: try #require(ShardTable(rawValue: table))) == bytes("from \(table)"))
            }
            #expect(try shard.count(.objects) == 0)
            #expect(try shard.storedBytes() == "from values".count + "from versions".count + "from workflows".count)
            try shard.put(ObjectRecord.key(7), [UInt8](repeating: 1, count: ObjectRecord.byteCount), in: .objects)
        }
        let reopened = try LMDBShard(directory: directory.path)
        #expect(try reopened.count(.objects) == 1)
        #expect(try reopened.get(bytes("k"), in: .values) == bytes("from values"))
    }

    @Test func createsMissingDirectories() throws {
        let root = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let nested = root.appendingPathComponent("a/b/data").path
        let shard = try LMDBShard(directory: nested)
        try shard.put(bytes("k"), bytes("v"), in: .values)
        #expect(FileManager.default.fileExists(atPath: nested + "/data.mdb"))
        #expect(shard.maxKeyLength == 511)
    }

    @Test func openingAnUnusableDirectoryFailsClearly() throws {
        let root = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let file = root.appendingPathComponent("plain-file").path
        _ = FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        #expect {
            _ = try LMDBShard(directory: file)
        } throws: { error in
            guard case .store(let operation, _, _) = error as? ShardError else { return false }
            return operation.contains(file)
        }
    }

    @Test func fullMapFailsTheWholeBatchWithAClearError() throws {
        try withShard(.lmdb, settings: .init(mapSizeBytes: 1 << 20)) { f in
            try f.shard.put(bytes("keep"), bytes("small"), in: .values)
            var batch = WriteBatch()
            for i in 0..<64 as Range<UInt64> {
                batch.put(bigEndian(i), [UInt8](repeating: 1, count: 64 << 10), in: .values)
            }
            #expect {
                try f.shard.apply(batch)
            } throws: { error in
                guard let error = error as? ShardError, case .store(_, let code, let message) = error else {
                    return false
                }
                return code == MDB_MAP_FULL && message.contains("mapSizeBytes")
            }
            #expect(try f.shard.count(.values) == 1)
            #expect(try f.shard.get(bytes("keep"), in: .values) == bytes("small"))
            #expect(try f.shard.storedBytes() == 5)
            // The shard stays usable after the failure.
            try f.shard.put(bytes("after"), bytes("ok"), in: .values)
            #expect(try f.shard.get(bytes("after"), in: .values) == bytes("ok"))
        }
    }

    @Test func directoryIsReadableByMdbStat() throws {
        guard let mdbStat = findExecutable("mdb_stat") else {
            print("mdb_stat not installed; skipping")
            return
        }
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        do {
            let shard = try LMDBShard(directory: directory.path)
            var batch = WriteBatch()
            for i in 0..<250 as Range<UInt64> { batch.put(bigEndian(i), bytes("value \(i)"), in: .values) }
            batch.put(bytes("w"), bytes("record"), in: .workflows)
            try shard.apply(batch)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: mdbStat)
        process.arguments = ["-a", directory.path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        #expect(process.terminationStatus == 0, "mdb_stat failed: \(text)")
        for table in ShardTable.allCases {
            #expect(text.contains("Status of \(table.rawValue)"), "mdb_stat output lacks \(table.rawValue): \(text)")
        }
        #expect(text.contains("Entries: 250"), "mdb_stat output: \(text)")
    }

    // MARK: - Damaged data files (checks made before LMDB maps the file, so safe in-process)

    /// What LMDB itself reads from a closed environment's meta page: the oracle for
    /// `LMDBDataFile`'s own reading of the layout.
    struct EnvironmentInfo {
        var pageSize: Int
        var lastPage: Int
        var txnid: Int
        var usedBytes: Int { (lastPage + 1) * pageSize }
    }

    static func lmdbInfo(_ directory: String) throws -> EnvironmentInfo {
        var envPointer: OpaquePointer?
        try #require(mdb_env_create(&envPointer) == 0)
        let env = try #require(envPointer)
        defer { mdb_env_close(env) }
        _ = mdb_env_set_maxdbs(env, 8)
        try #require(mdb_env_open(env, directory, UInt32(MDB_RDONLY | MDB_NOTLS), 0o644) == 0)
        var info = MDB_envinfo()
        var stat = MDB_stat()
        try #require(mdb_env_info(env, &info) == 0 && mdb_env_stat(env, &stat) == 0)
        return EnvironmentInfo(pageSize: Int(stat.ms_psize), lastPage: info.me_last_pgno, txnid: info.me_last_txnid)
    }

    static func fileSize(_ path: String) throws -> Int {
        try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
    }

    @Test func metaPagesAreReadAsLMDBReadsThem() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        do {
            let shard = try LMDBShard(directory: directory.path)
            for i in 0..<20 as Range<UInt64> {
                try shard.put(bigEndian(i), [UInt8](repeating: 3, count: 3_000), in: .values)
            }
        }
        let file = LMDBDataFile(directory: directory.path)
        let fd = open(file.path, O_RDONLY)
        try #require(fd >= 0)
        defer { close(fd) }
        let meta = try file.readMeta(fd, fileBytes: try Self.fileSize(file.path))
        let lmdb = try Self.lmdbInfo(directory.path)
        #expect(meta.pageSize == lmdb.pageSize)
        #expect(meta.lastPage == UInt64(lmdb.lastPage))
        #expect(meta.txnid == UInt64(lmdb.txnid))
        #expect(meta.mainRoot != LMDBDataFile.invalidPage && meta.mainRoot <= meta.lastPage)
    }

    /// LMDB never writes pages a transaction allocated and freed again, so a healthy file may end
    /// before the last page its meta page counts. Such a store must open (the pages its trees
    /// reach are all there), and is extended so later opens take the cheap check.
    @Test func fileShorterOnlyByUnwrittenFreePagesOpens() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let big = [UInt8](repeating: 9, count: 4 << 20)
        do {
            let shard = try LMDBShard(directory: directory.path)
            // Free pages first, so that LMDB's free list is in use in the last batch.
            for round in 0..<5 {
                var batch = WriteBatch()
                batch.put(bytes("small"), bytes("round \(round)"), in: .values)
                batch.put(bytes("big"), [UInt8](repeating: 1, count: 64 << 10), in: .values)
                try shard.apply(batch)
                try shard.delete(bytes("big"), in: .values)
            }
            // A 4 MiB value put and deleted in one batch: its overflow pages are allocated at the
            // end of the file and freed before they are ever written.
            var batch = WriteBatch()
            batch.put(bytes("small"), bytes("kept"), in: .values)
            batch.put(bytes("big"), big, in: .values)
            batch.delete(bytes("big"), in: .values)
            try shard.apply(batch)
        }
        let path = directory.path + "/data.mdb"
        let before = try Self.lmdbInfo(directory.path)
        try #require(
            try Self.fileSize(path) < before.usedBytes,
            "the scenario should leave the file shorter than its meta page counts (\(before.usedBytes) bytes)")

        let reopened = try LMDBShard(directory: directory.path)
        #expect(try reopened.get(bytes("small"), in: .values) == bytes("kept"))
        #expect(try reopened.get(bytes("big"), in: .values) == nil)
        #expect(try Self.fileSize(path) >= before.usedBytes)
        try reopened.put(bytes("big"), big, in: .values)
        #expect(try reopened.get(bytes("big"), in: .values) == big)
    }

    /// Expects opening `directory` to fail as damaged with `reason` in the message, and the data
    /// file to be exactly `contents` afterwards.
    func expectDamaged(_ directory: URL, containing reason: String, contents: Data) throws {
        #expect {
            _ = try LMDBShard(directory: directory.path)
        } throws: { error in
            guard case .damaged(let where_, let why) = error as? ShardError else { return false }
            return where_ == directory.path && why.contains(reason)
                && "\(error)".hasPrefix("the store in \(directory.path) is damaged: ")
        }
        #expect(try Data(contentsOf: directory.appendingPathComponent("data.mdb")) == contents)
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("lock.mdb").path))
    }

    @Test func emptyDataFileIsRefusedNotRecreated() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        _ = FileManager.default.createFile(atPath: directory.path + "/data.mdb", contents: Data())
        try expectDamaged(directory, containing: "data.mdb is empty (0 bytes)", contents: Data())
    }

    @Test func foreignOrShortDataFilesAreRefused() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var generator = SeededGenerator(seed: 8)
        let random = Data((0..<10_000).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
        let file = directory.appendingPathComponent("data.mdb")
        try random.write(to: file)
        try expectDamaged(directory, containing: "not an LMDB file", contents: random)
        try random.prefix(100).write(to: file)
        try expectDamaged(directory, containing: "only 100 bytes", contents: random.prefix(100))
    }

    @Test func damagedMetaPagesAreRefused() throws {
        let source = try makeTemporaryDirectory()
        let directory = try makeTemporaryDirectory()
        defer {
            try? FileManager.default.removeItem(at: source)
            try? FileManager.default.removeItem(at: directory)
        }
        do { try LMDBShard(directory: source.path).put(bytes("k"), bytes("v"), in: .values) }
        let original = try Data(contentsOf: source.appendingPathComponent("data.mdb"))
        let pageSize = try Self.lmdbInfo(source.path).pageSize
        let file = directory.appendingPathComponent("data.mdb")

        // Only the first meta page left.
        try original.prefix(pageSize + 100).write(to: file)
        try expectDamaged(
            directory, containing: "shorter than its two meta pages", contents: original.prefix(pageSize + 100))
        // The second meta page's magic overwritten.
        var badMagic = original
        badMagic[pageSize + LMDBDataFile.magicOffset] ^= 0xff
        try badMagic.write(to: file)
        try expectDamaged(directory, containing: "second meta page", contents: badMagic)
        // Another LMDB data format version.
        var otherVersion = original
        otherVersion[LMDBDataFile.versionOffset] = 7
        try otherVersion.write(to: file)
        try expectDamaged(directory, containing: "data format version 7", contents: otherVersion)
    }

    /// LMDB creates `data.mdb` and then writes its meta pages while holding an exclusive lock on
    /// `lock.mdb`; an empty `data.mdb` seen meanwhile is a store being created, not a damaged one.
    /// Another process (perl, which can take fcntl locks) plays the creator here.
    @Test func waitsForAnotherProcessCreatingTheStore() throws {
        guard let perl = findExecutable("perl") else {
            print("perl not installed; skipping")
            return
        }
        let template = try makeTemporaryDirectory()
        let directory = try makeTemporaryDirectory()
        defer {
            try? FileManager.default.removeItem(at: template)
            try? FileManager.default.removeItem(at: directory)
        }
        do { try LMDBShard(directory: template.path).put(bytes("k"), bytes("created meanwhile"), in: .values) }
        let dataFile = directory.appendingPathComponent("data.mdb").path
        let lockFile = directory.appendingPathComponent("lock.mdb").path
        _ = FileManager.default.createFile(atPath: dataFile, contents: Data())
        _ = FileManager.default.createFile(atPath: lockFile, contents: Data())

        // struct flock on 64-bit Linux: short l_type, short l_whence, 4 bytes padding, off_t
        // l_start, off_t l_len, pid_t l_pid, 4 bytes padding.
        let script = """
            use Fcntl; $| = 1;
            open(my $lock, "+<", $ARGV[0]) or die "open: $!";
            fcntl($lock, F_SETLK, pack("s s x4 q q i x4", F_WRLCK, SEEK_SET, 0, 1, 0)) or die "lock: $!";
            print "locked\n";
            select(undef, undef, undef, 0.4);
            system("cp", $ARGV[1], $ARGV[0]) == 0 or die "cp lock.mdb failed";
            system("cp", $ARGV[2], $ARGV[3]) == 0 or die "cp data.mdb failed";
            """
        // Like LMDB, the creator leaves an initialised lock.mdb (a closed store's) and both meta
        // pages (a store with one entry) before it lets go of the lock.
        let creator = Process()
        creator.executableURL = URL(fileURLWithPath: perl)
        creator.arguments = [
            "-e", script, lockFile, template.path + "/lock.mdb", template.path + "/data.mdb", dataFile,
        ]
        let output = Pipe()
        creator.standardOutput = output
        try creator.run()
        defer { creator.waitUntilExit() }
        let line = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
        try #require(line == "locked\n", "perl did not take the lock: \(line)")

        let shard = try LMDBShard(directory: directory.path)
        #expect(try shard.get(bytes("k"), in: .values) == bytes("created meanwhile"))
    }

    private func findExecutable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") + ["/usr/bin", "/usr/local/bin"] {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
