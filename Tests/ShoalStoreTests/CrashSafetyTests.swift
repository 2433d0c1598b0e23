import Foundation
import ShoalCore
import ShoalStore
import ShoalTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Kills a process in the middle of writing batches and checks that the store holds whole
/// batches only: everything reported committed, nothing half-written.
@Suite struct CrashSafetyTests {
    struct Shape: Sendable, CustomStringConvertible {
        var batchSize: Int
        var valueBytes: Int
        /// When to kill after the 20th report, as a fraction of the mean time between reports, so
        /// the kill lands at different points of a batch.
        var killAtFraction: Double
        var description: String { "\(batchSize) keys x \(valueBytes) bytes, kill at +\(killAtFraction) batch" }
    }

    @Test(arguments: [
        Shape(batchSize: 1_000, valueBytes: 16, killAtFraction: 0),
        Shape(batchSize: 40, valueBytes: 8_192, killAtFraction: 0.5),
        Shape(batchSize: 200, valueBytes: 512, killAtFraction: 0.8),
    ])
    func sigkillMidWriteLeavesOnlyWholeBatches(shape: Shape) throws {
        let directory = try makeTemporaryDirectory("shoal-crash")
        defer { try? FileManager.default.removeItem(at: directory) }
        let dataDirectory = directory.appendingPathComponent("data").path

        let child = Process()
        child.executableURL = try ShoalExecutable.url()
        child.arguments = [
            "debug", "write-batches", "--data-dir", dataDirectory, "--batches", "1000000",
            "--batch-size", "\(shape.batchSize)", "--value-bytes", "\(shape.valueBytes)",
        ]
        let stdout = Pipe()
        child.standardOutput = stdout
        let stderrPath = directory.appendingPathComponent("stderr.txt")
        _ = FileManager.default.createFile(atPath: stderrPath.path, contents: nil)
        child.standardError = try FileHandle(forWritingTo: stderrPath)
        try child.run()
        defer {
            if child.isRunning {
                kill(child.processIdentifier, SIGKILL)
                child.waitUntilExit()
            }
        }

        let reader = CommitReader(fd: stdout.fileHandleForReading.fileDescriptor)
        _ = try reader.readReports(until: 10, timeoutSeconds: 60)
        let tenth = Date()
        let reported = try reader.readReports(until: 20, timeoutSeconds: 60)
        let interval = Date().timeIntervalSince(tenth) / Double(max(1, reported - 10))
        if shape.killAtFraction > 0 { usleep(useconds_t(interval * shape.killAtFraction * 1e6)) }
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        let stderrText = (try? String(contentsOf: stderrPath, encoding: .utf8)) ?? ""
        #expect(child.terminationReason == .uncaughtSignal, "child exited by itself: \(stderrText)")
        // Lines already in the pipe when it died were committed too.
        let lastReported = try reader.readReports(until: nil, timeoutSeconds: 5)
        try #require(lastReported >= 19, "child reported only up to batch \(lastReported); stderr: \(stderrText)")

        let shard = try LMDBShard(directory: dataDirectory)
        var keysPerBatch: [UInt64: Int] = [:]
        var wrongValues = 0
        var after: [UInt8]? = nil
        while true {
            let page = try shard.scan(.values, prefix: [], after: after, limit: 5_000)
            if page.isEmpty { break }
            for entry in page {
                let i = uint64(bigEndian: entry.key.prefix(8))
                let j = uint64(bigEndian: entry.key.dropFirst(8))
                keysPerBatch[i, default: 0] += 1
                if entry.key.count != 16 || j >= UInt64(shape.batchSize)
                    || entry.value != Self.expectedValue(i: i, j: j, valueBytes: shape.valueBytes)
                {
                    wrongValues += 1
                }
            }
            after = page.last!.key
        }
        let present = keysPerBatch.keys.sorted()
        print(
            "crash test (\(shape)): killed \(Int(interval * shape.killAtFraction * 1e3)) ms after a report, batch \(lastReported) was reported; store holds \(present.count) batches"
        )
        #expect(wrongValues == 0)
        // Every batch present is whole.
        let partial = keysPerBatch.filter { $0.value != shape.batchSize }
        #expect(partial.isEmpty, "half-written batches (batch: keys): \(partial)")
        // Present batches are exactly 0...n, with n the last reported or the one after it (committed
        // but killed before printing).
        #expect(present == Array(0..<UInt64(present.count)), "batches present are not contiguous from 0")
        #expect(
            present.count == lastReported + 1 || present.count == lastReported + 2,
            "reported up to \(lastReported), store holds \(present.count) batches")
        #expect(try shard.count(.values) == present.count * shape.batchSize)
        #expect(try shard.storedBytes() == present.count * shape.batchSize * shape.valueBytes)
    }

    /// A store cut short at any length (a full disk, a copy that stopped, a crash of the file
    /// system) is either still whole, when only free pages LMDB never wrote were cut, or is
    /// reported as damaged: never a SIGBUS, never a store that quietly lost entries. The real
    /// `shoal` opens each cut copy, so a crash would show as a signal rather than kill the tests.
    @Test func truncatedStoreIsReportedNeverCrashedOn() throws {
        let directory = try makeTemporaryDirectory("shoal-truncate")
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = directory.appendingPathComponent("source").path
        let written = try ChildProcess.shoal(
            [
                "debug", "write-batches", "--data-dir", source, "--batches", "30", "--batch-size", "100",
                "--value-bytes", "3000",
            ], timeoutSeconds: 120)
        try #require(written.status == 0, "writer failed: \(written.stderr)")
        let listing = try DamagedStoreCommandTests.shoal(["kv", "ls", "--data-dir", source])
        try #require(listing.exitStatus == 0 && listing.stdout.count > 0, "\(listing)")
        let original = try Data(contentsOf: URL(fileURLWithPath: source + "/data.mdb"))
        let pageSize = 4_096
        let pages = original.count / pageSize
        try #require(pages > 8)

        // Cut points: nothing left, inside and at the end of the meta pages, then through the
        // B-tree and value pages, down to one byte short.
        var cuts = [0, 100, pageSize, 2 * pageSize - 1, 2 * pageSize, 2 * pageSize + 1, 3 * pageSize]
        cuts += stride(from: 4, to: pages, by: max(1, pages / 12)).map { $0 * pageSize + 1_000 }
        cuts += [original.count - pageSize, original.count - 1]
        var reported = 0
        for cut in cuts {
            let copy = directory.appendingPathComponent("cut-\(cut)")
            try FileManager.default.createDirectory(at: copy, withIntermediateDirectories: true)
            try original.prefix(cut).write(to: copy.appendingPathComponent("data.mdb"))
            for command in [["kv", "ls"], ["kv", "put", "after-cut", "x"]] {
                let outcome = try DamagedStoreCommandTests.shoal(command + ["--data-dir", copy.path])
                let what =
                    "\(command.joined(separator: " ")) after cutting data.mdb to \(cut) of \(original.count) bytes"
                #expect(outcome.signal == nil, "\(what): \(outcome)")
                if outcome.exitStatus == 0 {
                    // Whole: only unwritten free pages were cut, and every entry is still there.
                    let sameListing = outcome.stdout == listing.stdout
                    if command == ["kv", "ls"] {
                        #expect(sameListing, "\(what) listed other entries than the whole store")
                    }
                } else {
                    DamagedStoreCommandTests.expectDamagedReport(outcome, copy.path, what)
                    reported += 1
                }
            }
            try? FileManager.default.removeItem(at: copy)
        }
        print(
            "truncation: \(cuts.count) cuts of a \(original.count)-byte store, \(reported) of \(2 * cuts.count) runs reported damage"
        )
        // Cutting into the meta pages or the trees is always damage.
        #expect(reported >= 2 * 7)
    }

    /// The value `shoal debug write-batches` writes for key (i, j): BE64(i) ++ BE64(j) padded with
    /// the byte UInt8(truncating: i + j).
    static func expectedValue(i: UInt64, j: UInt64, valueBytes: Int) -> [UInt8] {
        bigEndian(i) + bigEndian(j) + [UInt8](repeating: UInt8(truncatingIfNeeded: i &+ j), count: valueBytes - 16)
    }

    /// Reads the writer's `committed i` lines from a pipe, keeping partial lines between calls.
    final class CommitReader {
        let fd: Int32
        private var pending: [UInt8] = []
        /// The highest batch reported so far, or -1.
        private(set) var highest = -1

        init(fd: Int32) { self.fd = fd }

        /// Reads until batch `until` is reported (or, with nil, until end of file) and returns
        /// the highest batch reported. Throws after `timeoutSeconds` unless `until` is nil.
        func readReports(until: Int?, timeoutSeconds: Double) throws -> Int {
            let deadline = Date().addingTimeInterval(timeoutSeconds)
            var buffer = [UInt8](repeating: 0, count: 4096)
            while Date() < deadline {
                if let until, highest >= until { return highest }
                var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                if poll(&descriptor, 1, 100) <= 0 { continue }
                let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count <= 0 { return highest }  // end of file: the child is gone
                pending += buffer[0..<count]
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: pending[..<newline], as: UTF8.self)
                    pending.removeSubrange(...newline)
                    if line.hasPrefix("committed "), let i = Int(line.dropFirst("committed ".count)) {
                        highest = max(highest, i)
                    }
                }
            }
            if until == nil { return highest }
            throw ChildTimeout(highest: highest, waitedSeconds: timeoutSeconds)
        }
    }

    struct ChildTimeout: Error, CustomStringConvertible {
        var highest: Int
        var waitedSeconds: Double
        var description: String {
            "the writer reported only up to batch \(highest) after \(waitedSeconds) s"
        }
    }
}
