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

/// A child process started in the background, for tests that must act while it runs (send it a
/// signal, look at its children). Output goes to files; `wait` has a deadline, and `deinit`
/// kills the child if it still runs, so a failing test leaves nothing behind.
public final class BackgroundChild {
    public let process = Process()
    private let scratch: ScratchDirectory
    private let out: FileHandle
    private let err: FileHandle

    public init(_ executable: URL, _ arguments: [String], environment: [String: String] = [:]) throws {
        scratch = try ScratchDirectory("bg-child")
        _ = FileManager.default.createFile(atPath: scratch.appending("stdout").path, contents: nil)
        _ = FileManager.default.createFile(atPath: scratch.appending("stderr").path, contents: nil)
        out = try FileHandle(forWritingTo: scratch.appending("stdout"))
        err = try FileHandle(forWritingTo: scratch.appending("stderr"))
        process.executableURL = executable
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = out
        process.standardError = err
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        try process.run()
    }

    /// The `shoal` executable built with the tests.
    public static func shoal(_ arguments: [String], environment: [String: String] = [:]) throws -> BackgroundChild {
        try BackgroundChild(ShoalExecutable.url(), arguments, environment: environment)
    }

    public var pid: Int32 { process.processIdentifier }

    /// What the child wrote so far.
    public var stdoutSoFar: String { (try? String(contentsOf: scratch.appending("stdout"), encoding: .utf8)) ?? "" }
    public var stderrSoFar: String { (try? String(contentsOf: scratch.appending("stderr"), encoding: .utf8)) ?? "" }

    /// Waits for the child to exit; kills it and throws `ChildProcess.TimedOut` past the deadline.
    public func wait(timeoutSeconds: Double = 30) throws -> ChildProcess.Result {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
            throw ChildProcess.TimedOut(command: process.arguments ?? [], seconds: timeoutSeconds)
        }
        process.waitUntilExit()
        try? out.close()
        try? err.close()
        return ChildProcess.Result(
            status: process.terminationStatus,
            stdout: (try? String(contentsOf: scratch.appending("stdout"), encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: scratch.appending("stderr"), encoding: .utf8)) ?? "",
            timedOut: false)
    }

    deinit {
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
        try? out.close()
        try? err.close()
        scratch.remove()
    }
}

/// Processes as the kernel shows them in `/proc`, for tests that check nothing was left running.
public enum Processes {
    /// Whether `pid` is running (alive and not a zombie waiting to be reaped).
    public static func isRunning(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let paren = stat.lastIndex(of: ")")
        else { return false }
        let state = stat[stat.index(paren, offsetBy: 2)]
        return state != "Z" && state != "X"
    }

    /// Pids of running processes whose command line contains `marker`.
    public static func running(matching marker: String) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(Int32.init).filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            let line = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            return line.contains(marker) && isRunning(pid)
        }
    }

    /// The `SigBlk` and `SigIgn` masks of `pid` (`/proc/<pid>/status`), as numbers.
    public static func signalMasks(_ pid: Int32) -> (blocked: UInt64, ignored: UInt64)? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        func field(_ name: String) -> UInt64? {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return nil }
            return UInt64(line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces), radix: 16)
        }
        guard let blocked = field("SigBlk"), let ignored = field("SigIgn") else { return nil }
        return (blocked, ignored)
    }

    /// Waits up to `seconds` for `condition`; returns whether it became true.
    public static func eventually(_ seconds: Double = 10, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }
}
