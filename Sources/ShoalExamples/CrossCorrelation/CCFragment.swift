import Shoal

/// The result of one `cc_surrogate_range` task: rows `range` of the two output arrays.
public struct CCFragment: Codable, Sendable, Equatable, Hashable {
    /// The pair indices covered, `start ..< end`.
    public var range: Range<Int>
    /// `(end - start) × (2 * maxlag + 1)`: the original correlogram of each pair.
    public var original: Matrix
    /// `(end - start) × (2 * maxlag + 1) × 2`: the lower (`[..., 0]`) and upper (`[..., 1]`) bounds
    /// of the surrogate significance band of each pair and lag.
    public var surrogates: Tensor3

    /// A fragment; the shapes must agree with `range`.
    public init(range: Range<Int>, original: Matrix, surrogates: Tensor3) {
        precondition(original.rows == range.count && surrogates.d0 == range.count, "fragment shapes do not match \(range)")
        precondition(surrogates.d1 == original.cols && surrogates.d2 == 2, "fragment band shape mismatch")
        self.range = range
        self.original = original
        self.surrogates = surrogates
    }
}

/// Splits `0 ..< numPairs` into `fragments` contiguous ranges whose sizes differ by at most one
/// (the first `numPairs % fragments` ranges get the extra pair). Always returns exactly
/// `fragments` ranges, in order, covering every pair once; if `fragments > numPairs` the trailing
/// ranges are empty (``CCParameters/validate()`` rejects that case).
public func fragmentRanges(numPairs: Int, fragments: Int) -> [Range<Int>] {
    precondition(numPairs >= 0 && fragments >= 1, "need numPairs >= 0 and fragments >= 1")
    let base = numPairs / fragments
    let extra = numPairs % fragments
    var ranges: [Range<Int>] = []
    ranges.reserveCapacity(fragments)
    var start = 0
    for f in 0 ..< fragments {
        let end = start + base + (f < extra ? 1 : 0)
        ranges.append(start ..< end)
        start = end
    }
    return ranges
}

