import ArgumentParser
import Foundation
import Shoal
import ShoalExamples
import ShoalSimulation

/// `shoal demo`: the cross-correlation workflow on this machine, with a summary.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the neuroscience cross-correlation example locally and print a summary.",
        discussion: """
            Synthetic spike trains (seeded Poisson, a few neurons sharing a driver at known lags), the \
            cross-correlogram of every pair over ±maxlag bins, and its significance band from spike-dithering \
            surrogates, computed in fragments of pairs by ccSurrogateRange tasks and gathered into two matrices, \
            which are persisted in the LMDB store.
            """)

    @Option(help: "Neurons (pairs = n(n-1)/2).") var neurons = 100
    @Option(help: "Time bins.") var bins = 10_000
    @Option(help: "Mean firing rate in Hz.") var rate = 10.0
    @Option(help: "Bin width in ms.") var binMs = 5.0
    @Option(help: "Largest lag in bins.") var maxlag = 50
    @Option(help: "Surrogates per pair.") var surrogates = 100
    @Option(help: "Dither width in bins.") var dither = 10
    @Option(help: "Fragments of pairs (one ccSurrogateRange task each).") var fragments = 40
    @Option(help: "Neurons that share a hidden driver (the correlations to find).") var correlated = 4
    @Option(help: "Seed of everything random.") var seed: UInt64 = 42
    @Option(help: "Worker threads (default: cores).") var workers = ProcessInfo.processInfo.activeProcessorCount
    @Option(help: "LMDB store the results are persisted in.") var dataDir = ".shoal/data"
    @Option(help: "Also write spikes.npy, cc_original.npy and cc_surrogates.npy here.") var export: String?
    @Flag(help: "Check the result against a direct serial computation (slow for large sizes).") var verify = false
    @Option(
        help: ArgumentHelp(
            "Run the program on a simulated cluster: this scenario's peers, network and faults (its own workflows are replaced by the program, submitted where and when the first one is).",
            valueName: "scenario"))
    var simulate: String?
    @Option(help: "Seed of the simulated cluster (with --simulate).") var simulationSeed: UInt64 = 1

    func run() async throws {
        try await exitOnError {
            let params = CCParameters(
                neurons: neurons, bins: bins, rateHz: rate, binMs: binMs, maxlag: maxlag, surrogates: surrogates,
                ditherBins: dither, seed: seed, fragments: fragments, correlatedNeurons: correlated,
                injectedRateHz: correlated > 0 ? rate / 2 : 0, injectedLagBins: correlated > 0 ? 2 : 0)
            do { try params.validate() } catch {
                printError("error: \(error)")
                throw ExitCode(2)
            }
            print(
                "cross-correlation: \(neurons) neurons, \(params.numPairs) pairs, \(bins) bins of \(binMs) ms, lags ±\(maxlag), \(surrogates) surrogates, \(fragments) fragments, seed \(seed)"
            )
            let totalTasks = 1 + 2 * fragments + 2
            let output: CrossCorrelationWorkflow.Output
            if let simulate {
                output = try await runSimulated(simulate, params: params)
            } else {
                output = try await runLocally(params: params, totalTasks: totalTasks)
            }
            try report(output, params: params)
        }
    }

    /// The program on a simulated cluster (`--simulate`).
    func runSimulated(_ path: String, params: CCParameters) async throws -> CrossCorrelationWorkflow.Output {
        var scenario: Scenario
        do { scenario = try ScenarioFile.load(path: path, registry: ExampleTasks.registry, shapes: ExampleTasks.scenarioShapes) } catch {
            printError("error: \(error)")
            throw ExitCode(2)
        }
        let first = scenario.workflows.first
        scenario.workflows = []
        let cluster = SimulatedCluster(
            scenario: scenario, seed: simulationSeed, registry: ExampleTasks.registry, submitter: first?.submitter ?? 0,
            startSeconds: first?.atSeconds ?? 1, taskMicros: first?.taskMicros ?? 10_000)
        let clock = ContinuousClock()
        let start = clock.now
        let (output, report) = try await Shoal.run(simulated: cluster, name: "crosscorrelation") { wf in
            try await CrossCorrelationWorkflow.program(wf, params: params)
        }
        let elapsed = clock.now - start
        print(Simulate.describe(report))
        let w = report.workflows.last!
        print(
            String(
                format:
                    "simulated %d peers (seed %llu): %d tasks, makespan %.3f s of virtual time, %.2f s of wall time",
                report.peers, simulationSeed, w.tasks, w.makespanSeconds ?? 0,
                elapsed.seconds))
        guard report.passed else {
            printError("error: an invariant of the simulated cluster was violated (seed \(simulationSeed))")
            throw ExitCode(1)
        }
        return output
    }

    /// The program on this machine's cores.
    func runLocally(params: CCParameters, totalTasks: Int) async throws -> CrossCorrelationWorkflow.Output {
        let options = try RunOptions(
            runtime: RuntimeSettings(workers: workers), dataDirectory: dataDir, name: "crosscorrelation")
        let bar = ProgressLine("cross-correlation")
        let cpu0 = processCPUSeconds()
        let clock = ContinuousClock()
        let start = clock.now
        let output = try await Shoal.run(options) { wf in
            let ticker = Task {
                while !Task.isCancelled {
                    let s = wf.statistics
                    bar.update(done: s.completed, total: totalTasks)
                    try? await Task.sleep(for: .milliseconds(200))
                }
            }
            defer { ticker.cancel() }
            return try await CrossCorrelationWorkflow.program(wf, params: params)
        }
        bar.finish()
        let elapsed = clock.now - start
        let seconds = elapsed.seconds
        let cores = (processCPUSeconds() - cpu0) / seconds
        print(
            String(
                format: "ran %d tasks in %.2f s on %d workers, using %.2f cores on average", totalTasks, seconds,
                workers, cores))
        if let store = options.store,
            let info = try PersistentObjects.info(CrossCorrelationWorkflow.originalName, in: store)
        {
            print(
                "persisted \(CrossCorrelationWorkflow.originalName) and \(CrossCorrelationWorkflow.surrogatesName) (version \(info.version)) in \(dataDir)"
            )
        }
        return output
    }

    /// The summary, the exported files and the check.
    func report(_ output: CrossCorrelationWorkflow.Output, params: CCParameters) throws {
        print(CCSummary(params: params, trains: output.trains, result: output.result).description)
        if let export {
            let dir = URL(fileURLWithPath: export)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try NpyWriter.write(output.trains.binned(), to: dir.appendingPathComponent("spikes.npy"))
            try NpyWriter.write(output.result.original, to: dir.appendingPathComponent("cc_original.npy"))
            try NpyWriter.write(output.result.surrogates, to: dir.appendingPathComponent("cc_surrogates.npy"))
            print(
                "exported spikes.npy \(neurons)x\(bins), cc_original.npy \(params.numPairs)x\(params.numLags), cc_surrogates.npy \(params.numPairs)x\(params.numLags)x2 to \(export)"
            )
        }
        if verify {
            let serial = CrossCorrelation.serial(params: params, trains: output.trains)
            guard serial == output.result else {
                printError("error: the workflow's result differs from the serial computation")
                throw ExitCode(1)
            }
            print("verified: identical to the direct serial computation")
        }
    }
}
