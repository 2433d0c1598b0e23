/// Parameters of the cross-correlation significance workflow (the Shoal port of the PyCOMPSs
/// neuroscience example built on Elephant's `cross_correlation_histogram` and spike dithering).
///
/// Units: time is measured in bins of `binMs` milliseconds; `maxlag` and `ditherBins` are in bins;
/// `rateHz` is a firing rate in spikes per second.
///
/// ## Pairs
/// The workflow analyses every unordered pair of distinct neurons. Pairs are numbered
/// `0 ..< numPairs` in row-major order of the strict upper triangle: `(0,1), (0,2), …, (0,N-1),
/// (1,2), …, (N-2,N-1)`. ``pairIndex(_:_:)`` and ``pair(at:)`` convert between the two forms.
///
/// ## Injected correlation (optional)
/// When `correlatedNeurons = k > 0` and `injectedRateHz > 0`, neurons `0 ..< k` additionally copy
/// the spikes of one hidden "driver" Bernoulli train of rate `injectedRateHz`; neuron `g` receives
/// each driver spike at bin `t + g * injectedLagBins` (dropped when outside `[0, bins)`), merged
/// with its own background spikes (a bin holds at most one spike). Pair `(g, h)` of the group
/// therefore has an excess of coincidences at lag `(h - g) * injectedLagBins`, which the
/// significance test should detect whenever that lag is within `maxlag`.
public struct CCParameters: Codable, Sendable, Equatable, Hashable {
    /// Number of neurons `N` (at least 2).
    public var neurons: Int
    /// Number of time bins of every spike train.
    public var bins: Int
    /// Background firing rate of every neuron, in Hz.
    public var rateHz: Double
    /// Bin width in milliseconds.
    public var binMs: Double
    /// Largest lag, in bins; correlograms have `2 * maxlag + 1` entries for lags `-maxlag ... maxlag`.
    public var maxlag: Int
    /// Number of dithered surrogates `S` per pair.
    public var surrogates: Int
    /// Dither half-width in bins: each surrogate spike moves by at most this many bins.
    public var ditherBins: Int
    /// Two-sided significance level; the band spans the `alpha/2` and `1 - alpha/2` quantiles.
    public var alpha: Double
    /// Master seed of all randomness (data generation and surrogates).
    public var seed: UInt64
    /// Number of fragments (tasks) the pairs are split into; results do not depend on it.
    public var fragments: Int
    /// Number of neurons (the first ones) sharing the injected driver spikes; 0 disables injection.
    public var correlatedNeurons: Int
    /// Rate of the injected driver train, in Hz.
    public var injectedRateHz: Double
    /// Lag step, in bins, between consecutive neurons of the correlated group.
    public var injectedLagBins: Int

    /// Creates a parameter set. Call ``validate()`` (or use a throwing consumer) before computing.
    public init(
        neurons: Int = 100,
        bins: Int = 10_000,
        rateHz: Double = 10,
        binMs: Double = 5,
        maxlag: Int = 50,
        surrogates: Int = 100,
        ditherBins: Int = 10,
        alpha: Double = 0.05,
        seed: UInt64 = 42,
        fragments: Int = 10,
        correlatedNeurons: Int = 0,
        injectedRateHz: Double = 0,
        injectedLagBins: Int = 0
    ) {
        self.neurons = neurons
        self.bins = bins
        self.rateHz = rateHz
        self.binMs = binMs
        self.maxlag = maxlag
        self.surrogates = surrogates
        self.ditherBins = ditherBins
        self.alpha = alpha
        self.seed = seed
        self.fragments = fragments
        self.correlatedNeurons = correlatedNeurons
        self.injectedRateHz = injectedRateHz
        self.injectedLagBins = injectedLagBins
    }

    /// Number of unordered neuron pairs, `N * (N - 1) / 2`.
    public var numPairs: Int { neurons * (neurons - 1) / 2 }

    /// Number of lags per correlogram, `2 * maxlag + 1`.
    public var numLags: Int { 2 * maxlag + 1 }

    /// Per-bin spike probability of the background trains, `rateHz * binMs / 1000`.
    public var spikeProbability: Double { rateHz * binMs / 1000 }

    /// Per-bin spike probability of the injected driver train, `injectedRateHz * binMs / 1000`.
    public var injectedProbability: Double { injectedRateHz * binMs / 1000 }

    /// Recording duration in seconds, `bins * binMs / 1000`.
    public var durationSeconds: Double { Double(bins) * binMs / 1000 }

    /// The index of pair `(i, j)`, `0 <= i < j < neurons`, in row-major upper-triangle order:
    /// `i * N - i * (i + 1) / 2 + (j - i - 1)`.
    public func pairIndex(_ i: Int, _ j: Int) -> Int {
        CCParameters.pairIndex(i, j, neurons: neurons)
    }

    /// The pair `(i, j)` with index `p`, the inverse of ``pairIndex(_:_:)``.
    public func pair(at p: Int) -> NeuronPair {
        CCParameters.pair(at: p, neurons: neurons)
    }

