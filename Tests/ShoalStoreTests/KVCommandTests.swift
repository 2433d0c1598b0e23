import Foundation
import ShoalTestSupport
import ShoalCore
import ShoalStore
import Testing

/// `shoal kv` end to end: the real executable against a temporary store.
@Suite struct KVCommandTests {
    struct Result {
        var status: Int32
        var stdout: [UInt8]
        var stderr: String
    }

    /// Runs `shoal` with `arguments`, feeding `input` on standard input.
    func shoal(_ arguments: [String], input: [UInt8] = []) throws -> Result {
        let process = Process()
        process.executableURL = try ShoalExecutable.url()
        process.arguments = arguments
        let stdin = Pipe()
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        defer { if process.isRunning { process.terminate() } }
        stdin.fileHandleForWriting.write(Data(input))
        try stdin.fileHandleForWriting.close()
        // Outputs here are small (under a pipe buffer), so reading stdout then stderr cannot block.
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        let err = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: [UInt8](out), stderr: String(decoding: err, as: UTF8.self))
    }

    @Test func putGetListRemove() throws {
        let directory = try makeTemporaryDirectory("shoal-kv")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = ["--data-dir", directory.appendingPathComponent("store").path]

        #expect(try shoal(["kv", "put", "greeting", "hello"] + store).status == 0)
        let binary: [UInt8] = [0, 1, 2, 255, 10, 13]
        #expect(try shoal(["kv", "put", "blob"] + store, input: binary).status == 0)
        let file = directory.appendingPathComponent("input.bin")
        try Data(repeating: 7, count: 5_000).write(to: file)
        #expect(try shoal(["kv", "put", "from-file", "--file", file.path] + store).status == 0)
        #expect(try shoal(["kv", "put", "meta", "v2", "--table", "versions"] + store).status == 0)

        #expect(try shoal(["kv", "get", "greeting"] + store).stdout == bytes("hello"))
        #expect(try shoal(["kv", "get", "blob"] + store).stdout == binary)
        let output = directory.appendingPathComponent("output.bin")
        #expect(try shoal(["kv", "get", "from-file", "--output", output.path] + store).status == 0)
        #expect(try Data(contentsOf: output) == Data(repeating: 7, count: 5_000))
        #expect(try shoal(["kv", "get", "meta", "--table", "versions"] + store).stdout == bytes("v2"))

        let listing = String(decoding: try shoal(["kv", "ls"] + store).stdout, as: UTF8.self)
        #expect(listing == "blob\t6\nfrom-file\t5000\ngreeting\t5\n")
        let limited = String(decoding: try shoal(["kv", "ls", "--prefix", "g", "--limit", "1"] + store).stdout, as: UTF8.self)
        #expect(limited == "greeting\t5\n")

        #expect(try shoal(["kv", "rm", "greeting"] + store).status == 0)
        let missing = try shoal(["kv", "get", "greeting"] + store)
        #expect(missing.status == 1)
        #expect(missing.stdout.isEmpty)
        #expect(missing.stderr.contains("no key 'greeting' in table 'values'"), "stderr: \(missing.stderr)")
    }

    @Test func errorsAreShortMessages() throws {
        let directory = try makeTemporaryDirectory("shoal-kv")
        defer { try? FileManager.default.removeItem(at: directory) }
        let absent = try shoal(["kv", "get", "k", "--data-dir", directory.appendingPathComponent("none").path])
        #expect(absent.status == 1)
        #expect(absent.stderr.contains("no store in"), "stderr: \(absent.stderr)")

        let longKey = String(repeating: "k", count: 600)
        let invalid = try shoal(["kv", "put", longKey, "v", "--data-dir", directory.path])
        #expect(invalid.status == 2)
        #expect(invalid.stderr.contains("invalid key of 600 bytes"), "stderr: \(invalid.stderr)")
        #expect(invalid.stderr.split(separator: "\n").count == 1, "stderr: \(invalid.stderr)")
    }
}
