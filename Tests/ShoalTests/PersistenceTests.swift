import Foundation
import ShoalCore
import ShoalStore
import ShoalTestSupport
import Testing

@testable import Shoal

/// A Codable struct to persist.
private struct Probe: Codable, Sendable, Equatable {
    var name: String
    var count: Int
    var weights: [Double]
    var tags: [String: Int]
}

private let probe = Probe(name: "probe-α", count: 42, weights: [0.5, -1.25, 3e10], tags: ["a": 1, "b": 2])
private let samples: [Double] = [1.5, -2.25, 0, 1e-9, 123_456.75]

/// Options whose store is a fresh LMDB shard in `directory`; the shard closes when the options go.
private func options(_ directory: URL, workers: Int = 2, name: String? = nil) throws -> RunOptions {
    try RunOptions(runtime: RuntimeSettings(workers: workers), dataDirectory: directory.path, name: name)
}

/// Runs `body` on a shard of `directory` opened only for its duration.
private func withShard<R>(_ directory: URL, _ body: (LMDBShard) throws -> R) throws -> R {
    let shard = try LMDBShard(directory: directory.path)
    return try body(shard)
}

@Suite("Persistence: persist, open and the store")
struct PersistenceTests {
    @Test func persistedValuesAreOpenedByALaterRun() async throws {
        let dir = try ScratchDirectory("persist")
        defer { dir.remove() }
        let data = dir.appending("data")

        try await Shoal.run(try options(data, name: "writer")) { wf in
            let p = wf.value(probe, name: "probe")
            // The array is a task's result, so the persist waits for that task.
            let s = wf.placeholder([Double].self, name: "samples")
            wf.submit(name: "make-samples", [.out(s)]) { context in try context.write(s, samples) }
            try wf.persist(p, as: "it/probe")
            try wf.persist(s, as: "it/samples")
        }

        let (openedProbe, openedSamples) = try await Shoal.run(try options(data)) { wf in
            let p = try wf.open("it/probe", as: Probe.self)
            let s = try wf.open("it/samples", as: [Double].self)
            return (try await wf.wait(on: p), try await wf.wait(on: s))
        }
        #expect(openedProbe == probe)
        #expect(openedSamples == samples)

        try withShard(data) { shard throws in
            let info = try #require(try PersistentObjects.info("it/probe", in: shard))
            #expect(info.version == 1)
            #expect(info.codec == "binary")
            #expect(info.writer == "writer")
            #expect(info.type.hasSuffix("Probe"))
            #expect(info.bytes == (try shard.get(Array("it/probe".utf8), in: .values))?.count)
            #expect(try PersistentObjects.load("it/samples", as: [Double].self, from: shard) == samples)
        }
    }

    @Test func versionsCountUpOnOverwrite() async throws {
        let dir = try ScratchDirectory("versions")
        defer { dir.remove() }
        let data = dir.appending("data")

        try await Shoal.run(try options(data)) { wf in
            try wf.persist(wf.value([1.0]), as: "v")
        }
        try withShard(data) { shard throws in #expect(try PersistentObjects.info("v", in: shard)?.version == 1) }

        // A second run overwrites twice, one barrier apart.
        try await Shoal.run(try options(data)) { wf in
            let x = wf.value([2.0], name: "x")
            try wf.persist(x, as: "v")
            try await wf.barrier()
            wf.submit(name: "append", [.inout(x)]) { context in try context.update(x) { $0.append(3) } }
            try wf.persist(x, as: "v")
        }
        try withShard(data) { shard throws in
            let info = try #require(try PersistentObjects.info("v", in: shard))
            #expect(info.version == 3)
            #expect(try PersistentObjects.load("v", as: [Double].self, from: shard) == [2, 3])
            // store() directly also counts on.
            #expect(try PersistentObjects.store([4.0], as: "v", in: shard).version == 4)
            #expect(try PersistentObjects.info("v", in: shard)?.version == 4)
            #expect(try PersistentObjects.info("never", in: shard) == nil)
        }
    }

    @Test func openingAMissingNameThrowsNotFound() async throws {
        let dir = try ScratchDirectory("missing")
        defer { dir.remove() }
        await #expect(throws: ShoalError.notFound(name: "nothing/here")) {
            try await Shoal.run(try options(dir.appending("data"))) { wf in
                _ = try wf.open("nothing/here", as: [Double].self)
            }
        }
    }

    @Test func openingWithTheWrongTypeIsATypeMismatch() async throws {
        let dir = try ScratchDirectory("mismatch")
        defer { dir.remove() }
        let data = dir.appending("data")
        try await Shoal.run(try options(data)) { wf in
            try wf.persist(wf.value(samples), as: "numbers")
            try wf.persist(wf.value(probe), as: "probe")
        }

        for attempt in 0..<2 {
            do {
                try await Shoal.run(try options(data)) { wf in
                    if attempt == 0 {
                        _ = try wf.open("numbers", as: Probe.self)
                    } else {
                        _ = try wf.open("probe", as: [Double].self)
                    }
                }
                Issue.record("opening with the wrong type succeeded (attempt \(attempt))")
            } catch let error as ShoalError {
                guard case .typeMismatch(let name, let expected, let actual) = error else {
                    Issue.record("expected typeMismatch, got \(error)")
                    continue
                }
                if attempt == 0 {
                    #expect(name == "numbers")
                    #expect(expected == "Probe")
                    #expect(actual.hasPrefix("Swift.Array<Swift.Double>"), "actual: \(actual)")
                    #expect(error.description.hasPrefix("'numbers' holds Swift.Array<Swift.Double>"), "\(error)")
                    #expect(error.description.contains("not Probe"), "\(error)")
                } else {
                    #expect(name == "probe")
                    #expect(expected == "Array<Double>")
                    #expect(actual.contains("Probe"), "actual: \(actual)")
                }
            }
        }
    }

