import Foundation
import ShoalStore
import ShoalTestSupport
import Testing

@testable import Shoal

/// Two processes persisting one name at once, through the same `PersistentObjects.store` that
/// `wf.persist` runs (`shoal debug persist-repeatedly`), on one LMDB store.
@Suite("Persistence: concurrent writers in two processes")
struct ConcurrentPersistTests {
    /// Every store reads the name's version and writes the next one. If the read and the write
    /// were two transactions, both processes could read version N and both write N + 1: one
    /// update lost, a version number given out twice and the count short. In one transaction
    /// (`KeyValueShard.update`, under LMDB's cross-process writer lock) every number from 1 to
    /// the total is given out exactly once.
    @Test func twoProcessesPersistingOneNameGiveOutEveryVersionOnce() throws {
        let dir = try ScratchDirectory("concurrent-persist")
        defer { dir.remove() }
        let data = dir.appending("data").path
        // Create the store first, so neither child waits on the other creating it.
        _ = try LMDBShard(directory: data)

        let times = 200
        let children = try ["a", "b"].map { writer in
            try BackgroundChild.shoal([
                "debug", "persist-repeatedly", "shared/counter", "--data-dir", data, "--times", "\(times)",
                "--writer", writer,
            ])
        }
        let results = try children.map { try $0.wait(timeoutSeconds: 120) }
        var perChild: [[Int]] = []
        for (writer, result) in zip(["a", "b"], results) {
            #expect(result.status == 0, "writer \(writer) failed: \(result.stderr)")
            let versions = result.stdout.split(separator: "\n").compactMap { line -> Int? in
                guard line.hasPrefix("version ") else { return nil }
                return Int(line.dropFirst("version ".count))
            }
            #expect(versions.count == times, "writer \(writer) printed \(versions.count) versions: \(result.stdout)")
            #expect(versions == versions.sorted(), "writer \(writer)'s versions go backwards: \(versions)")
            perChild.append(versions)
        }
        // The two must have run at the same time, or this proves nothing.
        let (a, b) = (perChild[0], perChild[1])
        if let aFirst = a.first, let aLast = a.last, let bFirst = b.first, let bLast = b.last {
            #expect(
                aFirst < bLast && bFirst < aLast,
                "the writers did not overlap: a \(aFirst)...\(aLast), b \(bFirst)...\(bLast)")
        }

        let all = (a + b).sorted()
        let duplicates = Dictionary(grouping: all, by: { $0 }).filter { $0.value.count > 1 }.keys.sorted()
        #expect(duplicates.isEmpty, "version numbers given out twice (lost updates): \(duplicates.prefix(20))")
        let missing = Set(1...(2 * times)).subtracting(all).sorted()
        #expect(missing.isEmpty, "version numbers never given out: \(missing.prefix(20))")
        #expect(all.count == 2 * times)
        let shard = try LMDBShard(directory: data)
        #expect(try PersistentObjects.info("shared/counter", in: shard)?.version == 2 * times)
    }
}
