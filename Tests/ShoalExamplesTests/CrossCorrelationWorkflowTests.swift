import Foundation
import Shoal
import ShoalExamples
import ShoalStore
import Testing

/// Small parameters: 66 pairs, 21 lags, 30 surrogates, 5 fragments (so one fragment per gather
/// of uneven size), with a correlated group so the matrices are not all noise.
private let workflowParams = CCParameters(
    neurons: 12, bins: 2_000, rateHz: 20, binMs: 5, maxlag: 10, surrogates: 30, ditherBins: 5,
    seed: 11, fragments: 5, correlatedNeurons: 3, injectedRateHz: 4, injectedLagBins: 2)

/// A temporary folder, removed by the caller.
private func temporaryFolder() throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("shoal-it-ccwf-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

@Suite("Cross-correlation workflow on the engine")
struct CrossCorrelationWorkflowTests {
    /// The workflow's output, run on `workers` threads, with a store in `dataDirectory` if given.
    private func runWorkflow(workers: Int, dataDirectory: URL? = nil) async throws -> CrossCorrelationWorkflow.Output {
        let runtime = RuntimeSettings(workers: workers)
        let options =
            try dataDirectory.map { try RunOptions(runtime: runtime, dataDirectory: $0.path, name: "crosscorrelation") }
            ?? RunOptions(runtime: runtime)
        return try await Shoal.run(options) { wf in
            try await CrossCorrelationWorkflow.program(wf, params: workflowParams)
        }
    }

    @Test(arguments: [2, 1])
    func matchesTheSerialComputation(workers: Int) async throws {
        let output = try await runWorkflow(workers: workers)
        #expect(output.trains == (try SpikeTrains.generate(workflowParams)))
        let serial = CrossCorrelation.serial(params: workflowParams, trains: output.trains)
        #expect(output.result.original.rows == workflowParams.numPairs)
        #expect(output.result.original.cols == workflowParams.numLags)
        // Not the zeros the matrices start as: every fragment was gathered.
        #expect(output.result.original != Matrix.zeros(rows: workflowParams.numPairs, cols: workflowParams.numLags))
        #expect(output.result.original == serial.original)
        #expect(output.result.surrogates == serial.surrogates)
        #expect(output.result == serial)
    }

    @Test func persistsBothMatricesForALaterRunToOpen() async throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = folder.appendingPathComponent("data")

        let output = try await runWorkflow(workers: 2, dataDirectory: data)
        let (original, surrogates) = try await Shoal.run(try RunOptions(dataDirectory: data.path)) { wf in
            let o = try wf.open(CrossCorrelationWorkflow.originalName, as: Matrix.self)
            let s = try wf.open(CrossCorrelationWorkflow.surrogatesName, as: Tensor3.self)
            return (try await wf.wait(on: o), try await wf.wait(on: s))
        }
        #expect(original == output.result.original)
        #expect(surrogates == output.result.surrogates)
        #expect(CCResult(original: original, surrogates: surrogates)
            == CrossCorrelation.serial(params: workflowParams, trains: output.trains))

        let shard = try LMDBShard(directory: data.path)
        let info = try #require(try PersistentObjects.info(CrossCorrelationWorkflow.originalName, in: shard))
        #expect(info.version == 1)
        #expect(info.writer == "crosscorrelation")
        #expect(try PersistentObjects.info(CrossCorrelationWorkflow.surrogatesName, in: shard)?.version == 1)
        #expect(try shard.count(.values) == 2)
    }
}
