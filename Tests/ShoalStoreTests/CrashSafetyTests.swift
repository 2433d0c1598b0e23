import Foundation
import ShoalCore
import ShoalStore
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
        /// Extra wait after the 20th report, so the kill lands at different points of a batch.
        var killDelayMs: Int
        var description: String { "\(batchSize) keys x \(valueBytes) bytes, kill +\(killDelayMs) ms" }
    }

    @Test(arguments: [
        Shape(batchSize: 1_000, valueBytes: 16, killDelayMs: 0),
        Shape(batchSize: 40, valueBytes: 8_192, killDelayMs: 3),
        Shape(batchSize: 200, valueBytes: 512, killDelayMs: 11),
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
        FileManager.default.createFile(atPath: stderrPath.path, contents: nil)
        child.standardError = try FileHandle(forWritingTo: stderrPath)
        try child.run()
        defer {
            if child.isRunning {
                kill(child.processIdentifier, SIGKILL)
                child.waitUntilExit()
            }
        }

        let reported = try readCommitted(from: stdout.fileHandleForReading.fileDescriptor, until: 20, timeoutSeconds: 60)
        if shape.killDelayMs > 0 { usleep(useconds_t(shape.killDelayMs * 1_000)) }
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        let stderrText = (try? String(contentsOf: stderrPath, encoding: .utf8)) ?? ""
        #expect(child.terminationReason == .uncaughtSignal, "child exited by itself: \(stderrText)")
        // Lines already in the pipe when it died were committed too.
        let lastReported = max(reported, try readCommitted(from: stdout.fileHandleForReading.fileDescriptor, until: nil, timeoutSeconds: 5))
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
        print("crash test (\(shape)): killed after batch \(lastReported) was reported; store holds \(present.count) batches")
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

    /// The value `shoal debug write-batches` writes for key (i, j): BE64(i) ++ BE64(j) padded with
    /// the byte UInt8(truncating: i + j).
    static func expectedValue(i: UInt64, j: UInt64, valueBytes: Int) -> [UInt8] {
        bigEndian(i) + bigEndian(j) + [UInt8](repeating: UInt8(truncatingIfNeeded: i &+ j), count: valueBytes - 16)
    }

    /// Reads `committed i` lines from `fd` until batch `until` is reported (or, with nil, until
    /// end of file); returns the highest batch reported, or -1. Fails after `timeoutSeconds`.
    private func readCommitted(from fd: Int32, until: Int?, timeoutSeconds: Double) throws -> Int {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        var pending = ""
        var highest = -1
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            if let until, highest >= until { return highest }
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, 100)
            if ready <= 0 { continue }
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count <= 0 { return highest }  // end of file: the child is gone
            pending += String(decoding: buffer[0..<count], as: UTF8.self)
            while let newline = pending.firstIndex(of: "\n") {
                let line = pending[..<newline]
                pending = String(pending[pending.index(after: newline)...])
                if line.hasPrefix("committed "), let i = Int(line.dropFirst("committed ".count)) {
                    highest = max(highest, i)
                }
            }
        }
        if until == nil { return highest }
        throw ChildTimeout(highest: highest, waitedSeconds: timeoutSeconds)
    }

    struct ChildTimeout: Error, CustomStringConvertible {
        var highest: Int
        var waitedSeconds: Double
        var description: String {
            "the writer reported only up to batch \(highest) after \(waitedSeconds) s"
        }
    }
}