    @Test func persistAndOpenWithoutAStoreThrowNoStore() async throws {
        await #expect(throws: ShoalError.noStore(operation: "persist 'x'")) {
            try await Shoal.run(RunOptions(runtime: RuntimeSettings(workers: 1))) { wf in
                try wf.persist(wf.value([1.0]), as: "x")
            }
        }
        await #expect(throws: ShoalError.noStore(operation: "open 'x'")) {
            try await Shoal.run(RunOptions(runtime: RuntimeSettings(workers: 1))) { wf in
                _ = try wf.open("x", as: [Double].self)
            }
        }
    }

    @Test func anotherProcessReadsThePersistedObject() async throws {
        let dir = try ScratchDirectory("kv-get")
        defer { dir.remove() }
        let data = dir.appending("data")
        try await Shoal.run(try options(data)) { wf in
            try wf.persist(wf.value(probe), as: "shared/probe")
            try wf.persist(wf.value(samples), as: "shared/samples")
        }

        // The stored bytes (--raw) are the binary encoding, which another program decodes.
        let rawFile = dir.appending("probe.bin")
        let raw = try ChildProcess.shoal([
            "kv", "get", "shared/probe", "--raw", "--output", rawFile.path, "--data-dir", data.path,
        ])
        #expect(raw.status == 0, "stderr: \(raw.stderr)")
        let stored = [UInt8](try Data(contentsOf: rawFile))
        #expect(try BinaryDecoder().decode(Probe.self, from: stored) == probe)
        #expect(stored == (try BinaryEncoder().encode(probe)))

        // Without --raw, people get the structure: names, strings, numbers, arrays.
        let got = try ChildProcess.shoal(["kv", "get", "shared/probe", "--data-dir", data.path])
        #expect(got.status == 0, "stderr: \(got.stderr)")
        #expect(got.stdout.contains("persistent object version 1 of type"), "stdout: \(got.stdout)")
        #expect(got.stdout.contains("name: \"probe-α\""), "stdout: \(got.stdout)")
        #expect(got.stdout.contains("count: 2a 00 00 00 00 00 00 00 (Int64 42 or Double"), "stdout: \(got.stdout)")
        #expect(
            got.stdout.contains("weights: 3 × 8-byte scalars: as Double [0.5, -1.25, 30000000000.0]"),
            "stdout: \(got.stdout)")
        #expect(got.stdout.contains("a: 01 00 00 00 00 00 00 00 (Int64 1 or"), "stdout: \(got.stdout)")

        let array = try ChildProcess.shoal(["kv", "get", "shared/samples", "--data-dir", data.path])
        #expect(array.status == 0, "stderr: \(array.stderr)")
        #expect(
            array.stdout.contains("5 × 8-byte scalars: as Double [1.5, -2.25, 0.0, 1e-09, 123456.75]"),
            "stdout: \(array.stdout)")

        let meta = try ChildProcess.shoal(["kv", "get", "shared/probe", "--table", "versions", "--data-dir", data.path])
        #expect(meta.status == 0, "stderr: \(meta.stderr)")
        let info = try JSONDecoder().decode(PersistentObjectInfo.self, from: Data(meta.stdout.utf8))
        #expect(info.version == 1)
        #expect(info.codec == "binary")
        #expect(info.bytes == stored.count)
    }

    @Test func persistingADatumWhoseWriterFailedSurfacesAtTheBarrier() async throws {
        struct Boom: Error, CustomStringConvertible { var description: String { "boom from the writer" } }
        let dir = try ScratchDirectory("persist-fail")
        defer { dir.remove() }
        let data = dir.appending("data")

        do {
            try await Shoal.run(try options(data)) { wf in
                let x = wf.placeholder([Double].self, name: "x")
                wf.submit(name: "bad-writer", [.out(x)]) { _ in throw Boom() }
                try wf.persist(x, as: "never-written")  // returns at once
                try await wf.barrier()
                Issue.record("the barrier did not throw")
            }
            Issue.record("the run did not throw")
        } catch let error as ShoalError {
            guard case .taskFailed(let task, let message, _) = error else {
                Issue.record("expected taskFailed, got \(error)")
                return
            }
            #expect(task == "bad-writer")
            #expect(message.contains("boom from the writer"), "\(message)")
        }
        try withShard(data) { shard throws in
            #expect(try shard.get(Array("never-written".utf8), in: .values) == nil)
            #expect(try PersistentObjects.info("never-written", in: shard) == nil)
        }
    }

    @Test func persistingAValueWhoseWriterFailureWasIgnoredFailsThePersist() async throws {
        let dir = try ScratchDirectory("persist-ignored")
        defer { dir.remove() }
        let data = dir.appending("data")

        do {
            try await Shoal.run(try options(data)) { wf in
                let x = wf.placeholder([Double].self, name: "x")
                wf.submit(name: "bad-writer", [.out(x)], policy: FailurePolicy(action: .ignore)) { _ in
                    throw CocoaError(.featureUnsupported)
                }
                try wf.persist(x, as: "no-value")
                try await wf.barrier()
                Issue.record("the barrier did not throw")
            }
            Issue.record("the run did not throw")
        } catch let error as ShoalError {
            guard case .taskFailed(let task, let message, _) = error else {
                Issue.record("expected taskFailed, got \(error)")
                return
            }
            #expect(task == "persist:no-value")
            #expect(message.contains("no value"), "\(message)")
        }
        try withShard(data) { shard throws in #expect(try PersistentObjects.info("no-value", in: shard) == nil) }
    }
}
