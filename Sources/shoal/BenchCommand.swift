import ArgumentParser

/// `shoal bench …`: measurements that print figures (not tests). Add new benchmarks as
/// subcommands here.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure parts of Shoal and print the figures.",
        subcommands: [
            BenchTrivial.self, BenchStencil.self, BenchMemory.self, BenchStore.self, BenchSimulator.self, BenchExec.self,
            BenchCodec.self, BenchTransport.self, BenchWire.self, BenchPeers.self, BenchMove.self, BenchStencilPeers.self, BenchCalibrate.self,
        ])
}

/// Refuses a bad option before any work starts: prints `error: MESSAGE` and returns the exit code
/// to throw (2, as for a malformed scenario or workflow file). Use in `validate()` or at the top
/// of `run()`: `throw refuse("--tasks must be at least 1, got 0")`.
func refuse(_ message: String) -> ExitCode {
    printError("error: \(message)")
    return ExitCode(2)
}

/// Largest task count a benchmark option accepts (a billion): far beyond what fits in memory as
/// pending tasks, and small enough that products of counts cannot overflow.
let benchMaxTasks = 1_000_000_000
