/// A fast, seedable, platform-independent generator (xoshiro256**, seeded through SplitMix64).
///
/// Pure machines and the simulator never touch the system generator: every random choice derives
/// from one of these, so a run replays exactly from its seed.
public struct SeededGenerator: RandomNumberGenerator, Sendable, Hashable {
    private var s0, s1, s2, s3: UInt64

    public init(seed: UInt64) {
        var sm = seed
        func splitMix() -> UInt64 {
            sm &+= 0x9E37_79B9_7F4A_7C15
            var z = sm
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitMix()
        s1 = splitMix()
        s2 = splitMix()
        s3 = splitMix()
    }

    public mutating func next() -> UInt64 {
        let result = rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 45)
        return result
    }

    /// A uniform double in [0, 1) with 53 random bits.
    public mutating func nextUnitDouble() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// An independent generator derived from this one's seed stream and `stream`
    /// (for example one per peer or per task fragment).
    public func derived(stream: UInt64) -> SeededGenerator {
        SeededGenerator(seed: s0 ^ (stream &* 0xD1B5_4A32_D192_ED03) ^ rotl(s2, 17))
    }

    @inline(__always) private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 {
        (x << k) | (x >> (64 - k))
    }
}
