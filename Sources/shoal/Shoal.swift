import ArgumentParser

@main
struct ShoalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shoal",
        abstract: "Shoal: a peer-to-peer dataflow engine.",
        subcommands: [Demo.self, Run.self, Graph.self, Simulate.self, KV.self, PeerCommand.self, Submit.self, Status.self, Bench.self, Debug.self])
}
