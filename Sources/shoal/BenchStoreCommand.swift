import ArgumentParser
import Foundation
import Shoal
import ShoalCore
import ShoalStore

/// `shoal bench store`: batched durable puts with sequential vs random keys, and random gets,
/// against `LMDBShard` in a scratch directory.
struct BenchStore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Measure LMDB shard puts (sequential and random keys) and random gets.")

    @Option(help: "Values to write in each put run.") var values: Int = 100_000
    @Option(name: .customLong("value-bytes"), help: "Bytes per value.") var valueBytes: Int = 64
    @Option(help: "Puts per batch (one write transaction, one fsync).") var batch: Int = 1_000
    @Flag(name: .customLong("no-sync"), help: "Skip the fsync per commit (MDB_NOSYNC).") var noSync = false
    @Option(name: .customLong("data-dir"), help: "Scratch directory (default: a new temporary one, removed after).")
    var dataDirectory: String?
    @Option(help: "Seed of the random keys.") var seed: UInt64 = 1

    func validate() throws {
        guard values >= 1 && values <= benchMaxTasks else {
            throw refuse("--values must be 1 to \(benchMaxTasks), got \(values)")
        }
        guard valueBytes >= 0 && valueBytes <= 1 << 30 else {
            throw refuse("--value-bytes must be 0 to \(1 << 30) (1 GiB), got \(valueBytes)")
        }
        guard batch >= 1 else { throw refuse("--batch must be at least 1, got \(batch)") }
        if let dataDirectory {
            do {
                try WorkflowRunner.checkFolder(dataDirectory, role: "data folder (--data-dir)")
            } catch {
                throw refuse("\(error)")
            }
        }
    }

    func run() throws {
        let root: String
        let removeRoot: Bool
        if let dataDirectory {
            root = dataDirectory
            removeRoot = false
        } else {
            root = FileManager.default.temporaryDirectory.appendingPathComponent("shoal-bench-\(UUID().uuidString)").path
            removeRoot = true
        }
        defer { if removeRoot { try? FileManager.default.removeItem(atPath: root) } }
        let settings = LMDBShard.Settings(noSync: noSync)
        let value = [UInt8](repeating: 0xab, count: valueBytes)

        func bigEndian(_ n: UInt64) -> [UInt8] { withUnsafeBytes(of: n.bigEndian) { Array($0) } }

        func timePuts(_ directory: String, keys: [[UInt8]]) throws -> (LMDBShard, Duration) {
            let shard = try LMDBShard(directory: directory, settings: settings)
            let clock = ContinuousClock()
            let elapsed = try clock.measure {
                var start = 0
                while start < keys.count {
                    let end = min(start + batch, keys.count)
                    var writeBatch = WriteBatch()
                    writeBatch.operations.reserveCapacity(end - start)
                    for key in keys[start..<end] { writeBatch.put(key, value, in: .values) }
                    try shard.apply(writeBatch)
                    start = end
                }
            }
            return (shard, elapsed)
        }

        let sequentialKeys = (0..<UInt64(values)).map(bigEndian)
        var generator = SeededGenerator(seed: seed)
        let randomKeys = (0..<values).map { _ in bigEndian(generator.next()) }

        let (sequentialShard, sequentialTime) = try timePuts(root + "/sequential", keys: sequentialKeys)
        let (_, randomTime) = try timePuts(root + "/random", keys: randomKeys)

        let lookups = (0..<values).map { _ in sequentialKeys[Int(generator.next() % UInt64(values))] }
        var found = 0
        let getTime = try ContinuousClock().measure {
            for key in lookups where try sequentialShard.get(key, in: .values) != nil { found += 1 }
        }
        guard found == values else {
            throw CommandFailure("benchmark read back \(found) of \(values) values")
        }

        let durability = noSync ? "MDB_NOSYNC" : "durable, fsync per commit"
        print("shoal bench store: \(values) values of \(valueBytes) bytes, \(batch) puts per batch, \(durability)")
        print(row("case", "ops", "seconds", "ops/s"))
        for (name, time) in [
            ("puts, sequential keys", sequentialTime), ("puts, random keys", randomTime), ("gets, random keys", getTime),
        ] {
            let seconds = time.seconds
            print(row(name, "\(values)", String(format: "%.3f", seconds), grouped(Int(Double(values) / seconds))))
        }
    }

    private func row(_ name: String, _ ops: String, _ seconds: String, _ rate: String) -> String {
        func pad(_ s: String, _ width: Int, left: Bool) -> String {
            let fill = String(repeating: " ", count: max(0, width - s.count))
            return left ? s + fill : fill + s
        }
        return pad(name, 24, left: true) + pad(ops, 10, left: false) + pad(seconds, 10, left: false)
            + pad(rate, 14, left: false)
    }

    private func grouped(_ n: Int) -> String {
        let digits = String(n)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out += "," }
            out.append(c)
        }
        return out
    }
}
