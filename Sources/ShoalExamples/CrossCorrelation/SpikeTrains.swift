import Foundation
import Shoal

/// Binned binary spike trains of `N` neurons over `bins` time bins, stored sparsely: for every
/// neuron, the strictly increasing list of bin indices holding a spike (a bin holds at most one
/// spike, as in Elephant's binary `BinnedSpikeTrain`).
///
/// `Codable` form: `{"bins": B, "counts": [n0, n1, …], "data": <Data>}` where `data` is the
/// concatenation of all spike indices as little-endian `Int32`.
public struct SpikeTrains: Codable, Sendable, Equatable, Hashable {
    /// Number of time bins of every train.
    public let bins: Int
    /// `spikes[k]` is the strictly increasing list of spike bins of neuron `k`, all in `0..<bins`.
    public let spikes: [[Int]]

    /// Number of neurons.
    public var neurons: Int { spikes.count }

    /// Total number of spikes over all neurons.
    public var totalSpikes: Int { spikes.reduce(0) { $0 + $1.count } }

    /// Wraps explicit spike lists, checking that each is strictly increasing inside `0..<bins`.
    public init(bins: Int, spikes: [[Int]]) throws(SpikeTrainError) {
        guard bins >= 1, bins <= Int(Int32.max) else { throw SpikeTrainError(neuron: nil, message: "bins must be in 1...\(Int32.max) (got \(bins))") }
        for (k, train) in spikes.enumerated() {
            var previous = -1
            for t in train {
                guard t > previous, t < bins else {
                    throw SpikeTrainError(
                        neuron: k,
                        message: t >= bins || t < 0
                            ? "spike bin \(t) outside 0..<\(bins)"
                            : "spike bins must be strictly increasing (\(t) after \(previous))")
                }
                previous = t
            }
        }
        self.bins = bins
        self.spikes = spikes
    }

    init(unchecked bins: Int, spikes: [[Int]]) {
        self.bins = bins
        self.spikes = spikes
    }

    /// Stream of the injected driver train under the data root generator.
    static let driverStream: UInt64 = 1 << 63 | 1

    /// The root generator of data generation; neuron `k` draws from `root.derived(stream: k)`.
    static func dataRoot(seed: UInt64) -> SeededGenerator { SeededGenerator(seed: seed) }

    /// Synthetic data: `params.neurons` independent Bernoulli ("binned Poisson") spike trains.
    ///
    /// Neuron `k` walks the bins in order with the generator
    /// `SeededGenerator(seed: params.seed).derived(stream: k)`, placing a spike in bin `t` when
    /// `nextUnitDouble() < params.spikeProbability` (exactly one draw per bin). The same seed
    /// therefore always yields the same trains, and neuron `k` does not depend on `N`.
    ///
    /// If `params.correlatedNeurons = K > 0` and `params.injectedRateHz > 0`, a driver train is
    /// drawn the same way (probability `params.injectedProbability`, generator
    /// `derived(stream: 1 << 63 | 1)`), and neuron `g < K` also spikes at `t + g * injectedLagBins`
    /// for every driver spike `t` (when inside the recording); a bin that already holds a
    /// background spike keeps a single spike. See ``CCParameters`` for the expected effect.
    ///
    /// - Throws: ``CCParameterError`` when `params` is invalid.
    public static func generate(_ params: CCParameters) throws(CCParameterError) -> SpikeTrains {
        try params.validate()
        let bins = params.bins
        let root = dataRoot(seed: params.seed)
        let injecting = params.correlatedNeurons > 0 && params.injectedProbability > 0
        var driver: [Int] = []
        if injecting {
            var g = root.derived(stream: driverStream)
            driver = bernoulliTrain(bins: bins, probability: params.injectedProbability, generator: &g)
        }
        var dense = [Bool](repeating: false, count: bins)
        var trains: [[Int]] = []
        trains.reserveCapacity(params.neurons)
        for k in 0 ..< params.neurons {
            var g = root.derived(stream: UInt64(k))
            var train = bernoulliTrain(bins: bins, probability: params.spikeProbability, generator: &g)
            if injecting && k < params.correlatedNeurons {
                for t in train { dense[t] = true }
                let shift = k * params.injectedLagBins
                for t in driver where t + shift >= 0 && t + shift < bins { dense[t + shift] = true }
                train.removeAll(keepingCapacity: true)
                for t in 0 ..< bins where dense[t] {
                    train.append(t)
                    dense[t] = false
                }
            }
            trains.append(train)
        }
        return SpikeTrains(unchecked: bins, spikes: trains)
    }

