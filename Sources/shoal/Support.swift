import ArgumentParser
import Foundation
import ShoalTransport
import Shoal

#if canImport(Glibc)
import Glibc
#endif

/// Prints a message to standard error.
func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// A one-line progress bar on standard error, drawn only when it is a terminal.
final class ProgressLine: Sendable {
    let enabled = isatty(STDERR_FILENO) != 0
    let label: String

    init(_ label: String) { self.label = label }

    func update(done: Int, total: Int, failed: Int = 0) {
        guard enabled, total > 0 else { return }
        let width = 30
        let filled = min(width, done * width / total)
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let extra = failed > 0 ? ", \(failed) failed" : ""
        FileHandle.standardError.write(Data("\r\(label) [\(bar)] \(done)/\(total) tasks\(extra)  ".utf8))
    }

    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}

extension Duration {
    /// The duration in seconds.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}

/// Median wall seconds of `body` over `runs` runs (the benchmarks' measure).
func medianSeconds(runs: Int, _ body: () throws -> Void) rethrows -> Double {
    var times: [Double] = []
    for _ in 0..<max(1, runs) {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    times.sort()
    return times[times.count / 2]
}

/// Seconds of CPU this process used so far (user + system).
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}

/// The exit code of the `shoal` command for a known error: 2 for input that cannot be used as
/// given (a malformed file, a bad option, folder or key), 1 for work that failed (a task, the
/// store, the file system). Nil for any other error, which ArgumentParser reports itself.
func exitCode(for error: any Error) -> Int32? {
    switch error {
    case is WorkflowFileError, is RunSetupError, is ArgumentNotUTF8, is KeyFileError: return 2
    case is ZMQError, is TransportError: return 1
    case ShardError.invalidKey: return 2  // a key the store cannot take is bad input
    case is ExecTaskFailure, is FileError, is ShoalError, is ShardError, is CommandFailure: return 1
    default: return nil
    }
}

/// Runs `body`; a known error is printed as one `error: ...` line and becomes its exit code
/// (`exitCode(for:)`).
func exitOnError(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch {
        guard let code = exitCode(for: error) else { throw error }
        printError("error: \(error)")
        throw ExitCode(code)
    }
}

/// `exitOnError` for synchronous commands.
func exitOnError(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch {
        guard let code = exitCode(for: error) else { throw error }
        printError("error: \(error)")
        throw ExitCode(code)
    }
}
