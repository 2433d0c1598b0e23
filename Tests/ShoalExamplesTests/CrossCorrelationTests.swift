import Foundation
import ShoalCore
import ShoalExamples
import Testing

/// Small parameters whose serial reference runs quickly in debug builds.
private func smallParams(fragments: Int = 1, seed: UInt64 = 7) -> CCParameters {
    CCParameters(
        neurons: 12, bins: 2_000, rateHz: 20, binMs: 5, maxlag: 10, surrogates: 50, ditherBins: 5,
        seed: seed, fragments: fragments, correlatedNeurons: 3, injectedRateHz: 4, injectedLagBins: 2)
}

/// Brute-force correlogram by a double loop over spike pairs.
private func bruteCorrelogram(_ a: [Int], _ b: [Int], maxlag: Int) -> [Double] {
    var c = [Double](repeating: 0, count: 2 * maxlag + 1)
    for ta in a {
        for tb in b where abs(tb - ta) <= maxlag { c[tb - ta + maxlag] += 1 }
    }
    return c
}

@Suite struct CorrelogramTests {
    @Test func handCheckedTinyTrains() {
        // Pairs (ta, tb) and lags tb - ta: (1,2) +1, (1,4) +3, (1,7) +6 (outside), (4,2) -2,
        // (4,4) 0, (4,7) +3.
        let cc = crossCorrelogram([1, 4], [2, 4, 7], maxlag: 3)
        #expect(cc == [0, 1, 0, 1, 1, 0, 2])
        // Swapping the trains mirrors the lags.
        #expect(crossCorrelogram([2, 4, 7], [1, 4], maxlag: 3) == [2, 0, 1, 1, 0, 1, 0])
        #expect(crossCorrelogram([5], [5], maxlag: 0) == [1])
        #expect(crossCorrelogram([], [1, 2], maxlag: 2) == [0, 0, 0, 0, 0])
    }

    @Test func matchesBruteForceOnRandomTrains() {
        var g = SeededGenerator(seed: 99)
        for round in 0 ..< 20 {
            let bins = 300
            let a = (0 ..< bins).filter { _ in g.nextUnitDouble() < 0.2 }
            let b = (0 ..< bins).filter { _ in g.nextUnitDouble() < 0.3 }
            let maxlag = round % 7
            #expect(crossCorrelogram(a, b, maxlag: maxlag) == bruteCorrelogram(a, b, maxlag: maxlag))
        }
    }

    @Test func quantileDefinitionIsNumpyLinear() {
        let x: [Double] = (1 ... 10).map(Double.init)
        #expect(empiricalQuantile(sorted: x, 0) == 1)
        #expect(empiricalQuantile(sorted: x, 1) == 10)
        #expect(empiricalQuantile(sorted: x, 0.5) == 5.5)
        // h = 9 * 0.025 = 0.225 -> 1 + 0.225 * (2 - 1)
        #expect(abs(empiricalQuantile(sorted: x, 0.025) - 1.225) < 1e-12)
        // h = 9 * 0.975 = 8.775 -> 9 + 0.775 * (10 - 9)
        #expect(abs(empiricalQuantile(sorted: x, 0.975) - 9.775) < 1e-12)
        // h = 3 * 0.9 = 2.7 -> 3 + 0.7 * (8 - 3)
        #expect(abs(empiricalQuantile(sorted: [3, 3, 3, 8], 0.9) - 6.5) < 1e-12)
        #expect(empiricalQuantile(sorted: [4], 0.3) == 4)
    }

    @Test func ditherStaysInsideAndCoversWindow() {
        var g = SeededGenerator(seed: 5)
        var seenEdge = Set<Int>()
        var seenMiddle = Set<Int>()
        for _ in 0 ..< 2_000 {
            let e = Dither.dither(1, by: 3, bins: 100, generator: &g)
            #expect(e >= 0 && e <= 4)
            seenEdge.insert(e)
            let m = Dither.dither(50, by: 3, bins: 100, generator: &g)
            #expect(m >= 47 && m <= 53)
            seenMiddle.insert(m)
        }
        #expect(seenEdge == Set(0 ... 4))
        #expect(seenMiddle == Set(47 ... 53))
    }
}