    /// The index of pair `(i, j)` among `neurons` neurons (see ``pairIndex(_:_:)``).
    public static func pairIndex(_ i: Int, _ j: Int, neurons n: Int) -> Int {
        precondition(0 <= i && i < j && j < n, "pair (\(i), \(j)) out of range for \(n) neurons")
        return i * n - i * (i + 1) / 2 + (j - i - 1)
    }

    /// The pair with index `p` among `neurons` neurons (see ``pair(at:)``).
    public static func pair(at p: Int, neurons n: Int) -> NeuronPair {
        let total = n * (n - 1) / 2
        precondition(p >= 0 && p < total, "pair index \(p) out of range 0..<\(total)")
        // Row i starts at s(i) = i*n - i*(i+1)/2. Estimate i from the quadratic, then correct for
        // floating-point error.
        let q = Double(total - 1 - p)
        var i = n - 2 - Int(((8 * q + 1).squareRoot() - 1) / 2)
        i = max(0, min(n - 2, i))
        func rowStart(_ r: Int) -> Int { r * n - r * (r + 1) / 2 }
        while i > 0 && rowStart(i) > p { i -= 1 }
        while i < n - 2 && rowStart(i + 1) <= p { i += 1 }
        return NeuronPair(i: i, j: p - rowStart(i) + i + 1)
    }

    /// Checks every parameter and throws the first violation found.
    public func validate() throws(CCParameterError) {
        func fail(_ field: String, _ message: String) -> CCParameterError {
            CCParameterError(field: field, message: message)
        }
        guard neurons >= 2 else { throw fail("neurons", "must be at least 2 (got \(neurons))") }
        guard bins >= 1 else { throw fail("bins", "must be at least 1 (got \(bins))") }
        guard rateHz.isFinite, rateHz >= 0 else {
            throw fail("rateHz", "must be a finite non-negative rate (got \(rateHz))")
        }
        guard binMs.isFinite, binMs > 0 else {
            throw fail("binMs", "must be a finite positive width (got \(binMs))")
        }
        guard spikeProbability <= 1 else {
            throw fail(
                "rateHz",
                "rateHz * binMs / 1000 = \(spikeProbability) exceeds 1 spike per bin; lower the rate or the bin width")
        }
        guard maxlag >= 0, maxlag < bins else {
            throw fail("maxlag", "must be in 0..<bins = 0..<\(bins) (got \(maxlag))")
        }
        guard surrogates >= 1 else { throw fail("surrogates", "must be at least 1 (got \(surrogates))") }
        guard ditherBins >= 1, ditherBins < bins else {
            throw fail("ditherBins", "must be in 1..<bins = 1..<\(bins) (got \(ditherBins))")
        }
        guard alpha.isFinite, alpha > 0, alpha < 1 else {
            throw fail("alpha", "must lie strictly between 0 and 1 (got \(alpha))")
        }
        guard fragments >= 1, fragments <= numPairs else {
            throw fail("fragments", "must be in 1...numPairs = 1...\(numPairs) (got \(fragments))")
        }
        guard correlatedNeurons >= 0, correlatedNeurons <= neurons else {
            throw fail(
                "correlatedNeurons", "must be in 0...neurons = 0...\(neurons) (got \(correlatedNeurons))")
        }
        guard injectedRateHz.isFinite, injectedRateHz >= 0 else {
            throw fail("injectedRateHz", "must be a finite non-negative rate (got \(injectedRateHz))")
        }
        guard injectedProbability <= 1 else {
            throw fail(
                "injectedRateHz",
                "injectedRateHz * binMs / 1000 = \(injectedProbability) exceeds 1 spike per bin")
        }
        let span = injectedLagBins.multipliedReportingOverflow(by: max(correlatedNeurons - 1, 0))
        guard !span.overflow, abs(span.partialValue) < bins || correlatedNeurons <= 1 else {
            throw fail(
                "injectedLagBins",
                "(correlatedNeurons - 1) * injectedLagBins must be shorter than the recording (got \(injectedLagBins))")
        }
    }
}

/// An unordered pair of neurons, `i < j`.
public struct NeuronPair: Codable, Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The lower neuron index (train `a` of the correlogram).
    public var i: Int
    /// The higher neuron index (train `b`, the one dithered by surrogates).
    public var j: Int

    /// Creates the pair `(i, j)`.
    public init(i: Int, j: Int) {
        self.i = i
        self.j = j
    }

    /// `"(i, j)"`.
    public var description: String { "(\(i), \(j))" }
}

/// A violated constraint of ``CCParameters``.
public struct CCParameterError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The offending parameter's name.
    public var field: String
    /// What is wrong with it.
    public var message: String

    /// Creates an error for `field`.
    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }

    /// `"invalid CCParameters.<field>: <message>"`.
    public var description: String { "invalid CCParameters.\(field): \(message)" }
}
