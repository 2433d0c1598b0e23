import Shoal

/// The two output arrays of the workflow (PyCOMPSs `cc_original`, `cc_surrs`).
public struct CCResult: Codable, Sendable, Equatable, Hashable {
    /// `numPairs × (2 * maxlag + 1)` original correlograms, row `p` for pair `p`.
    public var original: Matrix
    /// `numPairs × (2 * maxlag + 1) × 2` significance bands: `[p, lag, 0]` lower, `[p, lag, 1]` upper.
    public var surrogates: Tensor3

    /// Wraps the two arrays.
    public init(original: Matrix, surrogates: Tensor3) {
        self.original = original
        self.surrogates = surrogates
    }

    /// Zero-filled arrays for `params` (PyCOMPSs `zeros((num_ccs, 2*maxlag+1))` and
    /// `zeros((num_ccs, 2*maxlag+1, 2))`).
    public static func zeros(_ params: CCParameters) -> CCResult {
        CCResult(
            original: .zeros(rows: params.numPairs, cols: params.numLags),
            surrogates: .zeros(params.numPairs, params.numLags, 2))
    }

    /// Copies `fragment` into its rows (see ``gather(_:into:_:)``).
    public mutating func gather(_ fragment: CCFragment) {
        ShoalExamples.gather(fragment, into: &original, &surrogates)
    }
}

/// Whole-problem drivers of the cross-correlation example (no workflow engine involved).
public enum CrossCorrelation {
    /// The fast path run locally and sequentially: ``fragmentRanges(numPairs:fragments:)`` with
    /// `params.fragments`, one ``ccSurrogateRange(start:end:seed:trains:params:)`` per range (all
    /// with `params.seed`), each gathered into zero-filled outputs. The engine's workflow computes
    /// the same thing with one task per fragment.
    public static func fragmented(params: CCParameters, trains: SpikeTrains) -> CCResult {
        var result = CCResult.zeros(params)
        for range in fragmentRanges(numPairs: params.numPairs, fragments: params.fragments) {
            result.gather(
                ccSurrogateRange(
                    start: range.lowerBound, end: range.upperBound, seed: params.seed, trains: trains, params: params))
        }
        return result
    }

    /// A deliberately simple reference implementation, written independently of the fast path so
    /// that tests can check it: plain loops over pairs on dense binned arrays.
    ///
    /// For each pair `(i, j)` it builds the dense count vectors, computes the correlogram as
    /// `Σ_t A[t] · B[t + lag]` lag by lag, builds every surrogate as a dense count vector by
    /// dithering the spikes of `B` in time order (the rule of ``Dither``, restated here), sorts
    /// the `S` surrogate counts of each lag and reads the band with ``empiricalQuantile(sorted:_:)``.
    /// It costs `O(pairs · S · (bins + spikes · lags))`; use it only for small problems.
    public static func serial(params: CCParameters, trains: SpikeTrains) -> CCResult {
        let n = params.neurons
        let bins = params.bins
        let maxlag = params.maxlag
        let lags = 2 * maxlag + 1
        let binned = trains.binned()
        var original = Matrix.zeros(rows: params.numPairs, cols: lags)
        var bands = Tensor3.zeros(params.numPairs, lags, 2)

        func dense(_ k: Int) -> [Int] { (0 ..< bins).map { Int(binned[k, $0]) } }

        /// `Σ_t x[t] · y[t + lag]` for every lag in `-maxlag ... maxlag`.
        func correlogram(_ x: [Int], _ y: [Int]) -> [Double] {
            var c = [Double](repeating: 0, count: lags)
            for t in 0 ..< bins where x[t] != 0 {
                for lag in -maxlag ... maxlag where t + lag >= 0 && t + lag < bins {
                    c[lag + maxlag] += Double(x[t] * y[t + lag])
                }
            }
            return c
        }

        var p = 0
        for i in 0 ..< n {
            let x = dense(i)
            for j in (i + 1) ..< n {
                let y = dense(j)
                let cc = correlogram(x, y)
                for l in 0 ..< lags { original[p, l] = cc[l] }

                var generator = SeededGenerator(seed: params.seed).derived(stream: 1 << 63 | 2)
                    .derived(stream: UInt64(p))
                var samples = [[Double]](repeating: [], count: lags)
                for _ in 0 ..< params.surrogates {
                    var surrogate = [Int](repeating: 0, count: bins)
                    for t in 0 ..< bins {
                        for _ in 0 ..< y[t] {
                            // Uniform over the admissible offsets in [-d, d] keeping t inside the recording.
                            let first = max(0, t - params.ditherBins)
                            let last = min(bins - 1, t + params.ditherBins)
                            let choices = UInt64(last - first + 1)
                            let offset = generator.next().multipliedFullWidth(by: choices).high
                            surrogate[first + Int(offset)] += 1
                        }
                    }
                    let sc = correlogram(x, surrogate)
                    for l in 0 ..< lags { samples[l].append(sc[l]) }
                }
                for l in 0 ..< lags {
                    let sorted = samples[l].sorted()
                    bands[p, l, 0] = empiricalQuantile(sorted: sorted, params.alpha / 2)
                    bands[p, l, 1] = empiricalQuantile(sorted: sorted, 1 - params.alpha / 2)
                }
                p += 1
            }
        }
        return CCResult(original: original, surrogates: bands)
    }
}
