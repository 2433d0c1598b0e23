/// A correlogram cell lying above its surrogate band.
public struct CCPeak: Codable, Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The pair index.
    public var pairIndex: Int
    /// The neurons of the pair.
    public var pair: NeuronPair
    /// The lag in bins (`t_j - t_i`).
    public var lag: Int
    /// The original coincidence count at that lag.
    public var count: Double
    /// The upper bound of the surrogate band at that cell.
    public var upper: Double

    /// `count - upper`, how far the count exceeds the band.
    public var excess: Double { count - upper }

    /// Creates a peak record.
    public init(pairIndex: Int, pair: NeuronPair, lag: Int, count: Double, upper: Double) {
        self.pairIndex = pairIndex
        self.pair = pair
        self.lag = lag
        self.count = count
        self.upper = upper
    }

    /// `"pair (i, j) lag L: count C > band upper U"`.
    public var description: String {
        "pair \(pair) lag \(lag): \(formatted(count)) coincidences, band upper \(formatted(upper)) (+\(formatted(excess)))"
    }
}

/// Headline numbers of a finished analysis, with a readable multi-line ``description``.
///
/// A (pair, lag) cell is *significant* when its original count lies strictly outside the band:
/// `count < lower` or `count > upper`. Under independence roughly a fraction `alpha` of cells (or
/// fewer, since counts are discrete) is expected to be significant by chance.
public struct CCSummary: Codable, Sendable, Equatable, CustomStringConvertible {
    /// The parameters analysed.
    public var params: CCParameters
    /// Total number of spikes over all neurons.
    public var totalSpikes: Int
    /// Mean firing rate over neurons, in Hz.
    public var meanRateHz: Double
    /// Number of pairs.
    public var numPairs: Int
    /// Number of (pair, lag) cells, `numPairs * (2 * maxlag + 1)`.
    public var totalCells: Int
    /// Cells whose count is above the band.
    public var cellsAbove: Int
    /// Cells whose count is below the band.
    public var cellsBelow: Int
    /// Pairs with at least one cell above the band.
    public var pairsWithExcess: Int
    /// The cells above the band with the largest excess, best first (at most 5).
    public var topPeaks: [CCPeak]

    /// Cells outside the band, `cellsAbove + cellsBelow`.
    public var significantCells: Int { cellsAbove + cellsBelow }
    /// `significantCells / totalCells` (0 when there are no cells).
    public var significantFraction: Double { totalCells == 0 ? 0 : Double(significantCells) / Double(totalCells) }
    /// The cell with the largest excess above its band, if any.
    public var strongest: CCPeak? { topPeaks.first }

    /// Summarises `result`, the outputs for `params` computed from `trains`.
    public init(params: CCParameters, trains: SpikeTrains, result: CCResult, topCount: Int = 5) {
        precondition(result.original.rows == params.numPairs && result.original.cols == params.numLags)
        precondition(result.surrogates.shape == [params.numPairs, params.numLags, 2])
        self.params = params
        totalSpikes = trains.totalSpikes
        meanRateHz = trains.meanRateHz(binMs: params.binMs)
        numPairs = params.numPairs
        totalCells = params.numPairs * params.numLags
        var above = 0
        var below = 0
        var pairs = 0
        var best: [CCPeak] = []
        let lags = params.numLags
        let original = result.original.values
        let bands = result.surrogates.values
        for p in 0 ..< params.numPairs {
            var pairHasExcess = false
            for l in 0 ..< lags {
                let cell = p * lags + l
                let count = original[cell]
                let lower = bands[2 * cell]
                let upper = bands[2 * cell + 1]
                if count < lower { below += 1 }
                if count > upper {
                    above += 1
                    pairHasExcess = true
                    if best.count < topCount || count - upper > best[best.count - 1].excess {
                        let peak = CCPeak(
                            pairIndex: p, pair: params.pair(at: p), lag: l - params.maxlag, count: count, upper: upper)
                        let at = best.firstIndex { peak.excess > $0.excess } ?? best.count
                        best.insert(peak, at: at)
                        if best.count > topCount { best.removeLast() }
                    }
                }
            }
            if pairHasExcess { pairs += 1 }
        }
        cellsAbove = above
        cellsBelow = below
        pairsWithExcess = pairs
        topPeaks = best
    }

    /// A readable multi-line report for demos.
    public var description: String {
        var lines: [String] = []
        lines.append("Cross-correlation significance (\(params.neurons) neurons, \(params.bins) bins of \(formatted(params.binMs)) ms, maxlag ±\(params.maxlag), \(params.surrogates) surrogates, dither ±\(params.ditherBins) bins, alpha \(formatted(params.alpha)))")
        lines.append("  spikes: \(totalSpikes) total, mean rate \(formatted(meanRateHz)) Hz")
        lines.append("  pairs: \(numPairs), cells (pair × lag): \(totalCells)")
        lines.append("  outside band: \(significantCells) cells (\(formatted(100 * significantFraction))%): \(cellsAbove) above, \(cellsBelow) below; expected by chance ≲ \(formatted(100 * params.alpha))%")
        lines.append("  pairs with an excess: \(pairsWithExcess)")
        if params.correlatedNeurons > 0 && params.injectedRateHz > 0 {
            lines.append("  injected: neurons 0..<\(params.correlatedNeurons) share a \(formatted(params.injectedRateHz)) Hz driver, lag step \(params.injectedLagBins) bins")
        }
        if topPeaks.isEmpty {
            lines.append("  no cell above its band")
        } else {
            lines.append("  strongest: \(topPeaks[0])")
            for peak in topPeaks.dropFirst() { lines.append("             \(peak)") }
        }
        return lines.joined(separator: "\n")
    }
}

/// A compact decimal rendering (integers without a fraction, else up to 3 decimals).
func formatted(_ x: Double) -> String {
    if x == x.rounded() && abs(x) < 1e15 { return String(Int(x)) }
    let scaled = (x * 1000).rounded() / 1000
    return String(scaled)
}