/// The task body (PyCOMPSs `cc_surrogate_range`): original correlograms and surrogate
/// significance bands of pairs `start ..< end`.
///
/// For pair `p = (i, j)` (see ``CCParameters/pair(at:)``), with `a` the spikes of neuron `i` and
/// `b` those of neuron `j`:
/// - `original` row = ``crossCorrelogram(_:_:maxlag:)`` of `(a, b)`;
/// - `params.surrogates` surrogates dither every spike of `b` (``Dither``) with the generator
///   ``Dither/generator(seed:pair:)`` of `(seed, p)`, surrogate after surrogate, and recompute the
///   correlogram against the unchanged `a`;
/// - the band of each lag is `[Q(alpha/2), Q(1 - alpha/2)]` of its `S` surrogate counts
///   (``empiricalQuantile(sorted:_:)``).
///
/// **Fragmentation independence.** Because each pair's generator depends only on `seed` and the
/// pair index, pass the same `seed` (normally `params.seed`) to every fragment: the assembled
/// result is then bit-identical for any split into fragments and any execution order. This
/// improves on the PyCOMPSs program, which advances `seed` by `delta` per fragment so that its
/// results change when `num_frags` changes.
///
/// Performance: allocation-free inner loops. A prefix-count table of `a` (rebuilt only when `i`
/// changes) locates the spikes of `a` within `maxlag` of each dithered spike in O(1), so dithered
/// trains are never materialised or sorted; quantiles use a counting selection over the small
/// integer counts.
public func ccSurrogateRange(start: Int, end: Int, seed: UInt64, trains: SpikeTrains, params: CCParameters)
    -> CCFragment
{
    precondition(0 <= start && start <= end && end <= params.numPairs, "pair range \(start)..<\(end) invalid")
    precondition(
        trains.neurons == params.neurons && trains.bins == params.bins, "spike trains do not match parameters")
    precondition(params.maxlag >= 0 && params.maxlag < params.bins && params.surrogates >= 1 && params.ditherBins >= 0)
    let count = end - start
    let maxlag = params.maxlag
    let lags = params.numLags
    let nsurr = params.surrogates
    let bins = params.bins
    let dither = params.ditherBins
    let n = params.neurons
    let (kLow, fracLow) = quantilePosition(count: nsurr, params.alpha / 2)
    let (kHigh, fracHigh) = quantilePosition(count: nsurr, 1 - params.alpha / 2)

    var original = [Double](repeating: 0, count: count * lags)
    var bands = [Double](repeating: 0, count: count * lags * 2)
    var padded = [Int32](repeating: 0, count: bins + 2 * maxlag + 2)
    let longest = trains.spikes.reduce(0) { max($0, $1.count) }
    var windowLow = [Int](repeating: 0, count: longest)
    var windowWidth = [UInt64](repeating: 0, count: longest)
    var hist = [Int32](repeating: 0, count: nsurr * lags)  // hist[s * lags + lagIndex]
    var column = [Int32](repeating: 0, count: nsurr)
    var tally = [Int32](repeating: 0, count: 2 * nsurr + 64)

    if count > 0 {
        var pair = params.pair(at: start)
        var currentI = -1
        for row in 0 ..< count {
            let p = start + row
            let a = trains.spikes[pair.i]
            let b = trains.spikes[pair.j]
            if pair.i != currentI {
                // padded[x] = #spikes of a before bin clamp(x - maxlag, 0, bins), for
                // x in 0 ... bins + 2 * maxlag + 1: the spikes of a in [td - maxlag, td + maxlag]
                // are a[padded[td] ..< padded[td + 2 * maxlag + 1]], with no clamping needed.
                currentI = pair.i
                var k: Int32 = 0
                var next = 0
                for x in 0 ..< padded.count {
                    let t = min(max(x - maxlag, 0), bins)
                    while next < a.count && a[next] < t {
                        k += 1
                        next += 1
                    }
                    padded[x] = k
                }
            }
            original.withUnsafeMutableBufferPointer { out in
                a.withUnsafeBufferPointer { a in
                    b.withUnsafeBufferPointer { b in
                        correlogramCounts(
                            a: a, b: b, maxlag: maxlag,
                            into: UnsafeMutableBufferPointer(rebasing: out[row * lags ..< (row + 1) * lags]))
                    }
                }
            }

            // The clipped dither window of each spike of b is the same for every surrogate.
            for (idx, t) in b.enumerated() {
                let lo = max(t - dither, 0)
                windowLow[idx] = lo
                windowWidth[idx] = UInt64(min(t + dither, bins - 1) - lo + 1)
            }
            var generator = Dither.generator(seed: seed, pair: p)
            hist.withUnsafeMutableBufferPointer { h in
                h.update(repeating: 0)
                padded.withUnsafeBufferPointer { padded in
                    a.withUnsafeBufferPointer { a in
                        windowLow.withUnsafeBufferPointer { windowLow in
                            windowWidth.withUnsafeBufferPointer { windowWidth in
                                let hp = h.baseAddress!
                                let nb = b.count
                                let upperOffset = 2 &* maxlag &+ 1
                                for s in 0 ..< nsurr {
                                    let hs = hp + s &* lags
                                    for idx in 0 ..< nb {
                                        // Dither.dither, with the window precomputed.
                                        let offset = generator.next().multipliedFullWidth(by: windowWidth[idx]).high
                                        let td = windowLow[idx] &+ Int(truncatingIfNeeded: offset)
                                        var k = Int(padded[td])
                                        let kEnd = Int(padded[td &+ upperOffset])
                                        let base = td &+ maxlag
                                        while k < kEnd {
                                            hs[base &- a[k]] &+= 1
                                            k &+= 1
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }

            for lag in 0 ..< lags {
                var maxValue: Int32 = 0
                for s in 0 ..< nsurr {
                    let v = hist[s * lags + lag]
                    column[s] = v
                    if v > maxValue { maxValue = v }
                }
                let (l0, l1, h0, h1) = orderStatistics(
                    &column, maxValue: maxValue, ranks: (kLow, kHigh), tally: &tally)
                let out = (row * lags + lag) * 2
                bands[out] = interpolate(l0, l1, fracLow)
                bands[out + 1] = interpolate(h0, h1, fracHigh)
            }

            pair.j += 1
            if pair.j == n {
                pair.i += 1
                pair.j = pair.i + 1
            }
        }
    }
    return CCFragment(
        range: start ..< end,
        original: Matrix(rows: count, cols: lags, values: original),
        surrogates: Tensor3(count, lags, 2, values: bands))
}

/// The order statistics `x[r0], x[r0+1], x[r1], x[r1+1]` (0-based ranks, clamped to the last) of
/// non-negative `values`, by counting when the values are small, else by sorting.
@inline(__always)
func orderStatistics(
    _ values: inout [Int32], maxValue: Int32, ranks: (Int, Int), tally: inout [Int32]
) -> (Double, Double, Double, Double) {
    let n = values.count
    let wanted = SIMD4<Int>(ranks.0, min(ranks.0 + 1, n - 1), ranks.1, min(ranks.1 + 1, n - 1))
    var found = SIMD4<Double>()
    if Int(maxValue) < tally.count {
        let m = Int(maxValue)
        tally.withUnsafeMutableBufferPointer { t in
            for v in 0 ... m { t[v] = 0 }
            for v in values { t[Int(v)] += 1 }
            // Walk the cumulative counts once, resolving the (non-decreasing) wanted ranks.
            var w = 0
            var seen = 0
            var v = 0
            while w < 4 {
                seen += Int(t[v])
                while w < 4 && wanted[w] < seen {
                    found[w] = Double(v)
                    w += 1
                }
                v += 1
            }
        }
    } else {
        values.sort()
        for w in 0 ..< 4 { found[w] = Double(values[wanted[w]]) }
    }
    return (found[0], found[1], found[2], found[3])
}

/// The gather task (PyCOMPSs `gather`): copies fragment `f` into rows `f.range` of the full
/// outputs, `ccOriginal[start:end, :] = f.original` and `ccSurrs[start:end, :, :] = f.surrogates`.
public func gather(_ f: CCFragment, into ccOriginal: inout Matrix, _ ccSurrs: inout Tensor3) {
    ccOriginal.replaceRows(f.range, with: f.original)
    ccSurrs.replaceRows(f.range, with: f.surrogates)
}