@Suite struct ParameterTests {
    @Test func pairIndexRoundTrips() {
        for n in [2, 3, 4, 7, 12, 100, 1_001] {
            let params = CCParameters(neurons: n)
            #expect(params.numPairs == n * (n - 1) / 2)
            var p = 0
            for i in 0 ..< n {
                for j in (i + 1) ..< n {
                    if n <= 100 || p % 997 == 0 {
                        #expect(params.pairIndex(i, j) == p)
                        #expect(params.pair(at: p) == NeuronPair(i: i, j: j))
                    }
                    p += 1
                }
            }
        }
    }

    @Test func validationNamesTheField() {
        #expect(throws: Never.self) { try CCParameters().validate() }
        func field(_ p: CCParameters) -> String? {
            do { try p.validate() } catch { return error.field }
            return nil
        }
        #expect(field(CCParameters(neurons: 1)) == "neurons")
        #expect(field(CCParameters(rateHz: 300, binMs: 5)) == "rateHz")
        #expect(field(CCParameters(bins: 40, maxlag: 40)) == "maxlag")
        #expect(field(CCParameters(ditherBins: 0)) == "ditherBins")
        #expect(field(CCParameters(alpha: 1)) == "alpha")
        #expect(field(CCParameters(neurons: 4, fragments: 7)) == "fragments")
        #expect(field(CCParameters(surrogates: 0)) == "surrogates")
        #expect(field(CCParameters(neurons: 4, fragments: 2, correlatedNeurons: 5)) == "correlatedNeurons")
        let message = CCParameterError(field: "neurons", message: "must be at least 2 (got 1)").description
        #expect(message == "invalid CCParameters.neurons: must be at least 2 (got 1)")
    }

    @Test func fragmentRangesAreNearEqualAndCover() {
        for (pairs, frags) in [(66, 1), (66, 3), (66, 7), (10, 10), (5, 8), (4_950, 16)] {
            let ranges = fragmentRanges(numPairs: pairs, fragments: frags)
            #expect(ranges.count == frags)
            #expect(ranges.first?.lowerBound == 0 && ranges.last?.upperBound == pairs)
            for (r, s) in zip(ranges, ranges.dropFirst()) { #expect(r.upperBound == s.lowerBound) }
            let sizes = ranges.map(\.count)
            #expect(sizes.max()! - sizes.min()! <= 1)
        }
    }
}

@Suite struct SpikeTrainTests {
    @Test func generationIsDeterministicPerSeed() throws {
        let p = smallParams()
        let a = try SpikeTrains.generate(p)
        let b = try SpikeTrains.generate(p)
        #expect(a == b)
        var other = p
        other.seed = 8
        #expect(try SpikeTrains.generate(other) != a)
        // Neuron k does not depend on how many neurons there are (outside the injected group).
        var more = p
        more.neurons = 20
        let c = try SpikeTrains.generate(more)
        #expect(Array(c.spikes.prefix(12)) == a.spikes)
        for train in a.spikes {
            #expect(zip(train, train.dropFirst()).allSatisfy { $0 < $1 })
            #expect(train.allSatisfy { $0 >= 0 && $0 < p.bins })
        }
    }

    @Test func rateIsNearTheRequestedRate() throws {
        let p = CCParameters(neurons: 50, bins: 20_000, rateHz: 10, binMs: 5)
        let trains = try SpikeTrains.generate(p)
        // Expected 1,000 spikes per neuron, 50,000 in total (sd ≈ 218).
        #expect(abs(trains.meanRateHz(binMs: p.binMs) - 10) < 0.3)
        let binned = trains.binned()
        #expect(binned.counts.reduce(0) { $0 + Int($1) } == trains.totalSpikes)
        #expect(binned[3, trains.spikes[3][0]] == 1)
    }

