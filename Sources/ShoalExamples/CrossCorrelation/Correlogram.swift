import Shoal

/// The cross-correlogram of two binned spike trains given as sorted bin-index lists.
///
/// Entry `lag + maxlag` (for `lag` in `-maxlag ... maxlag`) counts the spike pairs
/// `(ta ∈ a, tb ∈ b)` with `tb - ta == lag`; equivalently `Σ_t A[t] · B[t + lag]` for the binned
/// count vectors `A`, `B`. This equals Elephant's
/// `cross_correlation_histogram(a, b, window=[-maxlag, maxlag], border_correction=False,
/// binary=False, kernel=None)` on the same binned trains (Elephant's lag is `t_b - t_a` too; a
/// positive lag means `b` fires after `a`).
///
/// Runs in `O(|a| + |b| + coincidences)` with a two-pointer window and a single allocation (the
/// result). Both lists must be sorted non-decreasingly (repeated bins count as multiple spikes).
public func crossCorrelogram(_ a: [Int], _ b: [Int], maxlag: Int) -> [Double] {
    precondition(maxlag >= 0, "maxlag must be non-negative")
    let width = 2 * maxlag + 1
    var counts = [Double](repeating: 0, count: width)
    counts.withUnsafeMutableBufferPointer { out in
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                correlogramCounts(a: a, b: b, maxlag: maxlag, into: out)
            }
        }
    }
    return counts
}

/// Accumulates the correlogram of sorted `a` and `b` into `out` (`2 * maxlag + 1` entries).
@inline(__always)
func correlogramCounts<T: Numeric>(
    a: UnsafeBufferPointer<Int>, b: UnsafeBufferPointer<Int>, maxlag: Int, into out: UnsafeMutableBufferPointer<T>
) {
    var lo = 0
    let na = a.count
    for tb in b {
        // Advance the window start to the first spike of a with ta >= tb - maxlag.
        while lo < na && a[lo] < tb - maxlag { lo += 1 }
        var k = lo
        let base = tb + maxlag
        while k < na && a[k] <= base {
            out[base - a[k]] += 1
            k += 1
        }
    }
}

/// The empirical quantile `q ∈ [0, 1]` of `sorted` (ascending, non-empty), by linear
/// interpolation between order statistics: with `h = (n - 1) · q`, `k = ⌊h⌋`,
/// `Q(q) = x[k] + (h - k) · (x[k+1] - x[k])` (and `x[n-1]` when `k = n - 1`).
///
/// This is NumPy's default (`numpy.quantile(x, q)`, method `"linear"`; Hyndman & Fan type 7).
/// The significance band of a (pair, lag) cell is `[Q(alpha/2), Q(1 - alpha/2)]` over its `S`
/// surrogate counts.
public func empiricalQuantile(sorted: [Double], _ q: Double) -> Double {
    precondition(!sorted.isEmpty, "quantile of an empty list")
    precondition(q >= 0 && q <= 1, "quantile level \(q) outside [0, 1]")
    let (k, frac) = quantilePosition(count: sorted.count, q)
    let lower = sorted[k]
    let upper = k + 1 < sorted.count ? sorted[k + 1] : lower
    return interpolate(lower, upper, frac)
}

/// The order-statistic index `k` and fraction `h - k` of quantile `q` among `count` values.
@inline(__always)
func quantilePosition(count n: Int, _ q: Double) -> (Int, Double) {
    let h = Double(n - 1) * q
    let k = min(Int(h.rounded(.down)), n - 1)
    return (k, h - Double(k))
}

/// `lower + frac · (upper - lower)`, the one interpolation formula both code paths share.
@inline(__always)
func interpolate(_ lower: Double, _ upper: Double, _ frac: Double) -> Double {
    frac == 0 ? lower : lower + frac * (upper - lower)
}

/// Spike dithering, the surrogate rule of this example.
///
/// A spike at bin `t` moves to `t + δ`, with `δ` uniform over the integers of
/// `[-d, d] ∩ [-t, bins - 1 - t]`: the dither window is clipped to the recording, which is the
/// same distribution as redrawing `δ ∈ [-d, d]` until `t + δ ∈ [0, bins)` (spikes are neither
/// lost nor piled up on the borders; the spike count is preserved). Several dithered spikes may
/// land in the same bin; correlograms then count them with multiplicity.
///
/// Exactly one `next()` is consumed per spike, in spike order: with `w` the clipped window
/// width, the offset into the window is the high 64 bits of `next() × w` (bias below `w / 2^64`).
public enum Dither {
    /// The dithered position of a spike at bin `t` (one draw from `generator`).
    @inline(__always)
    public static func dither(_ t: Int, by d: Int, bins: Int, generator: inout SeededGenerator) -> Int {
        let lo = max(t - d, 0)
        let hi = min(t + d, bins - 1)
        let width = UInt64(hi - lo + 1)
        return lo + Int(truncatingIfNeeded: generator.next().multipliedFullWidth(by: width).high)
    }

    /// Stream of the surrogate root under `SeededGenerator(seed:)`.
    static let surrogateStream: UInt64 = 1 << 63 | 2

    /// The generator of pair `p`'s surrogates: `SeededGenerator(seed: seed)
    /// .derived(stream: 1 << 63 | 2).derived(stream: p)`. It depends only on `(seed, p)`, never on
    /// the fragment holding `p`.
    public static func generator(seed: UInt64, pair p: Int) -> SeededGenerator {
        SeededGenerator(seed: seed).derived(stream: surrogateStream).derived(stream: UInt64(p))
    }
}
