import Foundation
import ShoalCore
import ShoalStore

/// The shard implementations the conformance suite runs against.
enum ShardKind: String, CaseIterable, Sendable, CustomStringConvertible {
    case memory
    case lmdb
    var description: String { rawValue }
}

/// A fresh, empty shard of one kind plus the test-only hooks to reach its raw records.
final class ShardFixture {
    let kind: ShardKind
    let shard: any KeyValueShard
    /// The LMDB data directory (nil for memory).
    let directory: URL?

    init(_ kind: ShardKind, directory: URL?, settings: LMDBShard.Settings = .init()) throws {
        self.kind = kind
        self.directory = directory
        switch kind {
        case .memory: shard = MemoryShard()
        case .lmdb: shard = try LMDBShard(directory: directory!.path, settings: settings)
        }
    }

    /// Replaces the raw record under `key` (test-only hook of both shards); returns the old one.
    @discardableResult
    func overwriteRawRecord(_ key: [UInt8], in table: ShardTable, with record: [UInt8]?) throws -> [UInt8]? {
        switch shard {
        case let memory as MemoryShard: memory._overwriteRawRecordForTesting(key, in: table, with: record)
        case let lmdb as LMDBShard: try lmdb._overwriteRawRecordForTesting(key, in: table, with: record)
        default: fatalError("unknown shard \(type(of: shard))")
        }
    }
}

/// A new empty directory under the system temporary directory.
func makeTemporaryDirectory(_ label: String = "shoal-store") throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("\(label)-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Runs `body` with a fresh shard of `kind`; removes its directory afterwards.
func withShard<R>(
    _ kind: ShardKind, settings: LMDBShard.Settings = .init(), _ body: (ShardFixture) throws -> R
) throws -> R {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let fixture = try ShardFixture(kind, directory: kind == .lmdb ? directory : nil, settings: settings)
    return try body(fixture)
}

/// Key and value helpers.
func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

func bigEndian(_ number: UInt64) -> [UInt8] {
    withUnsafeBytes(of: number.bigEndian) { Array($0) }
}

func uint64(bigEndian bytes: some Collection<UInt8>) -> UInt64 {
    bytes.reduce(0) { ($0 << 8) | UInt64($1) }
}