    @Test func explicitTrainsAreValidated() {
        #expect(throws: SpikeTrainError.self) { try SpikeTrains(bins: 10, spikes: [[1, 1]]) }
        #expect(throws: SpikeTrainError.self) { try SpikeTrains(bins: 10, spikes: [[3, 10]]) }
        #expect(throws: SpikeTrainError.self) { try SpikeTrains(bins: 10, spikes: [[-1]]) }
        #expect(throws: Never.self) { try SpikeTrains(bins: 10, spikes: [[0, 9], []]) }
    }
}

@Suite struct FragmentTests {
    @Test(arguments: [1, 3, 7])
    func fragmentsAssembleToTheSerialResult(fragments: Int) throws {
        let params = smallParams(fragments: fragments)
        let trains = try SpikeTrains.generate(params)
        let serial = CrossCorrelation.serial(params: params, trains: trains)
        var original = Matrix.zeros(rows: params.numPairs, cols: params.numLags)
        var surrs = Tensor3.zeros(params.numPairs, params.numLags, 2)
        // Gather in reverse order: the result must not depend on completion order either.
        for range in fragmentRanges(numPairs: params.numPairs, fragments: fragments).reversed() {
            let f = ccSurrogateRange(
                start: range.lowerBound, end: range.upperBound, seed: params.seed, trains: trains, params: params)
            #expect(f.range == range)
            #expect(f.original.rows == range.count && f.original.cols == 21)
            #expect(f.surrogates.shape == [range.count, 21, 2])
            gather(f, into: &original, &surrs)
        }
        #expect(original == serial.original)
        #expect(surrs == serial.surrogates)
        #expect(CrossCorrelation.fragmented(params: params, trains: trains) == serial)
        // Bands are ordered and non-trivial.
        for cell in 0 ..< params.numPairs * params.numLags {
            #expect(surrs.values[2 * cell] <= surrs.values[2 * cell + 1])
        }
        #expect(surrs.values.contains { $0 > 0 })
    }

    @Test func denseTrainsUseTheSortingFallbackAndStillMatch() throws {
        // p = 0.9 gives counts far above the counting-selection table.
        let params = CCParameters(
            neurons: 3, bins: 600, rateHz: 180, binMs: 5, maxlag: 4, surrogates: 30, ditherBins: 3, fragments: 2)
        let trains = try SpikeTrains.generate(params)
        let serial = CrossCorrelation.serial(params: params, trains: trains)
        #expect(serial.original.values.max()! > 200)
        #expect(CrossCorrelation.fragmented(params: params, trains: trains) == serial)
    }

    @Test func differentSeedsGiveDifferentBands() throws {
        let params = smallParams()
        let trains = try SpikeTrains.generate(params)
        let a = ccSurrogateRange(start: 0, end: 5, seed: 1, trains: trains, params: params)
        let b = ccSurrogateRange(start: 0, end: 5, seed: 2, trains: trains, params: params)
        #expect(a.original == b.original)
        #expect(a.surrogates != b.surrogates)
        let empty = ccSurrogateRange(start: 4, end: 4, seed: 1, trains: trains, params: params)
        #expect(empty.original.rows == 0 && empty.surrogates.d0 == 0)
    }

    @Test func injectedCorrelationIsDetected() throws {
        let params = CCParameters(
            neurons: 10, bins: 20_000, rateHz: 10, binMs: 5, maxlag: 10, surrogates: 100, ditherBins: 10,
            seed: 2024, fragments: 4, correlatedNeurons: 3, injectedRateHz: 5, injectedLagBins: 2)
        let trains = try SpikeTrains.generate(params)
        let result = CrossCorrelation.fragmented(params: params, trains: trains)
        func isAbove(_ i: Int, _ j: Int, lag: Int) -> Bool {
            let p = params.pairIndex(i, j)
            return result.original[p, lag + params.maxlag] > result.surrogates[p, lag + params.maxlag, 1]
        }
        #expect(isAbove(0, 1, lag: 2))
        #expect(isAbove(1, 2, lag: 2))
        #expect(isAbove(0, 2, lag: 4))
        let summary = CCSummary(params: params, trains: trains, result: result)
        let strongest = try #require(summary.strongest)
        #expect(strongest.pair.j < 3)
        #expect(strongest.lag == 2 * (strongest.pair.j - strongest.pair.i))
        #expect(summary.topPeaks.prefix(3).allSatisfy { $0.pair.j < 3 })
        // Away from the injected group, only chance exceedances remain.
        #expect(summary.significantFraction < 0.15)
        #expect(summary.totalCells == 45 * 21)
        #expect(summary.description.contains("strongest: pair"))
        print(summary)
    }
}

@Suite struct CodingTests {
    @Test func valueTypesRoundTripThroughJSON() throws {
        let params = smallParams(fragments: 2)
        let trains = try SpikeTrains.generate(params)
        let fragment = ccSurrogateRange(start: 3, end: 9, seed: params.seed, trains: trains, params: params)
        let encoder = JSONEncoder()
        let decoder = JSONDecoder()
        #expect(try decoder.decode(CCFragment.self, from: encoder.encode(fragment)) == fragment)
        #expect(try decoder.decode(SpikeTrains.self, from: encoder.encode(trains)) == trains)
        #expect(try decoder.decode(CCParameters.self, from: encoder.encode(params)) == params)
        let binned = trains.binned()
        #expect(try decoder.decode(BinnedSpikeMatrix.self, from: encoder.encode(binned)) == binned)
        let m = Matrix(rows: 2, cols: 3, values: [1, -2.5, .pi, 0, 1e300, -0.0])
        let json = try encoder.encode(m)
        #expect(try decoder.decode(Matrix.self, from: json) == m)
        // Compact: the doubles travel as one base64 string, not a JSON array of numbers.
        let object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        #expect(object["data"] is String)
        let bad = #"{"rows": 2, "cols": 2, "data": "AAAA"}"#
        #expect(throws: DecodingError.self) { try decoder.decode(Matrix.self, from: Data(bad.utf8)) }
    }

