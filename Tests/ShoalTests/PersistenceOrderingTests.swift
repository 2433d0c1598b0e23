import Foundation
import ShoalTestSupport
import ShoalStore
import Testing

@testable import Shoal

@Suite struct PersistenceOrderingTests {
    @Test func laterPersistOfTheSameNameWins() async throws {
        let dir = try ScratchDirectory("persist-order")
        defer { dir.remove() }
        let data = dir.appending("data")
        try await Shoal.run(try RunOptions(runtime: RuntimeSettings(workers: 2), dataDirectory: data.path)) { wf in
            let x = wf.placeholder([Double].self, name: "x")
            wf.submit(name: "slow-v1", [.out(x)]) { context in
                Thread.sleep(forTimeInterval: 0.3)
                try context.write(x, [1])
            }
            try wf.persist(x, as: "n")  // x@v1
            wf.submit(name: "fast-v2", [.out(x)]) { context in try context.write(x, [2]) }
            try wf.persist(x, as: "n")  // x@v2: the program's last word
        }
        let shard = try LMDBShard(directory: data.path)
        #expect(try PersistentObjects.load("n", as: [Double].self, from: shard) == [2])
        #expect(try PersistentObjects.info("n", in: shard)?.version == 2)
    }

    @Test func everyRunLeavesARecord() async throws {
        let dir = try ScratchDirectory("probe-records")
        defer { dir.remove() }
        let path = dir.appending("wf.yaml").path
        try "name: quick\ntasks:\n  - name: a\n    exec: \"echo hi > {out:x}\"\n".write(toFile: path, atomically: true, encoding: .utf8)
        let file = try WorkflowFile.load(path: path)
        let store = try LMDBShard(directory: dir.appending("data").path)
        for i in 0..<3 {
            _ = try await WorkflowRunner(
                file: file, registry: TaskRegistry(), options: RunOptions(runtime: RuntimeSettings(workers: 2), store: store),
                workDirectory: dir.appending("work\(i)")).run()
        }
        let n = try store.count(.workflows); #expect(n == 3, "records: \(n)")
    }

    @Test func twoPersistsOfOneNameCountTwoVersions() async throws {
        var versions: [Int] = []
        for _ in 0..<20 {
            let dir = try ScratchDirectory("probe-versions")
            defer { dir.remove() }
            let data = dir.appending("data")
            try await Shoal.run(try RunOptions(runtime: RuntimeSettings(workers: 2), dataDirectory: data.path)) { wf in
                let x = wf.value([1.0, 2.0])
                try wf.persist(x, as: "n")
                try wf.persist(x, as: "n")
            }
            let shard = try LMDBShard(directory: data.path)
            versions.append(try PersistentObjects.info("n", in: shard)?.version ?? 0)
        }
        #expect(versions.allSatisfy { $0 == 2 }, "\(versions)")
    }
}
