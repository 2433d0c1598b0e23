import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A temporary folder for one integration test, removed by `remove()` (call it in a `defer`).
public struct ScratchDirectory {
    public let url: URL

    public init(_ tag: String) throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("shoal-it-\(tag)-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    public var path: String { url.path }

    public func appending(_ component: String) -> URL { url.appendingPathComponent(component) }

    public func remove() {
        // Version files are read-only; make everything writable so the folder can go.
        if let e = FileManager.default.enumerator(atPath: url.path) {
            for case let relative as String in e {
                _ = try? FileManager.default.setAttributes(
                    [.posixPermissions: 0o755], ofItemAtPath: url.appendingPathComponent(relative).path)
            }
        }
        try? FileManager.default.removeItem(at: url)
    }
}

/// Runs a child process with a deadline; the child is always gone when `run` returns.
public enum ChildProcess {
    public struct Result {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        public var timedOut: Bool
    }

    public struct TimedOut: Error, CustomStringConvertible {
        public var command: [String]
        public var seconds: Double
        public var description: String { "'\(command.joined(separator: " "))' did not finish in \(seconds) s and was killed" }
    }

    /// Runs `executable` with `arguments`. Output goes to files in a temporary folder (so a chatty
    /// child never blocks on a full pipe). Throws `TimedOut` after killing the child.
    public static func run(
        _ executable: URL, _ arguments: [String], timeoutSeconds: Double = 30, currentDirectory: URL? = nil
    ) throws -> Result {
        let scratch = try ScratchDirectory("child")
        defer { scratch.remove() }
        let outURL = scratch.appending("stdout")
        let errURL = scratch.appending("stderr")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL)
        let err = try FileHandle(forWritingTo: errURL)
        defer {
            try? out.close()
            try? err.close()
        }

        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = out
        process.standardError = err
        if let currentDirectory { process.currentDirectoryURL = currentDirectory }
        try process.run()
        let pid = process.processIdentifier
        var finished = false
        defer {
            if !finished {
                kill(pid, SIGKILL)
                process.waitUntilExit()
            }
        }
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while process.isRunning && Date() < deadline {
            usleep(10_000)
        }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
            finished = true
            throw TimedOut(command: [executable.lastPathComponent] + arguments, seconds: timeoutSeconds)
        }
        process.waitUntilExit()
        finished = true
        return Result(
            status: process.terminationStatus,
            stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "",
            timedOut: false)
    }

    /// Runs the `shoal` executable built with the tests.
    public static func shoal(_ arguments: [String], timeoutSeconds: Double = 30, currentDirectory: URL? = nil) throws -> Result {
        try run(ShoalExecutable.url(), arguments, timeoutSeconds: timeoutSeconds, currentDirectory: currentDirectory)
    }
}
