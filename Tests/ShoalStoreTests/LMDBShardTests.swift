import CLMDB
import Foundation
import ShoalCore
import ShoalStore
import Testing

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
        FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
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
                guard let error = error as? ShardError, case .store(_, let code, let message) = error else { return false }
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

    private func findExecutable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") + ["/usr/bin", "/usr/local/bin"] {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
