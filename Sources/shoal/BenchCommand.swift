import ArgumentParser

/// `shoal bench …`: measurements that print figures (not tests). Add new benchmarks as
/// subcommands here.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure parts of Shoal and print the figures.",
        subcommands: [BenchTrivial.self, BenchStencil.self, BenchMemory.self, BenchStore.self, BenchSimulator.self])
}
