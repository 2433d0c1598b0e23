import ArgumentParser
import Foundation
import Shoal
import ShoalCore
import ShoalStore

/// Hidden developer commands used by tests (crash safety) and for poking at a store.
struct Debug: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "debug",
        abstract: "Developer and test helpers.",
        shouldDisplay: false,
        subcommands: [WriteBatches.self, PersistRepeatedly.self])
}

extension Debug {
    /// Writes numbered batches and reports each one as soon as `apply` returns, so a test can kill
    /// the process at any moment and check that only whole batches are stored.
    ///
    /// Batch `i` puts keys `BE64(i) ++ BE64(j)` for `j` in `0..<batchSize`; each value is
    /// `BE64(i) ++ BE64(j)` padded to `--value-bytes` with the byte `UInt8(truncating: i + j)`.
    /// After batch `i` is durable, prints `committed i` to stdout (unbuffered).
    struct WriteBatches: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "write-batches",
            abstract: "Write numbered batches, printing 'committed i' after each durable commit.",
            shouldDisplay: false)

        @Option(name: .customLong("data-dir"), help: "The store's data directory (created if missing).")
        var dataDirectory: String

        @Option(help: "How many batches to write.")
        var batches: Int

        @Option(name: .customLong("batch-size"), help: "Keys per batch.")
        var batchSize: Int

        @Option(name: .customLong("value-bytes"), help: "Bytes per value (at least 16).")
        var valueBytes: Int = 16

        func validate() throws {
            guard batches >= 0 else { throw ValidationError("--batches must be 0 or more, got \(batches)") }
            guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1, got \(batchSize)") }
            guard valueBytes >= 16 else { throw ValidationError("--value-bytes must be at least 16, got \(valueBytes)") }
        }

        func run() throws {
            let shard = try LMDBShard(directory: dataDirectory)
            let out = FileHandle.standardOutput
            for i in 0..<UInt64(batches) {
                var batch = WriteBatch()
                batch.operations.reserveCapacity(batchSize)
                for j in 0..<UInt64(batchSize) {
                    let key = Self.bigEndian(i) + Self.bigEndian(j)
                    var value = key
                    value.append(contentsOf: repeatElement(UInt8(truncatingIfNeeded: i &+ j), count: valueBytes - 16))
                    batch.put(key, value, in: .values)
                }
                try shard.apply(batch)
                out.write(Data("committed \(i)\n".utf8))
            }
        }

        static func bigEndian(_ number: UInt64) -> [UInt8] {
            withUnsafeBytes(of: number.bigEndian) { Array($0) }
        }
    }

    /// Persists one name over and over through `PersistentObjects.store` (what `wf.persist` runs),
    /// printing `version V` after each store returns, so a test can run two of these at once on
    /// one store and check that every version number was given out exactly once.
    ///
    /// The value of store `i` is `[i]` as `[Double]`; the writer is `--writer`.
    struct PersistRepeatedly: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "persist-repeatedly",
            abstract: "Persist NAME --times times, printing 'version V' after each store.",
            shouldDisplay: false)

        @Argument(help: "The persistent object's name.") var name: String

        @Option(name: .customLong("data-dir"), help: "The store's data directory (created if missing).")
        var dataDirectory: String

        @Option(help: "How many times to persist it.") var times: Int

        @Option(help: "The writer recorded with each version.") var writer: String = "persist-repeatedly"

        func validate() throws {
            guard times >= 0 else { throw ValidationError("--times must be 0 or more, got \(times)") }
        }

        func run() throws {
            try exitOnError {
                let shard = try LMDBShard(directory: dataDirectory)
                let out = FileHandle.standardOutput
                for i in 0..<times {
                    let info = try PersistentObjects.store([Double(i)], as: name, in: shard, writer: writer)
                    out.write(Data("version \(info.version)\n".utf8))
                }
            }
        }
    }
}
