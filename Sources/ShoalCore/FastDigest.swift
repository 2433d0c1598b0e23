/// XXH64 (Yann Collet's xxHash, 64-bit, seed 0): the content digest of values (`PayloadDigest`).
///
/// Why not BLAKE2b, as records and ids use: a value's digest is computed once where the value is
/// made and once more by every peer that receives its bytes, so it is on the path of every large
/// transfer. BLAKE2b runs at about 1 GB/s on one core here, XXH64 at memory speed (`shoal bench
/// move` measures the difference). The digest is 64 bits either way, so its collision bound is
/// the same; what XXH64 gives up is resistance to a forger, and only authenticated peers and
/// clients make values. Pure and deterministic: machines and the simulator may use it.
public enum FastDigest {
    static let p1: UInt64 = 0x9E37_79B1_85EB_CA87
    static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    static let p3: UInt64 = 0x1656_67B1_9E37_79F9
    static let p4: UInt64 = 0x85EB_CA77_C2B2_AE63
    static let p5: UInt64 = 0x27D4_EB2F_1656_67C5

    @inline(__always) static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 &- r)) }

    @inline(__always) static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }

    @inline(__always) static func merge(_ acc: UInt64, _ v: UInt64) -> UInt64 {
        (acc ^ round(0, v)) &* p1 &+ p4
    }

    /// The XXH64 digest (seed 0) of `bytes`.
    public static func xxh64(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        let n = bytes.count
        guard let base = bytes.baseAddress else { return finish(p5, base: nil, from: 0, count: 0) }
        var i = 0
        var h: UInt64
        if n >= 32 {
            var v1 = p1 &+ p2, v2 = p2, v3: UInt64 = 0, v4 = 0 &- p1
            while i + 32 <= n {
                v1 = round(v1, word(base, i))
                v2 = round(v2, word(base, i + 8))
                v3 = round(v3, word(base, i + 16))
                v4 = round(v4, word(base, i + 24))
                i += 32
            }
            h = rotl(v1, 1) &+ rotl(v2, 7) &+ rotl(v3, 12) &+ rotl(v4, 18)
            h = merge(merge(merge(merge(h, v1), v2), v3), v4)
        } else {
            h = p5
        }
        return finish(h &+ UInt64(n), base: base, from: i, count: n)
    }

    @inline(__always) static func word(_ base: UnsafeRawPointer, _ at: Int) -> UInt64 {
        UInt64(littleEndian: base.loadUnaligned(fromByteOffset: at, as: UInt64.self))
    }

    /// The tail (under 32 bytes from `from`) and the final avalanche.
    static func finish(_ start: UInt64, base: UnsafeRawPointer?, from: Int, count n: Int) -> UInt64 {
        var h = start
        var i = from
        if let base {
            while i + 8 <= n {
                h = rotl(h ^ round(0, word(base, i)), 27) &* p1 &+ p4
                i += 8
            }
            if i + 4 <= n {
                let w = UInt64(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt32.self)))
                h = rotl(h ^ (w &* p1), 23) &* p2 &+ p3
                i += 4
            }
            while i < n {
                h = rotl(h ^ (UInt64(base.load(fromByteOffset: i, as: UInt8.self)) &* p5), 11) &* p1
                i += 1
            }
        }
        h ^= h >> 33
        h = h &* p2
        h ^= h >> 29
        h = h &* p3
        h ^= h >> 32
        return h
    }
}