    @Test func matrixAndTensorRowReplacement() {
        var m = Matrix.zeros(rows: 4, cols: 2)
        m.replaceRows(1 ..< 3, with: Matrix(rows: 2, cols: 2, values: [1, 2, 3, 4]))
        #expect(m.values == [0, 0, 1, 2, 3, 4, 0, 0])
        #expect(m[2, 1] == 4)
        var t = Tensor3.zeros(3, 2, 2)
        t.replaceRows(2 ..< 3, with: Tensor3(1, 2, 2, values: [5, 6, 7, 8]))
        #expect(t[2, 1, 0] == 7)
        #expect(t.values.prefix(8).allSatisfy { $0 == 0 })
        t[0, 0, 1] = 9
        #expect(t.values[1] == 9)
    }
}

@Suite(.serialized) struct NpyTests {
    /// Writes cc_original.npy, cc_surrs.npy, binned.npy (from a small fragmented run) and ints.npy
    /// into `dir`; returns what was written.
    private func writeFixture(in dir: URL, ints: [Int32]) throws -> (CCParameters, CCResult, BinnedSpikeMatrix) {
        let params = smallParams(fragments: 3)
        let trains = try SpikeTrains.generate(params)
        let result = CrossCorrelation.fragmented(params: params, trains: trains)
        let binned = trains.binned()
        try NpyWriter.write(result.original, to: dir.appendingPathComponent("cc_original.npy"))
        try NpyWriter.write(result.surrogates, to: dir.appendingPathComponent("cc_surrs.npy"))
        try NpyWriter.write(binned, to: dir.appendingPathComponent("binned.npy"))
        try NpyWriter.encode(int32s: ints, shape: [ints.count]).write(to: dir.appendingPathComponent("ints.npy"))
        return (params, result, binned)
    }

    private func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("shoal-npy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test func headerLayout() throws {
        let data = try NpyWriter.encode(doubles: [1, 2, 3], shape: [3])
        let bytes = [UInt8](data)
        #expect(Array(bytes[0 ..< 8]) == [0x93] + Array("NUMPY".utf8) + [1, 0])
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        #expect((10 + headerLength) % 64 == 0)
        let header = String(decoding: bytes[10 ..< 10 + headerLength], as: UTF8.self)
        #expect(header.hasPrefix("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }"))
        #expect(header.hasSuffix(" \n"))
        #expect(bytes.count == 10 + headerLength + 24)
        let h2 = try NpyWriter.header(shape: [4, 5, 2], dtype: .int32)
        #expect(String(decoding: h2.dropFirst(10), as: UTF8.self).contains("'shape': (4, 5, 2)"))
        #expect(h2.count % 64 == 0)
        #expect(throws: NpyError.self) { try NpyWriter.encode(doubles: [1, 2], shape: [3]) }
    }

    @Test func filesRoundTripThroughTheReader() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ints: [Int32] = [-3, 0, 7, Int32.max]
        let (params, result, binned) = try writeFixture(in: dir, ints: ints)

