import ArgumentParser
import Foundation
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

/// Seconds of CPU this process used so far (user + system).
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}

/// Exits with code 2 and the error's message for bad input, 1 for a failed run.
func exitOnError(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as WorkflowFileError {
        printError("error: \(error)")
        throw ExitCode(2)
    } catch let error as RunSetupError {
        printError("error: \(error)")
        throw ExitCode(2)
    } catch let error as ExecTaskFailure {
        printError("error: \(error)")
        throw ExitCode(1)
    } catch let error as FileError {
        printError("error: \(error)")
        throw ExitCode(1)
    } catch let error as ShoalError {
        printError("error: \(error)")
        throw ExitCode(1)
    } catch let error as ShardError {
        printError("error: \(error)")
        throw ExitCode(1)
    }
}
