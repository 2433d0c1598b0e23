import Shoal

/// The seed's neuroscience workflow on Shoal: the PyCOMPSs program
///
/// ```python
/// for frag in range(num_frags):
///     result = cc_surrogate_range(start_idx, end_idx, seed, ...)
///     gather(result, cc_original, cc_surrs, start_idx, end_idx)
/// cc_original = compss_wait_on(cc_original)
/// ```
///
/// written as a sequential Swift program (`CrossCorrelationWorkflow.program`). Two differences,
/// both on purpose: `gather` declares its matrices `commutative` instead of `INOUT`, so fragments
/// are gathered in the order they finish rather than the order they were submitted (their rows
/// are disjoint, so the result is the same), and every fragment uses the same seed, because each
/// pair's surrogates derive from (seed, pair) — the result does not depend on the fragmentation.
public enum CrossCorrelationWorkflow {
    /// Arguments of `ccSurrogateRange`.
    public struct RangeArgs: Codable, Sendable {
        public var start: Int
        public var end: Int
        public var seed: UInt64
        public var params: CCParameters
        public var trains: DataRef<SpikeTrains>
    }

    /// Arguments of `gather`.
    public struct GatherArgs: Codable, Sendable {
        public var result: DataRef<CCFragment>
        public var ccOriginal: DataRef<Matrix>
        public var ccSurrs: DataRef<Tensor3>
    }

    /// Synthetic spike trains for the parameters (seeded Poisson).
    public static let generateSpikeTrains = TaskDefinition<CCParameters, SpikeTrains>("generateSpikeTrains") { params, _ in
        try SpikeTrains.generate(params)
    }

    /// Correlograms and surrogate significance bands for pairs `start..<end` (`@task(returns=list)`).
    public static let ccSurrogateRangeTask = TaskDefinition<RangeArgs, CCFragment>("ccSurrogateRange") { a, context in
        ccSurrogateRange(start: a.start, end: a.end, seed: a.seed, trains: try context.read(a.trains), params: a.params)
    }

    /// Copies a fragment's rows into the result matrices (`@task(cc_original=INOUT, cc_surrs=INOUT)`).
    public static let gatherTask = TaskDefinition<GatherArgs, Void>("gather") { a, context in
        let fragment = try context.read(a.result)
        try context.update(a.ccOriginal) { $0.replaceRows(fragment.range, with: fragment.original) }
        try context.update(a.ccSurrs) { $0.replaceRows(fragment.range, with: fragment.surrogates) }
    }

    /// The names the results are persisted under.
    public static let originalName = "crosscorrelation/cc_original"
    public static let surrogatesName = "crosscorrelation/cc_surrogates"

    /// What the program returns.
    public struct Output: Sendable {
        public var trains: SpikeTrains
        public var result: CCResult
    }

    /// The data the program's calls leave: the trains and the two gathered matrices.
    public struct Submitted: Sendable {
        public var trains: DataRef<SpikeTrains>
        public var ccOriginal: DataRef<Matrix>
        public var ccSurrs: DataRef<Tensor3>
    }

    /// The program's calls, before it waits: the DAG (`program` runs it, and the scenario shape
    /// `crossCorrelation` records it with `Shoal.record`).
    public static func submitCalls(_ wf: Workflow, params: CCParameters) throws -> Submitted {
        try params.validate()
        let trains = wf.submit(generateSpikeTrains, params)
        let ccOriginal = wf.value(Matrix.zeros(rows: params.numPairs, cols: params.numLags), name: "cc_original")
        let ccSurrs = wf.value(Tensor3.zeros(params.numPairs, params.numLags, 2), name: "cc_surrs")
        for range in fragmentRanges(numPairs: params.numPairs, fragments: params.fragments) {
            let result = wf.ccSurrogateRange(range, seed: params.seed, trains: trains, params: params)
            wf.gather(result, ccOriginal, ccSurrs)
        }
        return Submitted(trains: trains, ccOriginal: ccOriginal, ccSurrs: ccSurrs)
    }

    /// The sequential program. Persists both matrices when the workflow has a store.
    public static func program(_ wf: Workflow, params: CCParameters) async throws -> Output {
        let submitted = try submitCalls(wf, params: params)
        let (trains, ccOriginal, ccSurrs) = (submitted.trains, submitted.ccOriginal, submitted.ccSurrs)
        if wf.store != nil {
            try wf.persist(ccOriginal, as: originalName)
            try wf.persist(ccSurrs, as: surrogatesName)
        }
        let original = try await wf.wait(on: ccOriginal)
        let surrogates = try await wf.wait(on: ccSurrs)
        return Output(trains: try await wf.wait(on: trains), result: CCResult(original: original, surrogates: surrogates))
    }
}

extension Workflow {
    /// `result = cc_surrogate_range(start_idx, end_idx, seed, ...)`
    public func ccSurrogateRange(
        _ range: Range<Int>, seed: UInt64, trains: DataRef<SpikeTrains>, params: CCParameters
    ) -> DataRef<CCFragment> {
        submit(
            CrossCorrelationWorkflow.ccSurrogateRangeTask,
            .init(start: range.lowerBound, end: range.upperBound, seed: seed, params: params, trains: trains),
            .in(trains))
    }

    /// `gather(result, cc_original, cc_surrs, start_idx, end_idx)`
    public func gather(_ result: DataRef<CCFragment>, _ ccOriginal: DataRef<Matrix>, _ ccSurrs: DataRef<Tensor3>) {
        submit(
            CrossCorrelationWorkflow.gatherTask, .init(result: result, ccOriginal: ccOriginal, ccSurrs: ccSurrs),
            .in(result), .commutative(ccOriginal), .commutative(ccSurrs))
    }
}

extension CrossCorrelationWorkflow {
    /// The scenario shape `crossCorrelation: F`: this program's own calls with F fragments,
    /// recorded (`Shoal.record`), with modelled bodies. Generating the trains costs 5 times a
    /// fragment and writes 4 times its bytes; a gather costs a quarter of a fragment and writes
    /// the matrices (4 times a fragment's bytes), as large as their initial values.
    public static let scenarioShape = ProgramShape(name: "crossCorrelation", unit: "fragments", sizes: 1...100_000) {
        fragments in
        // The calls depend only on the fragments: take the fewest neurons with that many pairs,
        // and one lag, so the zero matrices the program defines stay small.
        var neurons = 2
        while neurons * (neurons - 1) / 2 < fragments { neurons += 1 }
        let params = CCParameters(neurons: neurons, bins: 100, maxlag: 0, fragments: fragments)
        return try Shoal.record(
            name: "cross-correlation \(fragments) fragments",
            weights: [
                generateSpikeTrains.name: .init(cost: 5, bytes: 4), ccSurrogateRangeTask.name: .init(cost: 1, bytes: 1),
                gatherTask.name: .init(cost: 0.25, bytes: 4),
            ], initialWeight: 4
        ) { wf in _ = try submitCalls(wf, params: params) }
    }
}