        let o = try NpyReader.read(contentsOf: dir.appendingPathComponent("cc_original.npy"))
        #expect(o.shape == [params.numPairs, params.numLags] && !o.fortranOrder)
        #expect(try o.doubles() == result.original.values)
        let s = try NpyReader.read(contentsOf: dir.appendingPathComponent("cc_surrs.npy"))
        #expect(s.shape == result.surrogates.shape)
        #expect(try s.doubles() == result.surrogates.values)
        let b = try NpyReader.read(contentsOf: dir.appendingPathComponent("binned.npy"))
        #expect(b.descr == "|u1" && b.shape == [params.neurons, params.bins])
        #expect(try b.uint8s() == binned.counts)
        let i = try NpyReader.read(contentsOf: dir.appendingPathComponent("ints.npy"))
        #expect(try i.int32s() == ints)
        #expect(throws: NpyError.self) { try i.doubles() }
    }

    @Test(.enabled(if: numpyAvailable(), "python3 with numpy is not available"))
    func numpyLoadsTheFiles() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (params, result, binned) = try writeFixture(in: dir, ints: [1, -2, 3])
        let script = """
            import sys, numpy as np
            d = sys.argv[1]
            for name in ["cc_original", "cc_surrs", "binned", "ints"]:
                a = np.load(d + "/" + name + ".npy")
                w = np.arange(a.size, dtype=np.float64).reshape(a.shape) % 7 + 1
                print(name, a.dtype.str, ",".join(map(str, a.shape)), repr(float((a.astype(np.float64) * w).sum())))
            """
        let output = try runPython(script, arguments: [dir.path])
        var lines: [String: [String]] = [:]
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: " ").map(String.init)
            lines[parts[0]] = Array(parts.dropFirst())
        }
        func weighted(_ values: [Double]) -> Double {
            values.enumerated().reduce(0) { $0 + $1.element * Double($1.offset % 7 + 1) }
        }
        func check(_ name: String, _ dtype: String, _ shape: [Int], _ values: [Double]) {
            guard let fields = lines[name], fields.count == 3 else {
                Issue.record("numpy printed no line for \(name): \(output)")
                return
            }
            #expect(fields[0] == dtype)
            #expect(fields[1] == shape.map(String.init).joined(separator: ","))
            let sum = Double(fields[2]) ?? .nan
            #expect(abs(sum - weighted(values)) <= 1e-9 * max(1, abs(sum)), "\(name) checksum")
        }
        check("cc_original", "<f8", [params.numPairs, params.numLags], result.original.values)
        check("cc_surrs", "<f8", result.surrogates.shape, result.surrogates.values)
        check("binned", "|u1", [params.neurons, params.bins], binned.counts.map(Double.init))
        check("ints", "<i4", [3], [1, -2, 3])
    }

    @Test(.enabled(if: numpyAvailable(), "python3 with numpy is not available"))
    func quantileAgreesWithNumpy() throws {
        var g = SeededGenerator(seed: 3)
        let values = (0 ..< 57).map { _ in Double(g.next() % 40) }.sorted()
        let levels = [0.0, 0.025, 0.05, 0.3, 0.5, 0.975, 1.0]
        let script = """
            import sys, numpy as np
            x = np.array([float(v) for v in sys.argv[1].split(",")])
            for q in sys.argv[2].split(","):
                print(repr(float(np.quantile(x, float(q)))))
            """
        let output = try runPython(
            script,
            arguments: [values.map { String($0) }.joined(separator: ","), levels.map { String($0) }.joined(separator: ",")])
        let numpy = output.split(separator: "\n").compactMap { Double($0) }
        #expect(numpy.count == levels.count)
        for (q, expected) in zip(levels, numpy) {
            #expect(abs(empiricalQuantile(sorted: values, q) - expected) < 1e-9, "q = \(q)")
        }
    }
}

/// Whether `python3 -c 'import numpy'` succeeds.
private func numpyAvailable() -> Bool {
    (try? runPython("import numpy", arguments: [])) != nil
}

private struct PythonFailed: Error { var status: Int32; var stderr: String }

/// Runs `python3 -c script arguments…` and returns its standard output.
private func runPython(_ script: String, arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", script] + arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw PythonFailed(status: process.terminationStatus, stderr: String(decoding: errData, as: UTF8.self))
    }
    return String(decoding: data, as: UTF8.self)
}
