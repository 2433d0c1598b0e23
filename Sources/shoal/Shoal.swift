import ArgumentParser

@main
struct ShoalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shoal",
        abstract: "Shoal: a peer-to-peer dataflow engine.",
        subcommands: [Bench.self])
}

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks that print figures.", subcommands: [BenchTrivial.self, BenchStencil.self])
}
