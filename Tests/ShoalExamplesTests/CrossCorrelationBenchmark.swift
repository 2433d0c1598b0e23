import Foundation
import ShoalExamples
import Testing

/// Timing of the task body on the reference size. Opt-in (set `SHOAL_CC_BENCH=1`), meant for
/// release builds: `SHOAL_CC_BENCH=1 swift test -c release --filter CrossCorrelationBenchmark`.
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["SHOAL_CC_BENCH"] != nil, "set SHOAL_CC_BENCH=1 to run"))
struct CrossCorrelationBenchmark {
    @Test(arguments: [2.0, 5.0, 10.0])
    func referenceSize(rateHz: Double) throws {
        // N = 100 neurons, 10,000 bins of 5 ms, S = 100 surrogates, maxlag 50, dither ±10.
        let params = CCParameters(
            neurons: 100, bins: 10_000, rateHz: rateHz, binMs: 5, maxlag: 50, surrogates: 100, ditherBins: 10,
            fragments: 1)
        let trains = try SpikeTrains.generate(params)
        let clock = ContinuousClock()
        var fragment: CCFragment?
        let elapsed = clock.measure {
            fragment = ccSurrogateRange(
                start: 0, end: params.numPairs, seed: params.seed, trains: trains, params: params)
        }
        #expect(fragment?.original.rows == params.numPairs)
        print(
            "ccSurrogateRange N=100 bins=10000 S=100 maxlag=50 rate=\(rateHz) Hz (\(trains.totalSpikes) spikes):",
            elapsed)
    }
}