    /// One draw per bin: a spike where `nextUnitDouble() < probability`.
    static func bernoulliTrain(bins: Int, probability p: Double, generator g: inout SeededGenerator) -> [Int] {
        var train: [Int] = []
        train.reserveCapacity(Int(Double(bins) * p * 1.2) + 16)
        for t in 0 ..< bins where g.nextUnitDouble() < p { train.append(t) }
        return train
    }

    /// The dense binned matrix (`neurons × bins` counts, 0 or 1).
    public func binned() -> BinnedSpikeMatrix {
        var counts = [UInt8](repeating: 0, count: neurons * bins)
        for (k, train) in spikes.enumerated() {
            for t in train { counts[k * bins + t] = 1 }
        }
        return BinnedSpikeMatrix(neurons: neurons, bins: bins, counts: counts)
    }

    /// Mean firing rate over all neurons, in Hz, for bins of `binMs` milliseconds.
    public func meanRateHz(binMs: Double) -> Double {
        guard neurons > 0 else { return 0 }
        return Double(totalSpikes) / Double(neurons) / (Double(bins) * binMs / 1000)
    }

    private enum CodingKeys: String, CodingKey { case bins, counts, data }

    /// Decodes the compact form and re-validates the trains.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let bins = try c.decode(Int.self, forKey: .bins)
        let counts = try c.decode([Int].self, forKey: .counts)
        let data = try c.decode(Data.self, forKey: .data)
        let total = counts.reduce(0, +)
        guard counts.allSatisfy({ $0 >= 0 }), data.count == total * 4 else {
            throw DecodingError.dataCorruptedError(
                forKey: .data, in: c, debugDescription: "\(data.count) bytes for \(total) Int32 spike indices")
        }
        var flat = [Int32](repeating: 0, count: total)
        flat.withUnsafeMutableBytes { dst in data.withUnsafeBytes { dst.copyMemory(from: $0) } }
        var trains: [[Int]] = []
        var offset = 0
        for n in counts {
            trains.append(flat[offset ..< offset + n].map { Int(Int32(littleEndian: $0)) })
            offset += n
        }
        try self.init(bins: bins, spikes: trains)
    }

    /// Encodes the compact form.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(bins, forKey: .bins)
        try c.encode(spikes.map(\.count), forKey: .counts)
        var flat: [Int32] = []
        flat.reserveCapacity(totalSpikes)
        for train in spikes { for t in train { flat.append(Int32(t).littleEndian) } }
        try c.encode(flat.withUnsafeBytes { Data($0) }, forKey: .data)
    }
}

/// Invalid explicit spike trains.
public struct SpikeTrainError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The offending neuron, if the problem is specific to one.
    public var neuron: Int?
    /// What is wrong.
    public var message: String

    /// `"invalid spike train of neuron k: …"`.
    public var description: String {
        if let neuron { return "invalid spike train of neuron \(neuron): \(message)" }
        return "invalid spike trains: \(message)"
    }
}

/// The dense binned spike matrix: `neurons × bins` spike counts (0 or 1), row-major.
///
/// `Codable` form: `{"neurons": N, "bins": B, "counts": <Data>}` (one byte per bin).
public struct BinnedSpikeMatrix: Codable, Sendable, Equatable, Hashable {
    /// Number of rows (neurons).
    public let neurons: Int
    /// Number of columns (time bins).
    public let bins: Int
    /// Row-major counts: bin `t` of neuron `k` is `counts[k * bins + t]`.
    public let counts: [UInt8]

    /// A matrix with the given shape and row-major counts.
    public init(neurons: Int, bins: Int, counts: [UInt8]) {
        precondition(counts.count == neurons * bins, "\(counts.count) counts for \(neurons)×\(bins)")
        self.neurons = neurons
        self.bins = bins
        self.counts = counts
    }

    /// The count of neuron `k` in bin `t`.
    public subscript(k: Int, t: Int) -> UInt8 {
        precondition(k >= 0 && k < neurons && t >= 0 && t < bins, "index (\(k), \(t)) outside \(neurons)×\(bins)")
        return counts[k * bins + t]
    }

    private enum CodingKeys: String, CodingKey { case neurons, bins, counts }

    /// Decodes the compact form, checking the payload size.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let neurons = try c.decode(Int.self, forKey: .neurons)
        let bins = try c.decode(Int.self, forKey: .bins)
        let data = try c.decode(Data.self, forKey: .counts)
        guard neurons >= 0, bins >= 0, let count = checkedProduct([neurons, bins]), data.count == count else {
            throw DecodingError.dataCorruptedError(
                forKey: .counts, in: c, debugDescription: "\(data.count) bytes for \(neurons)×\(bins) counts")
        }
        self.init(neurons: neurons, bins: bins, counts: [UInt8](data))
    }

    /// Encodes the compact form.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(neurons, forKey: .neurons)
        try c.encode(bins, forKey: .bins)
        try c.encode(Data(counts), forKey: .counts)
    }
}
